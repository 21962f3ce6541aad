import { expect } from 'chai';
import type pg from 'pg';
import { cliProject, jsonOut, type CliProject } from './cli-support.js';
import { pgClient, useTestDatabase } from './support/pg.js';
import type { RepairedChange, VerifyReport } from '../lib/ops/verify.js';

type RepairReport = VerifyReport & { repaired: RepairedChange[] };

describe('`umzug verify --repair` re-syncs the rows a verify found different, then verifies again', function () {
  this.timeout(180_000);
  const t = useTestDatabase('verify_repair', async ({ knex }) => {
    await knex.raw(`CREATE TABLE "users; x" (id bigint PRIMARY KEY, name text, hits int NOT NULL DEFAULT 0)`);
    await knex.raw(`INSERT INTO "users; x" SELECT g, 'n' || g, 0 FROM generate_series(1, 3000) g`);
    await knex.raw(`CREATE TABLE a (id bigint PRIMARY KEY, title text)`);
    await knex.raw(`CREATE TABLE b (id bigint PRIMARY KEY, note text)`);
    await knex.raw(`INSERT INTO a SELECT g, 't' || g FROM generate_series(1, 2000) g`);
    await knex.raw(`INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 2000, 2) g`);
  });
  let p: CliProject;
  before(() => {
    p = cliProject('verify-repair', { type: 'commonjs' }, t.url);
    p.write('umzug.config.js', `module.exports = { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 6 } }, backfill: { canary: false }, monitor: { canary: false } };\n`);
    p.write('migrations/001.rename.js', `const { defineMigration, renameColumn } = require('umzug-zero-downtime');\nmodule.exports = defineMigration({ changes: [renameColumn({ table: 'users; x', from: 'name', to: 'full_name' })] });\n`);
    p.write('migrations/002.merge.js', `const { defineMigration, mergeTables } = require('umzug-zero-downtime');\nmodule.exports = defineMigration({ changes: [mergeTables({ from: ['a', 'b'], into: 'ab', key: ['id'] })] });\n`);
  });

  it('rewrites exactly the rows that differ (a column change and a merged table), with the old version writing throughout', async () => {
    const up = await p.run(['up']);
    expect(up.code, up.stderr).to.equal(0);
    // Writes that bypass the sync triggers (as a restore or a replica-role session would): old and new now disagree.
    const bypass = await pgClient(t.url);
    await bypass.query(`SET session_replication_role = replica`);
    await bypass.query(`UPDATE "users; x" SET name = name || '?' WHERE id % 100 = 0`);
    await bypass.query(`UPDATE a SET title = title || '?' WHERE id % 250 = 0`);
    await bypass.end();

    const found = await p.run(['verify', '--json']);
    expect(found.code).to.equal(1);
    const before = jsonOut<VerifyReport>(found);
    expect(before.changes.map((c) => [c.kind, c.mismatches])).to.deep.equal([
      ['renameColumn', 30],
      ['mergeTables', 8],
    ]);

    // The old version keeps writing through the triggers while the repair runs.
    const writer: pg.Client = await pgClient(t.url);
    let stop = false;
    let writes = 0;
    const writing = (async () => {
      while (!stop) {
        const id = 1 + Math.floor(Math.random() * 3000);
        await writer.query(`UPDATE "users; x" SET name = 'w' || $1::text, hits = hits + 1 WHERE id = $1 AND id % 100 <> 0`, [id]);
        await writer.query(`UPDATE a SET title = 'w' || $1::text WHERE id = $1 AND id % 250 <> 0`, [1 + (id % 2000)]);
        writes++;
      }
    })();
    let repairRun;
    try {
      repairRun = await p.run(['verify', '--repair', '--json']);
    } finally {
      stop = true;
      await writing;
      await writer.end();
    }
    expect(repairRun.code, repairRun.stderr + repairRun.stdout).to.equal(0);
    const repaired = jsonOut<RepairReport>(repairRun);
    expect(repaired.mismatches).to.equal(0);
    expect(repaired.repaired.map((r) => [r.kind, r.mismatchesBefore, r.rowsRewritten, r.after?.mismatches])).to.deep.equal([
      ['renameColumn', 30, 30, 0],
      ['mergeTables', 8, 8, 0],
    ]);
    expect(writes, 'the writer ran during the repair').to.be.greaterThan(0);
    // Recorded for the gate, and a plain verify agrees.
    const again = await p.run(['verify', '--json']);
    expect(again.code, again.stdout).to.equal(0);
    expect(jsonOut<VerifyReport>(again).mismatches).to.equal(0);
  });

  it('a second repair with nothing different rewrites nothing and exits 0', async () => {
    const r = await p.run(['verify', '--repair']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/consistent: 3000 rows checked/);
    expect(r.stdout).not.to.match(/repair walked/);
  });
});

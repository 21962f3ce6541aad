// contract.requireNoQueries: who still runs statements on what a pending contract removes, from pg_stat_statements,
// keeps the contract gated; status and plan show the statements (text and --json).
import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import { resolveConfig } from '../lib/config.js';
import { statementUses, type QueryUsersReport } from '../lib/ops/queries.js';
import { isOwnStatement } from '../lib/postgres/stat-statements.js';
import type { StatusReport } from '../lib/ops/status.js';
import type { PlanReport } from '../lib/ops/plan.js';
import { loadSqlParser } from '../lib/postgres/sql-ast.js';
import { removedLabel, type RemovedStructure } from '../lib/changes/removed.js';
import { zeroDowntime } from '../lib/index.js';
import { cliProject, jsonOut, type CliProject } from './cli-support.js';
import { freshDatabase, knexFor, silentLogger } from './support/pg.js';
import { startStatementsServer, type StatementsServer } from './support/pgss-server.js';

const MIGRATION = '2099.01.01T00.00.01.users-full-name';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('contract queries, plan tier: which normalized statements use a removed column or table', () => {
  before(() => loadSqlParser());
  const name: RemovedStructure[] = [{ schema: 'public', table: 'users', column: 'name' }];
  const uses = (sql: string, removed = name) => statementUses(sql, removed)?.map((r) => removedLabel(r));

  it('reads $n placeholders, SELECT *, qualified columns, writes; not other tables, the new column, our own or DDL', () => {
    expect(uses('SELECT name FROM users WHERE id = $1')).to.deep.equal(['users.name']);
    expect(uses('SELECT * FROM users WHERE id = $1 LIMIT $2')).to.deep.equal(['users.name']);
    expect(uses('SELECT u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE o.id = $1')).to.deep.equal(['users.name']);
    expect(uses('SELECT public.users.name FROM public.users WHERE id IN ($1, $2)')).to.deep.equal(['users.name']);
    expect(uses('UPDATE users SET name = $1 WHERE id = $2')).to.deep.equal(['users.name']);
    expect(uses('INSERT INTO users VALUES ($1, $2)')).to.deep.equal(['users.name']);
    expect(uses('SELECT name FROM products WHERE id = $1')).to.deep.equal([]);
    expect(uses('SELECT o.name FROM orders o JOIN users u ON u.id = o.user_id')).to.deep.equal([]);
    expect(uses('SELECT full_name FROM users WHERE id = $1')).to.deep.equal([]);
    expect(uses('INSERT INTO users (id, full_name) VALUES ($1, $2)')).to.deep.equal([]);
    // Ours: the verify's and backfill's `_zd_` CTEs, the marker comment; DDL (plan runs the contract's own).
    expect(uses('WITH _zd_chunk AS (SELECT id, (name IS DISTINCT FROM full_name) AS _zd_bad FROM users LIMIT $1) SELECT count(*) FROM _zd_chunk')).to.equal(undefined);
    expect(uses('/* umzug-zero-downtime */ SELECT name FROM users')).to.equal(undefined);
    expect(uses('ALTER TABLE users DROP COLUMN name')).to.equal(undefined);
    expect(isOwnStatement('SELECT x_zd_y FROM t')).to.equal(false);
    // A removed table: any statement on it.
    const table: RemovedStructure[] = [{ schema: 'public', table: 'audit_log' }];
    expect(uses('INSERT INTO audit_log (at, what) VALUES ($1, $2)', table)).to.deep.equal(['audit_log']);
    expect(uses('SELECT count(*) FROM audit_events', table)).to.deep.equal([]);
  });

  it("takes contract.requireNoQueries: true, false or 'auto' (the default)", () => {
    const knex = { client: 'pg', connection: 'postgres://x@127.0.0.1/x' };
    expect(resolveConfig({ knex }).requireNoQueries).to.equal('auto');
    expect(resolveConfig({ knex, contract: { requireNoQueries: true } }).requireNoQueries).to.equal(true);
    expect(resolveConfig({ knex, contract: { requireNoQueries: false } }).requireNoQueries).to.equal(false);
    expect(() => resolveConfig({ knex, contract: { requireNoQueries: 'yes' } } as never)).to.throw(/requireNoQueries/);
  });
});

const CONFIG = (after: string) => `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 4 } }, logger: null,
  contract: { after: ${after} }, monitor: { canary: false }, backfill: { canary: false } };
`;
const MIGRATION_FILE = `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'users', from: 'name', to: 'full_name' })] });
`;

/** The application: one statement on a loop, on its own connection, until stopped. */
function appLoop(url: string, sql: string): { stop(): Promise<number> } {
  const client = new pg.Client({ connectionString: url, application_name: 'old-app' });
  let running = true;
  let n = 0;
  const done = (async () => {
    await client.connect();
    while (running) {
      await client.query(sql, [1 + (n % 20)]);
      n++;
      await sleep(10);
    }
    await client.end();
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return n;
    },
  };
}

describe('contract queries, integration: an application still reading the old column keeps the contract gated (pg_stat_statements)', function () {
  this.timeout(240_000);
  let server: StatementsServer;
  let url: string;
  let knex: Knex;
  let p: CliProject;

  before(async () => {
    server = await startStatementsServer();
    const admin = knexFor(server.url, 1);
    await admin.raw('CREATE DATABASE app');
    await admin.destroy();
    url = server.url.replace(/\/postgres$/, '/app');
    knex = knexFor(url, 2);
    await knex.raw('CREATE EXTENSION pg_stat_statements');
    await knex.raw(`CREATE TABLE users (id int PRIMARY KEY, name text)`);
    await knex.raw(`INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 20) g`);
    p = cliProject('contract-queries', { type: 'module' }, url);
    // The safety window, which is also how long a statement must have gone uncalled: each check below sees the old
    // statement called since the snapshot before it, or waits past the window, so its length only sets the waits.
    p.write('umzug.config.js', CONFIG("'1s'"));
    p.write(`migrations/${MIGRATION}.js`, MIGRATION_FILE);
  });
  after(async () => {
    await knex?.destroy();
    await server?.stop();
  });

  it('shows the query (status, plan, --json), and opens once the application moved to the new column and the window passed', async () => {
    // The old application runs before and through the expand, and on after it.
    let app = appLoop(url, 'SELECT id, name FROM users WHERE id = $1');
    const up = await p.run(['up', '--json']);
    expect(up.code, up.stderr).to.equal(0);
    expect(jsonOut<{ applied: string[] }>(up).applied).to.deep.equal([`${MIGRATION}.js:expand`]);
    const baseline = await knex.raw<{ rows: { taken_at: Date; cutover: string }[] }>(`SELECT taken_at, cutover FROM zero_downtime.query_baselines`);
    expect(baseline.rows.map((r) => r.cutover)).to.deep.equal(['expand finished']);
    await sleep(300);

    const status = jsonOut<StatusReport>(await p.run(['status', '--json'])).migrations[0]!;
    expect(status.contract).to.equal('waiting');
    const q = status.queries as QueryUsersReport;
    expect(q.available).to.equal(true);
    expect(q.removed).to.deep.equal(['users.name']);
    const old = q.statements.find((s) => /SELECT id, name FROM users WHERE id = \$1/.test(s.query));
    expect(old, JSON.stringify(q, null, 2)).to.not.equal(undefined);
    expect(old!.callsSinceCutover).to.be.greaterThan(0);
    expect(old!.withinWindow).to.equal(true);
    expect(old!.removed).to.deep.equal(['users.name']);
    // Nothing of ours: no verify, backfill, catalog or plan statement is listed.
    expect(q.statements.map((s) => s.query)).to.deep.equal([old!.query]);
    expect(status.waitingFor.join('\n')).to.match(/still used since the cutover \(pg_stat_statements\): users\.name by "SELECT id, name FROM users WHERE id = \$1" \(role postgres\), \d+ calls?, last seen/);

    const text = await p.run(['status']);
    expect(text.stdout).to.match(/Who still uses what the contracts remove[\s\S]*! SELECT id, name FROM users WHERE id = \$1\s+\d+ calls, last seen/);
    const plan = jsonOut<PlanReport>(await p.run(['plan', '--json']));
    const contract = plan.phases.find((ph) => ph.phase === 'contract')!;
    expect(contract.gate!.open).to.equal(false);
    expect(contract.queries!.statements.some((s) => s.query === old!.query)).to.equal(true);
    const planText = await p.run(['plan']);
    expect(planText.stdout).to.match(/SELECT id, name FROM users WHERE id = \$1\s+\d+ calls/);

    // Still running past the window: still gated.
    await sleep(1200);
    const again = await p.run(['up', '--json']);
    expect(again.code, again.stderr).to.equal(0);
    const gated = jsonOut<{ applied: string[]; waiting: { name: string; reasons: string[] }[] }>(again);
    expect(gated.applied).to.deep.equal([]);
    expect(gated.waiting[0]!.reasons.join('\n')).to.match(/SELECT id, name FROM users WHERE id = \$1/);

    // The application moves to the new column.
    expect(await app.stop()).to.be.greaterThan(0);
    app = appLoop(url, 'SELECT id, full_name FROM users WHERE id = $1');
    try {
      let last: StatusReport['migrations'][number] | undefined;
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        last = jsonOut<StatusReport>(await p.run(['status', '--json'])).migrations[0]!;
        if (last.contract === 'ready') break;
        await sleep(250);
      }
      expect(last!.contract, JSON.stringify(last, null, 2)).to.equal('ready');
      const seen = last!.queries!.statements;
      expect(seen.map((s) => [s.query, s.withinWindow])).to.deep.equal([[old!.query, false]]);
      const done = await p.run(['up', '--json']);
      expect(done.code, done.stderr).to.equal(0);
      expect(jsonOut<{ applied: string[] }>(done).applied).to.deep.equal([`${MIGRATION}.js:contract`]);
    } finally {
      await app.stop();
    }
    const cols = await knex.raw<{ rows: { column_name: string }[] }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position`);
    expect(cols.rows.map((r) => r.column_name)).to.deep.equal(['id', 'full_name']);
  });
});

describe('contract queries, integration: a server without pg_stat_statements', function () {
  this.timeout(180_000);
  let url: string;
  let knex: Knex;
  let p: CliProject;

  before(async () => {
    url = await freshDatabase('contract_queries');
    knex = knexFor(url, 2);
    await knex.raw(`CREATE TABLE users (id int PRIMARY KEY, name text)`);
    await knex.raw(`INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 20) g`);
    p = cliProject('contract-queries-none', { type: 'module' }, url);
    p.write('umzug.config.js', CONFIG('0'));
    p.write(`migrations/${MIGRATION}.js`, MIGRATION_FILE);
  });
  after(() => knex?.destroy());

  it("says it cannot see and how to enable it; 'auto' does not close the gate, true does", async () => {
    const up = await p.run(['up', '--json']);
    expect(up.code, up.stderr).to.equal(0);
    const statusJson = jsonOut<StatusReport>(await p.run(['status', '--json']));
    const status = statusJson.migrations[0]!;
    expect(status.contract).to.equal('ready');
    expect(status.queries!.available).to.equal(false);
    expect(status.queries!.note).to.equal(
      'cannot see who still uses users.name: pg_stat_statements is not installed — add it to shared_preload_libraries (postgresql.conf; restart) and run CREATE EXTENSION pg_stat_statements in this database',
    );
    // The monitor's relative latency trigger says the same, in its own words.
    const relativeNote =
      'the query-latency trigger is off: pg_stat_statements is not installed — add it to shared_preload_libraries (postgresql.conf; restart) and run CREATE EXTENSION pg_stat_statements in this database';
    expect(statusJson.monitor!.relative).to.deep.equal({ queryLatency: false, errorRate: 'pg_stat_database', note: relativeNote });
    const text = await p.run(['status']);
    expect(text.stdout).to.include(
      'Who still uses what the contracts remove, from the database (pg_stat_statements; ! = within the safety window):\n' +
        `  ${MIGRATION}.js\n` +
        `    ${status.queries!.note}`,
    );
    expect(text.stdout).to.include(`relative triggers: query latency OFF, error rate from pg_stat_database — ${relativeNote}`);

    const strict = zeroDowntime({ knex, cwd: p.dir, migrations: 'migrations/*.js', logger: silentLogger, contract: { after: 0, requireNoQueries: true } });
    try {
      const entry = (await strict.entries()).find((e) => e.phase === 'contract')!;
      const gate = await strict.gate(entry);
      expect(gate.open).to.equal(false);
      expect(gate.reasons).to.deep.equal([`${status.queries!.note} (contract.requireNoQueries: true)`]);
    } finally {
      await strict.close();
    }
    const off = zeroDowntime({ knex, cwd: p.dir, migrations: 'migrations/*.js', logger: silentLogger, contract: { after: 0, requireNoQueries: false } });
    try {
      expect((await off.status()).migrations[0]!.queries).to.equal(undefined);
    } finally {
      await off.close();
    }
  });
});

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { zeroDowntime } from '../lib/index.js';
import { StateStore } from '../lib/engine/state.js';
import { STATE_LAYOUT, STATE_LAYOUT_VERSION, upgradeStateLayout } from '../lib/engine/state-layout.js';
import { silentLogger, useTestDatabase } from './support/pg.js';
import { tempProject } from './support/project.js';

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/state-layout-0.1.0.sql');

describe('the state schema is versioned: older layouts are upgraded in place, newer ones refused', function () {
  this.timeout(120_000);
  const t = useTestDatabase('state_layout');

  const project = () => {
    const p = tempProject('state-layout');
    p.write('001.create-users.js', `exports.up = async ({ context }) => { await context.knex.raw('CREATE TABLE users (id bigint PRIMARY KEY, name text)'); };\nexports.down = async ({ context }) => { await context.knex.raw('DROP TABLE users'); };\n`);
    p.write('002.full-name.js', `const { defineMigration, renameColumn } = require('umzug-zero-downtime');\nmodule.exports = defineMigration({ changes: [renameColumn({ table: 'users', from: 'name', to: 'full_name' })] });\n`);
    return p;
  };
  const versions = async () => (await t.knex.raw(`SELECT version FROM zero_downtime.schema_version ORDER BY version`)).rows.map((r: { version: number }) => r.version);

  it("upgrades a database 0.1.0 left (no versions recorded), keeping its history: the plain migration 0.1.0 ran is not run again", async () => {
    await t.knex.raw(readFileSync(FIXTURE, 'utf8'));
    await t.knex.raw(`CREATE TABLE users (id bigint PRIMARY KEY, name text)`);
    await t.knex.raw(`INSERT INTO users SELECT g, 'n' || g FROM generate_series(1, 200) g`);
    const u = zeroDowntime({ knex: { client: 'pg', connection: t.url, pool: { min: 0, max: 6 } }, cwd: project().dir, logger: silentLogger, backfill: { canary: false } });
    try {
      expect((await u.pending()).map((m) => m.name)).to.deep.equal(['002.full-name.js:expand']);
      await u.up();
      expect(await versions()).to.deep.equal(STATE_LAYOUT.map((l) => l.version));
      const rows = (await t.knex.raw(`SELECT name, layout_version FROM zero_downtime.migrations ORDER BY seq`)).rows;
      expect(rows).to.deep.equal([
        { name: '001.create-users.js', layout_version: null },
        { name: '002.full-name.js:expand', layout_version: STATE_LAYOUT_VERSION },
      ]);
      const filled = await t.knex.raw(`SELECT count(*)::int AS n FROM users WHERE full_name = name`);
      expect(filled.rows[0].n).to.equal(200);
    } finally {
      await u.close();
    }
  });

  it('refuses a layout newer than it knows before writing anything, saying which release to run', async () => {
    await t.knex.raw(`INSERT INTO zero_downtime.schema_version (version, description) VALUES (${STATE_LAYOUT_VERSION + 1}, 'from the future')`);
    const before = (await t.knex.raw(`SELECT count(*)::int AS n FROM zero_downtime.steps`)).rows[0].n;
    const p = project();
    p.write('003.add-note.js', `const { defineMigration, addColumn } = require('umzug-zero-downtime');\nmodule.exports = defineMigration({ changes: [addColumn({ table: 'users', column: { name: 'note', type: 'text' } })] });\n`);
    const u = zeroDowntime({ knex: { client: 'pg', connection: t.url, pool: { min: 0, max: 6 } }, cwd: p.dir, logger: silentLogger, backfill: { canary: false } });
    try {
      let err: (Error & { code?: string }) | undefined;
      await u.up().catch((e: Error) => (err = e));
      expect(err?.name, String(err)).to.equal('StateLayoutError');
      expect(err!.code).to.equal('state-layout');
      expect(err!.message).to.match(new RegExp(`layout version ${STATE_LAYOUT_VERSION + 1}, newer than this release of umzug-zero-downtime knows \\(${STATE_LAYOUT_VERSION}\\)[\\s\\S]*Nothing was changed`));
      const cols = await t.knex.raw(`SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'note'`);
      expect(cols.rows, 'the new column was not added').to.deep.equal([]);
      expect((await t.knex.raw(`SELECT count(*)::int AS n FROM zero_downtime.steps`)).rows[0].n).to.equal(before);
    } finally {
      await u.close();
      await t.knex.raw(`DELETE FROM zero_downtime.schema_version WHERE version > ${STATE_LAYOUT_VERSION}`);
    }
  });

  it('an upgrade that fails leaves the layout and its version as they were; two first runs at once record each version once', async () => {
    const failing = [
      ...STATE_LAYOUT,
      { version: STATE_LAYOUT_VERSION + 1, description: 'adds a column, then fails', statements: (s: string) => [`ALTER TABLE "${s}".migrations ADD COLUMN doomed int`, `SELECT 1/0`] },
    ];
    let err: Error | undefined;
    await t.db.transaction((c) => upgradeStateLayout(c, 'zero_downtime', failing)).catch((e: Error) => (err = e));
    expect(err?.message).to.match(/division by zero/);
    expect(await versions()).to.deep.equal(STATE_LAYOUT.map((l) => l.version));
    const doomed = await t.knex.raw(`SELECT 1 FROM information_schema.columns WHERE table_schema = 'zero_downtime' AND column_name = 'doomed'`);
    expect(doomed.rows).to.deep.equal([]);

    await Promise.all([new StateStore(t.db, 'zd_fresh_layout').ensure(), new StateStore(t.db, 'zd_fresh_layout').ensure(), new StateStore(t.db, 'zd_fresh_layout').ensure()]);
    const fresh = await t.knex.raw(`SELECT version FROM zd_fresh_layout.schema_version ORDER BY version`);
    expect(fresh.rows.map((r: { version: number }) => r.version)).to.deep.equal(STATE_LAYOUT.map((l) => l.version));
  });
});

import { expect } from 'chai';
import type { Knex } from 'knex';
import { ChangeInputError, Db, dropColumn, zeroDowntime } from '../lib/index.js';
import { purgeArchives } from '../lib/public/ops.js';
import { Engine } from '../lib/runner.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { startChecker, startLoop, type LoopWriter } from './support/column-writers.js';
import { expectCleanRun } from './support/writers.js';
import { expectExactRoundTrip, takeState } from './support/db-state.js';

const ROWS = 20_000;

describe('dropColumn', function () {
  let url: string;
  let knex: Knex;
  let db: Db;
  before(async () => {
    ({ url, knex, db } = await openTestDatabase('col_drop'));
  });
  after(() => knex?.destroy());
  const q = async <R>(sql: string) => (await knex.raw<{ rows: R[] }>(sql)).rows;
  const columns = async (table: string) =>
    (await q<{ column_name: string }>(`SELECT column_name FROM information_schema.columns WHERE table_name = '${table}'`)).map((r) => r.column_name);

  it('old writers use the column, new writers do not: expand lets the new version insert, contract archives and drops, down restores the values', async () => {
    await knex.raw(`CREATE TABLE accounts (id bigserial PRIMARY KEY, legacy_code text NOT NULL, note text)`);
    await knex.raw(`CREATE INDEX accounts_legacy ON accounts (legacy_code)`);
    await knex.raw(`INSERT INTO accounts (legacy_code, note) SELECT 'L' || g, 'n' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE accounts');
    const project = tempProject('col-drop');
    project.write(
      '001.drop-legacy.ts',
      `import { defineMigration, dropColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [dropColumn({ table: 'accounts', column: 'legacy_code' })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { batchSize: 2000, canary: false }, logger: silentLogger });
    let maxId = ROWS;
    const pick = () => 1 + Math.floor(Math.random() * maxId);
    const writer = (label: string, usesLegacy: boolean) =>
      startLoop(url, label, async (c, i) => {
        const r = Math.random();
        if (r < 0.35) {
          if (usesLegacy) await c.query(`INSERT INTO accounts (legacy_code, note) VALUES ($1, $2)`, [`${label}-${i}`, `${label}-${i}`]);
          else await c.query(`INSERT INTO accounts (note) VALUES ($1)`, [`${label}-${i}`]);
        } else if (r < 0.6 && usesLegacy) await c.query(`UPDATE accounts SET legacy_code = $1 WHERE id = $2`, [`${label}-${i}`, pick()]);
        else if (r < 0.9) await c.query(`UPDATE accounts SET note = $1 WHERE id = $2`, [`${label}-${i}`, pick()]);
        else await c.query(`DELETE FROM accounts WHERE id = $1`, [pick()]);
      });
    const checker = startChecker(async () => {
      maxId = (await q<{ max: number }>(`SELECT max(id)::int AS max FROM accounts`))[0]!.max;
      return null;
    });
    const all: LoopWriter[] = [];
    let result;
    try {
      const olds = [await writer('old0', true), await writer('old1', true)];
      all.push(...olds);
      await umzug.up();
      // Expand dropped the NOT NULL: the new version inserts without the column.
      const news = [await writer('new0', false), await writer('new1', false)];
      all.push(...news);
      await new Promise((r) => setTimeout(r, 300));
      await Promise.all(olds.map((w) => w.stop()));
      const beforeContract = await q<{ id: string; legacy_code: string | null }>(`SELECT id::text, legacy_code FROM accounts WHERE id <= 500 ORDER BY id`);
      await umzug.up();
      expect(await columns('accounts')).to.have.members(['id', 'note']);
      await new Promise((r) => setTimeout(r, 300));
      await umzug.down();
      expect(await columns('accounts')).to.have.members(['id', 'note', 'legacy_code']);
      const restored = await q<{ id: string; legacy_code: string | null }>(`SELECT id::text, legacy_code FROM accounts WHERE id <= 500 ORDER BY id`);
      const stillThere = new Set(restored.map((r) => r.id));
      expect(restored).to.deep.equal(beforeContract.filter((r) => stillThere.has(r.id)));
      expect(await q(`SELECT indexdef FROM pg_indexes WHERE indexname = 'accounts_legacy'`)).to.deep.equal([
        { indexdef: 'CREATE INDEX accounts_legacy ON public.accounts USING btree (legacy_code)' },
      ]);
      await Promise.all(news.map((w) => w.stop()));
      // Rows the new version inserted have no legacy_code: the old NOT NULL cannot come back until they get one.
      const err = await umzug.down().then(
        () => null,
        (e: Error) => e,
      );
      expect(String(err?.message)).to.match(/validate CHECK \(legacy_code IS NOT NULL\): rows the new version inserted without legacy_code must be filled first/);
      await knex.raw(`UPDATE accounts SET legacy_code = 'filled' WHERE legacy_code IS NULL`);
      await umzug.down();
      expect((await q<{ nn: boolean }>(`SELECT attnotnull AS nn FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'legacy_code'`))[0]!.nn).to.equal(true);
    } finally {
      await Promise.all(all.map((w) => w.stop()));
      result = await checker.stop();
      await umzug.close();
    }
    expectCleanRun(all, result, { minOps: 200 });
  });

  it('up → down → up restores schema snapshot and per-row data exactly (default, NOT NULL, CHECK, multi-column and partial indexes, unique, FK, comment, grants, collation)', async () => {
    await knex.raw(`DO $$ BEGIN CREATE ROLE zd_col_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    await knex.raw(`CREATE SCHEMA rt`);
    await knex.raw(`CREATE TABLE rt.teams (id int PRIMARY KEY)`);
    await knex.raw(`INSERT INTO rt.teams SELECT generate_series(1, 10)`);
    await knex.raw(`CREATE TABLE rt.members (id int PRIMARY KEY, region text COLLATE "C" NOT NULL DEFAULT 'eu' CONSTRAINT region_known CHECK (region <> ''),
                    team_id int CONSTRAINT members_team FOREIGN KEY REFERENCES rt.teams (id), badge text CONSTRAINT members_badge_key UNIQUE, name text)`.replace(' FOREIGN KEY', ''));
    await knex.raw(`CREATE INDEX members_region_name ON rt.members (region, name) WHERE name IS NOT NULL`);
    await knex.raw(`COMMENT ON COLUMN rt.members.region IS 'where'`);
    await knex.raw(`GRANT SELECT (region), UPDATE (region) ON rt.members TO zd_col_reader`);
    await knex.raw(`INSERT INTO rt.members SELECT g, CASE WHEN g % 2 = 0 THEN 'us' ELSE 'eu' END, 1 + g % 10, 'b' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'm' || g END FROM generate_series(1, 3000) g`);
    const project = tempProject('col-drop-rt');
    project.write(
      '002.drop-members-columns.ts',
      `import { defineMigration, dropColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  dropColumn({ table: { schema: 'rt', name: 'members' }, column: 'region' }),
  dropColumn({ table: { schema: 'rt', name: 'members' }, column: 'team_id' }),
  dropColumn({ table: { schema: 'rt', name: 'members' }, column: 'badge' }),
] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    const snap = () => takeState(db, ['rt']);
    await expectExactRoundTrip(umzug, snap, {
      contracted: async (contracted) => {
        expect(Object.keys(contracted.schema.objects).filter((k) => k.startsWith('column rt.members.'))).to.have.members(['column rt.members.id', 'column rt.members.name']);
        const archives = await q<{ kind: string; rows: string }>(`SELECT kind, rows::text FROM zero_downtime.column_archives ORDER BY archive`);
        expect(archives).to.deep.equal([
          { kind: 'drop-column', rows: '3000' },
          { kind: 'drop-column', rows: '3000' },
          { kind: 'drop-column', rows: '3000' },
        ]);
      },
      reverted: async () => expect(await q(`SELECT archive FROM zero_downtime.column_archives`)).to.deep.equal([]),
    });

    // purge keeps what is younger than the retention, deletes the rest; down then refuses and says why.
    expect((await purgeArchives(umzug, { olderThanMs: 30 * 86_400_000 })).purged).to.deep.equal([]);
    const purged = await purgeArchives(umzug, { olderThanMs: 0 });
    expect(purged.purged.map((p) => p.columns[0])).to.have.members(['region', 'team_id', 'badge']);
    expect(await q(`SELECT archive FROM zero_downtime.column_archives`)).to.deep.equal([]);
    const err = await umzug.down().then(
      () => null,
      (e: Error) => e,
    );
    expect(String(err?.message)).to.match(/the archive .* of rt\.members\.badge is gone \(purged\?\), so down would bring the column back empty\. Nothing was changed/);
    expect(Object.keys((await snap()).schema.objects).filter((k) => k.startsWith('column rt.members.'))).to.have.members(['column rt.members.id', 'column rt.members.name']);
    await umzug.close();
  });

  it('refuses up front what it cannot restore: a primary key column, a column other tables reference', async () => {
    await knex.raw(`CREATE TABLE parents (id int PRIMARY KEY, code text UNIQUE)`);
    await knex.raw(`CREATE TABLE children (id int PRIMARY KEY, parent_code text REFERENCES parents (code))`);
    const engine = new Engine(db);
    const prepare = (column: string) => engine.prepare('x.ts', 0, dropColumn({ table: 'parents', column }));
    const pk = await prepare('id').then(() => null, (e: Error) => e);
    expect(pk).to.be.instanceOf(ChangeInputError);
    expect(pk!.message).to.match(/parents\.id is part of the primary key.*Nothing was changed/);
    const fk = await prepare('code').then(() => null, (e: Error) => e);
    expect(fk!.message).to.match(/referenced by the foreign keys children_parent_code_fkey of public\.children/);
  });
});

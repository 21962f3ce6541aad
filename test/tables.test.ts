import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db, zeroDowntime, type ZeroDowntimeUmzug } from '../lib/index.js';
import { purgeArchives } from '../lib/public/ops.js';
import { diffSnapshots } from '../lib/postgres/snapshot.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { expectCleanRun, startWriter, type Writer } from './support/writers.js';
import { startChecker } from './support/column-writers.js';
import { expectSameState, takeState } from './support/db-state.js';

const ROWS = 20_000;

describe('renameTable / createTable / dropTable', function () {
  let url: string;
  let knex: Knex;
  let db: Db;

  before(async () => {
    ({ url, knex, db } = await openTestDatabase('table_changes'));
  });
  after(async () => {
    await knex?.destroy();
  });

  const umzugFor = (dir: string): ZeroDowntimeUmzug =>
    zeroDowntime({ knex, cwd: dir, migrations: 'migrations/*.ts', contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
  const snap = (schemas = ['public']) => takeState(db, schemas);
  const relkind = async (name: string) =>
    (await knex.raw<{ rows: { k: string | null }[] }>(`SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass(?)) AS k`, [name])).rows[0]!.k;

  it('renameTable: old-name writers (through the view) and new-name writers run together without an error; contract drops the view; up → down → up is exact', async () => {
    await knex.raw(`CREATE TABLE "users; drop table x" (id bigserial PRIMARY KEY, name text NOT NULL DEFAULT 'anon', email text)`);
    await knex.raw(`INSERT INTO "users; drop table x" (name, email) SELECT 'user ' || g, 'u' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw(`CREATE INDEX users_email_idx ON "users; drop table x" (email)`);
    // The application's own role: its grants must carry over to the view under the old name.
    // Roles belong to the whole server: made once, never dropped, so two runs at once do not take it from each other.
    await knex.raw(`DO $$ BEGIN CREATE ROLE zd_app_rw; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    await knex.raw(`GRANT SELECT, INSERT, UPDATE, DELETE ON "users; drop table x" TO zd_app_rw`);
    await knex.raw(`GRANT USAGE ON SEQUENCE "users; drop table x_id_seq" TO zd_app_rw`);
    const project = tempProject('rename-table');
    project.write(
      '001.rename.ts',
      `import { defineMigration, renameTable } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameTable({ from: 'users; drop table x', to: 'members' })] });
`,
    );
    const umzug = umzugFor(project.dir);
    const before = await snap();
    let maxId = ROWS;
    const old: Writer[] = [];
    const neu: Writer[] = [];
    for (let i = 0; i < 2; i++) old.push(await startWriter(url, { table: '"users; drop table x"', column: 'name', maxId: () => maxId, label: `old${i}` }));

    // Both names must show the same rows at every moment they both exist.
    const checker = startChecker(
      async () => {
        const r = await knex.raw<{ rows: { a: string; b: string; m: string }[] }>(
          `SELECT (SELECT md5(string_agg(id::text || name, ',' ORDER BY id)) FROM "users; drop table x") AS a,
                  (SELECT md5(string_agg(id::text || name, ',' ORDER BY id)) FROM members) AS b, (SELECT max(id) FROM members) AS m`,
        );
        maxId = Number(r.rows[0]!.m);
        return r.rows[0]!.a !== r.rows[0]!.b ? 'old and new names disagree' : null;
      },
      /relation .* does not exist/,
      { intervalMs: 20 },
    );

    await umzug.up();
    expect(await relkind('"users; drop table x"')).to.equal('v');
    expect(await relkind('members')).to.equal('r');
    for (let i = 0; i < 2; i++) neu.push(await startWriter(url, { table: 'members', column: 'name', maxId: () => maxId, label: `new${i}` }));
    // The application role keeps reading and writing under the old name.
    const asApp = await knex.transaction(async (trx) => {
      await trx.raw('SET LOCAL ROLE zd_app_rw');
      await trx.raw(`UPDATE "users; drop table x" SET name = 'via view as app' WHERE id = 1`);
      return (await trx.raw(`SELECT name FROM "users; drop table x" WHERE id = 1`)).rows[0];
    });
    expect(asApp).to.deep.equal({ name: 'via view as app' });
    // An insert through the old name gets the table's defaults and RETURNING works.
    const inserted = await knex.raw<{ rows: { id: string; name: string }[] }>(`INSERT INTO "users; drop table x" (email) VALUES ('via-view') RETURNING id, name`);
    expect(inserted.rows[0]!.name).to.equal('anon');
    await new Promise((res) => setTimeout(res, 300));
    await Promise.all(old.map((w) => w.stop()));
    await umzug.up(); // contract: the view goes
    expect(await relkind('"users; drop table x"')).to.equal(null);
    await new Promise((res) => setTimeout(res, 200));
    await Promise.all(neu.map((w) => w.stop()));
    expectCleanRun([...old, ...neu], await checker.stop({ atLeast: 5 }), { minChecks: 5, minOps: 200 });

    const contracted = await snap();
    await umzug.down();
    expect(await relkind('"users; drop table x"')).to.equal('v');
    await umzug.down();
    expect(await relkind('"users; drop table x"')).to.equal('r');
    expect(await relkind('members')).to.equal(null);
    const reverted = await snap();
    // The writers changed rows, so compare the schema with the start and the data with the contracted state.
    expect(diffSnapshots(before.schema, reverted.schema)).to.deep.equal([]);
    expect(Object.values(reverted.data)).to.deep.equal(Object.values(contracted.data));
    await umzug.up();
    await umzug.up();
    expectSameState(contracted, await snap(), 'up → up again after down → down');
  });

  it('createTable and dropTable: the dropped table is archived in the state schema with its rows, indexes and sequence, and down brings it back exactly', async () => {
    await knex.raw(`CREATE SCHEMA shop`);
    await knex.raw(`CREATE TABLE shop.legacy (id serial PRIMARY KEY, v text DEFAULT 'x' CHECK (v <> ''), email text)`);
    await knex.raw(`INSERT INTO shop.legacy (v) SELECT 'v' || g FROM generate_series(1, 5000) g`);
    await knex.raw(`CREATE INDEX legacy_v ON shop.legacy (v)`);
    const project = tempProject('create-drop');
    project.write(
      '001.tables.ts',
      `import { defineMigration, createTable, dropTable } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  createTable({ table: { schema: 'shop', name: 'orders' }, columns: [
    { name: 'id', type: 'bigint', nullable: false },
    { name: 'placed_at', type: 'timestamptz', nullable: false, defaultSql: 'now()' },
    { name: 'status', type: 'text', nullable: false, default: 'new' },
  ], primaryKey: ['id'] }),
  dropTable({ table: { schema: 'shop', name: 'legacy' } }),
] });
`,
    );
    const umzug = umzugFor(project.dir);
    const before = await snap(['shop']);
    let old: Writer | null = await startWriter(url, { table: 'shop.legacy', column: 'v', maxId: () => 5000, label: 'old' });
    await umzug.up();
    expect(await relkind('shop.orders')).to.equal('r');
    expect(await relkind('shop.legacy')).to.equal('r'); // the old version still uses it until contract
    await knex.raw(`INSERT INTO shop.orders (id) VALUES (1)`);
    await new Promise((res) => setTimeout(res, 200));
    await old.stop();
    expect(old.stats.errors).to.deep.equal([]);
    old = null;
    const expanded = await snap(['shop']);
    await umzug.up(); // contract: legacy is archived
    expect(await relkind('shop.legacy')).to.equal(null);
    const archived = await knex.raw<{ rows: { relname: string; n: string }[] }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'zero_downtime' AND c.relname LIKE 'zd_dropped_%'`,
    );
    expect(archived.rows).to.have.length(1);
    await umzug.down(); // undo contract: legacy is back with everything
    expectSameState(expanded, await snap(['shop']), 'down of the contract');
    await knex.raw(`INSERT INTO shop.legacy (v) VALUES ('after restore')`); // its sequence came back too

    // Undo expand: orders holds a row the new version wrote, so it is archived, not dropped.
    await umzug.down();
    expect(await relkind('shop.orders')).to.equal(null);
    const kept = await knex.raw<{ rows: { relname: string }[] }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'zero_downtime' AND c.relname LIKE 'zd_created_%' AND c.relkind = 'r'`,
    );
    expect(kept.rows).to.have.length(1);
    await knex.raw(`DELETE FROM shop.legacy WHERE v = 'after restore'`);
    const reverted = await snap(['shop']);
    expect(diffSnapshots(before.schema, reverted.schema)).to.deep.equal([]);
    // The old-version writer changed legacy's rows before contract; those are the rows that must have survived.
    expect(reverted.data).to.deep.equal({ 'shop.legacy': expanded.data['shop.legacy'] });

    // Forward again, with an empty new table this time: down drops it outright.
    await umzug.up();
    await umzug.down();
    expect(await relkind('shop.orders')).to.equal(null);
    expect((await knex.raw(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'zero_downtime' AND c.relname LIKE 'zd_created_%' AND c.relkind = 'r'`)).rows[0].n).to.equal(1);
  });

  it('purge deletes archived tables (a dropped one, an undone created one) past the retention; down then refuses, saying why and changing nothing', async () => {
    await knex.raw(`CREATE SCHEMA purged`);
    await knex.raw(`CREATE TABLE purged.old_stuff (id int PRIMARY KEY, v text)`);
    await knex.raw(`INSERT INTO purged.old_stuff SELECT g, 'v' || g FROM generate_series(1, 300) g`);
    const project = tempProject('purge-tables');
    project.write(
      '001.drop.ts',
      `import { defineMigration, dropTable } from 'umzug-zero-downtime';
export default defineMigration({ changes: [dropTable({ table: { schema: 'purged', name: 'old_stuff' } })] });
`,
    );
    project.write(
      '002.create.ts',
      `import { defineMigration, createTable } from 'umzug-zero-downtime';
export default defineMigration({ changes: [createTable({ table: { schema: 'purged', name: 'fresh' }, columns: [{ name: 'id', type: 'int', nullable: false }], primaryKey: ['id'] })] });
`,
    );
    const umzug = umzugFor(project.dir);
    try {
      await umzug.up(); // both expands
      await knex.raw(`INSERT INTO purged.fresh VALUES (1)`);
      await umzug.down(); // 002 expand: fresh holds a row, so it is archived
      expect(await relkind('purged.fresh')).to.equal(null);
      await umzug.up(); // 002 expand again, and 001's contract: old_stuff is archived
      expect(await relkind('purged.old_stuff')).to.equal(null);

      const dry = await purgeArchives(umzug, { olderThanMs: 0, dryRun: true });
      expect(dry.purged.filter((p) => p.table.startsWith('purged.')).map((p) => [p.table, p.kind])).to.have.deep.members([
        ['purged.old_stuff', 'drop-table'],
        ['purged.fresh', 'create-table-undone'],
      ]);
      expect((await purgeArchives(umzug, { olderThanMs: 30 * 86_400_000 })).purged).to.deep.equal([]);
      const done = await purgeArchives(umzug, { olderThanMs: 0 });
      expect(done.purged.filter((p) => p.table.startsWith('purged.'))).to.have.length(2);
      const left = await knex.raw<{ rows: { relname: string }[] }>(
        `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'zero_downtime' AND (c.relname LIKE 'zd_dropped_purged%' OR c.relname LIKE 'zd_created_purged%')`,
      );
      expect(left.rows).to.deep.equal([]);

      const executed = await umzug.engine.state.executedNames();
      const err = await umzug.down().then(
        () => null,
        (e: Error) => e,
      );
      const message = String((err as { cause?: Error } | null)?.cause?.message ?? err?.message);
      expect(message).to.match(/the archive zero_downtime\.zd_dropped_\S* of table purged\.old_stuff is gone \(purged\?\), so down cannot bring the table back\. Nothing was changed/);
      expect(await umzug.engine.state.executedNames()).to.deep.equal(executed);
      expect(await relkind('purged.old_stuff')).to.equal(null);
    } finally {
      await umzug.close();
    }
  });

  it('refuses to create a table whose name is taken (by a view), a hostile type, an unknown key column, and to drop a table other tables reference', async () => {
    await knex.raw(`CREATE VIEW taken AS SELECT 1 AS one`);
    const project = tempProject('tables-refuse');
    project.write(
      '001.bad.ts',
      `import { defineMigration, createTable } from 'umzug-zero-downtime';
export default defineMigration({ changes: [createTable({ table: 'taken', columns: [{ name: 'id', type: 'int' }], primaryKey: ['id'] })] });
`,
    );
    const e = await umzugFor(project.dir).up().then(() => null, (x: Error) => x);
    expect(String((e as { cause?: Error })?.cause?.message ?? e?.message)).to.match(/"public.taken" already exists \(a view\)/);
    const { createTable } = await import('../lib/index.js');
    expect(() => createTable({ table: 't', columns: [{ name: 'id', type: 'int; drop table x' }], primaryKey: ['id'] })).to.throw(/must be a PostgreSQL type name/);
    expect(() => createTable({ table: 't', columns: [{ name: 'id', type: 'int' }], primaryKey: ['nope'] })).to.throw(/not among the columns/);

    await knex.raw(`CREATE TABLE parent (id int PRIMARY KEY)`);
    await knex.raw(`CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id))`);
    project.write(
      '002.drop-parent.ts',
      `import { defineMigration, dropTable } from 'umzug-zero-downtime';
export default defineMigration({ changes: [dropTable({ table: 'parent' })] });
`,
    );
    const { rmSync } = await import('node:fs');
    rmSync(`${project.migrations}/001.bad.ts`);
    const e2 = await umzugFor(project.dir).up().then(() => null, (x: Error) => x);
    expect(String((e2 as { cause?: Error })?.cause?.message ?? e2?.message)).to.match(/referenced by the foreign keys child_parent_id_fkey/);
    expect(await relkind('parent')).to.equal('r');
  });
});

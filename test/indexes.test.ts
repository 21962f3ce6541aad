import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db, ExpandUndoneError, StepFailedError, zeroDowntime, type ZeroDowntimeUmzug } from '../lib/index.js';
import { openTestDatabase, pgClient, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { expectCleanRun, startWriter, type Writer } from './support/writers.js';
import { startChecker } from './support/column-writers.js';
import { expectExactRoundTrip, takeState } from './support/db-state.js';

const ROWS = 20_000;

const indexes = async (knex: Knex, table: string) =>
  (
    await knex.raw<{ rows: { name: string; valid: boolean; def: string }[] }>(
      `SELECT c.relname AS name, i.indisvalid AS valid, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = ?::regclass ORDER BY 1`,
      [table],
    )
  ).rows;

const invalidIndexes = async (knex: Knex) =>
  (await knex.raw<{ rows: { name: string }[] }>(`SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid`)).rows.map(
    (r) => r.name,
  );

describe('addIndex / dropIndex: CONCURRENTLY, with writers, round trip, failed builds', function () {
  let url: string;
  let knex: Knex;
  let db: Db;

  before(async () => {
    ({ url, knex, db } = await openTestDatabase('idx_changes'));
    await knex.raw('CREATE EXTENSION IF NOT EXISTS amcheck');
  });
  after(async () => {
    await knex?.destroy();
  });

  const umzugFor = (dir: string): ZeroDowntimeUmzug =>
    zeroDowntime({ knex, cwd: dir, migrations: 'migrations/*.ts', contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });

  it('builds and drops indexes concurrently while old and new writers insert, update and delete, every index complete at every point', async () => {
    await knex.raw(`CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL DEFAULT 'anon', email text)`);
    await knex.raw(`INSERT INTO users (name, email) SELECT 'user ' || g, 'u' || g || '@example.com' FROM generate_series(1, ${ROWS}) g`);
    await knex.raw(`CREATE INDEX users_name_old_idx ON users (name)`);
    const project = tempProject('idx');
    project.write(
      '001.users-indexes.ts',
      `import { defineMigration, addIndex, dropIndex } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  addIndex({ table: 'users', columns: ['email'], unique: true, constraint: 'users_email_key' }),
  addIndex({ table: 'users', columns: ['name'], include: ['email'], where: "name <> 'anon'", name: 'users_name_cover' }),
  dropIndex({ table: 'users', name: 'users_name_old_idx' }),
] });
`,
    );
    const umzug = umzugFor(project.dir);
    let maxId = ROWS;
    const writers: Writer[] = [];
    for (let i = 0; i < 3; i++) writers.push(await startWriter(url, { table: 'users', column: 'name', maxId: () => maxId, label: `w${i}` }));

    // Every valid index must hold every row (amcheck's heapallindexed), checked all along.
    // An index dropped between listing and checking is fine.
    const checker = startChecker(
      async () => {
        for (const ix of await indexes(knex, 'users')) {
          if (!ix.valid) continue; // a build in progress is invalid until it finishes
          try {
            await knex.raw(`SELECT bt_index_check(?::regclass, true)`, [ix.name]);
          } catch (e) {
            // DROP INDEX CONCURRENTLY marks the index invalid first: only a still-valid index must pass.
            const still = (await indexes(knex, 'users')).find((x) => x.name === ix.name);
            if (still?.valid) throw e;
          }
        }
        maxId = Number((await knex.raw<{ rows: { m: string }[] }>('SELECT max(id) AS m FROM users')).rows[0]!.m);
        return null;
      },
      // pg_get_indexdef of an index DROP INDEX CONCURRENTLY removes under it fails with "cache lookup failed".
      /does not exist|could not open relation|cache lookup failed/,
      { intervalMs: 30 },
    );

    expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['001.users-indexes.ts:expand']);
    let now = await indexes(knex, 'users');
    expect(now.map((i) => i.name)).to.have.members(['users_pkey', 'users_email_key', 'users_name_cover', 'users_name_old_idx']);
    expect(now.every((i) => i.valid)).to.equal(true);
    const con = await knex.raw<{ rows: { def: string }[] }>(`SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = 'users_email_key'`);
    expect(con.rows[0]!.def).to.equal('UNIQUE (email)');
    expect(now.find((i) => i.name === 'users_name_cover')!.def).to.match(/INCLUDE \(email\) WHERE \(name <> 'anon'::text\)$/);

    expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['001.users-indexes.ts:contract']);
    expect((await indexes(knex, 'users')).map((i) => i.name)).to.not.include('users_name_old_idx');
    await umzug.down(); // undo contract: the dropped index comes back, built concurrently
    now = await indexes(knex, 'users');
    expect(now.find((i) => i.name === 'users_name_old_idx')).to.deep.include({ valid: true, def: 'CREATE INDEX users_name_old_idx ON public.users USING btree (name)' });
    await umzug.down(); // undo expand
    expect((await indexes(knex, 'users')).map((i) => i.name)).to.have.members(['users_pkey', 'users_name_old_idx']);
    await umzug.up();
    expect((await indexes(knex, 'users')).map((i) => i.name)).to.have.members(['users_pkey', 'users_email_key', 'users_name_cover', 'users_name_old_idx']);

    await Promise.all(writers.map((w) => w.stop()));
    expectCleanRun(writers, await checker.stop({ atLeast: 5 }), { minChecks: 5, minOps: 200 });
    expect(await invalidIndexes(knex)).to.deep.equal([]);
  });

  it('up → down → up leaves the schema and the data exactly as they were', async () => {
    await knex.raw(`CREATE SCHEMA rt`);
    await knex.raw(`CREATE TABLE rt.items (id int PRIMARY KEY, sku text, tags text[])`);
    await knex.raw(`INSERT INTO rt.items SELECT g, 'sku' || g, ARRAY['a' || (g % 7)] FROM generate_series(1, 3000) g`);
    await knex.raw(`CREATE INDEX items_tags_gin ON rt.items USING gin (tags)`);
    const project = tempProject('idx-rt');
    project.write(
      '001.items.ts',
      `import { defineMigration, addIndex, dropIndex } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  addIndex({ table: { schema: 'rt', name: 'items' }, columns: ['sku'], unique: true }),
  dropIndex({ table: { schema: 'rt', name: 'items' }, name: 'items_tags_gin' }),
] });
`,
    );
    const umzug = umzugFor(project.dir);
    await expectExactRoundTrip(umzug, () => takeState(db, ['rt']), {
      contracted: (contracted) => expect(Object.keys(contracted.schema.objects)).to.include('index rt.items_sku_key').and.not.include('index rt.items_tags_gin'),
    });
  });

  it('a unique build that meets a duplicate half-way fails cleanly and leaves no INVALID index; a crash leftover is dropped and rebuilt', async () => {
    await knex.raw(`CREATE TABLE "users; drop table x" (id int PRIMARY KEY, "x""; drop table users; --" text)`);
    // The duplicate sits in the middle of the table, so the build has indexed half of it before it fails.
    await knex.raw(`INSERT INTO "users; drop table x" SELECT g, 'v' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw(`UPDATE "users; drop table x" SET "x""; drop table users; --" = 'v1' WHERE id = ${ROWS / 2}`);
    const project = tempProject('idx-dup');
    project.write(
      '001.unique.ts',
      `import { defineMigration, addIndex } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  addIndex({ table: 'users; drop table x', columns: ['x"; drop table users; --'], unique: true, name: 'weird"; idx' }),
] });
`,
    );
    const umzug = umzugFor(project.dir);
    let error: unknown;
    await umzug.up().catch((e: unknown) => (error = e));
    // Umzug wraps the engine's error; the expand was undone (a duplicate is a real failure, not an interruption).
    const undone = (error as { cause?: unknown })?.cause ?? error;
    expect(undone).to.be.instanceOf(ExpandUndoneError);
    expect((undone as Error).message).to.match(/expand failed and was undone automatically/);
    const failure = (undone as { cause?: unknown }).cause;
    expect(failure).to.be.instanceOf(StepFailedError);
    expect((failure as Error).message).to.match(/could not create unique index/).and.match(/INVALID index public\.weird"; idx the failed build left was dropped/);
    expect(await invalidIndexes(knex)).to.deep.equal([]);
    expect((await indexes(knex, '"users; drop table x"')).map((i) => i.name)).to.deep.equal(['users; drop table x_pkey']);
    expect((await knex.raw(`SELECT to_regclass('public.x') AS r`)).rows[0].r).to.equal(null);

    // A crash in mid-build (a killed process: no cleanup, no undo) leaves the expand started in the state table and
    // an INVALID index under the step's own name.
    const entry = (await umzug.entries()).find((e) => e.name === '001.unique.ts:expand')!;
    const started = await umzug.engine.prepare(entry.name, 0, entry.changes[0]!);
    await umzug.engine.state.startChange(entry.name, 0, entry.changes[0]!.kind, started.description.summary, started.snapshot);
    await knex.raw(`CREATE UNIQUE INDEX CONCURRENTLY "weird""; idx" ON "users; drop table x" ("x""; drop table users; --")`).catch(() => undefined);
    expect(await invalidIndexes(knex)).to.deep.equal(['weird"; idx']);
    await knex.raw(`UPDATE "users; drop table x" SET "x""; drop table users; --" = 'v${ROWS / 2}' WHERE id = ${ROWS / 2}`);
    // The re-run drops the leftover (IF NOT EXISTS alone would have kept it) and builds the index for real.
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['001.unique.ts:expand']);
    expect(await invalidIndexes(knex)).to.deep.equal([]);
    const built = await indexes(knex, '"users; drop table x"');
    expect(built.find((i) => i.name === 'weird"; idx')).to.include({ valid: true });
    await knex.raw(`SELECT bt_index_check('public."weird""; idx"'::regclass, true)`);
    await umzug.down();
    expect((await indexes(knex, '"users; drop table x"')).map((i) => i.name)).to.deep.equal(['users; drop table x_pkey']);
  });

  it('refuses an index name that is already taken, having changed nothing', async () => {
    await knex.raw(`CREATE TABLE taken (id int PRIMARY KEY, a int)`);
    await knex.raw(`CREATE SEQUENCE taken_a_idx`);
    const project = tempProject('idx-taken');
    project.write(
      '001.taken.ts',
      `import { defineMigration, addIndex } from 'umzug-zero-downtime';
export default defineMigration({ changes: [addIndex({ table: 'taken', columns: ['a'] })] });
`,
    );
    const error = await umzugFor(project.dir)
      .up()
      .then(() => null, (e: Error) => e);
    expect(String((error as { cause?: Error })?.cause?.message ?? error?.message)).to.match(/"public\.taken_a_idx" already exists \(a sequence\)/);
    expect((await indexes(knex, 'taken')).map((i) => i.name)).to.deep.equal(['taken_pkey']);
  });
  it('a concurrent build that times out waiting for a writer is cleaned up and retried until it succeeds, leaving no INVALID index', async () => {
    await knex.raw(`CREATE TABLE busy (id int PRIMARY KEY, v text)`);
    await knex.raw(`INSERT INTO busy SELECT g, 'v' || g FROM generate_series(1, ${ROWS}) g`);
    const holder = await pgClient(url, 'long-writer');
    await holder.query('BEGIN');
    await holder.query(`UPDATE busy SET v = 'held' WHERE id = 1`); // ROW EXCLUSIVE until commit: CIC waits for it
    const project = tempProject('idx-retry');
    project.write(
      '001.busy.ts',
      `import { defineMigration, addIndex } from 'umzug-zero-downtime';
export default defineMigration({ changes: [addIndex({ table: 'busy', columns: ['v'] })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, lock: { timeout: '200ms', maxAttempts: 40 }, logger: silentLogger });
    const retries: string[] = [];
    umzug.engine.subscribe((e) => {
      if (e.type === 'lock-retry') retries.push(e.retry.code);
    });
    const up = umzug.up();
    await new Promise((r) => setTimeout(r, 1000));
    // While the writer holds on, a timed-out build has left its INVALID index (and its drop waits for the writer too).
    const meanwhile = await invalidIndexes(knex);
    await new Promise((r) => setTimeout(r, 500));
    await holder.query('COMMIT');
    await holder.end();
    await up;
    expect(retries.length).to.be.greaterThan(0);
    expect(retries.every((c) => c === '55P03')).to.equal(true);
    expect(meanwhile).to.deep.equal(['busy_v_idx']);
    expect(await invalidIndexes(knex)).to.deep.equal([]);
    expect((await indexes(knex, 'busy')).find((i) => i.name === 'busy_v_idx')).to.include({ valid: true });
    await knex.raw(`SELECT bt_index_check('busy_v_idx'::regclass, true)`);
  });
});

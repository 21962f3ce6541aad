import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db, zeroDowntime, type ZeroDowntimeUmzug } from '../lib/index.js';
import { purgeArchives } from '../lib/public/ops.js';
import { formatPurge } from '../lib/ops/purge.js';
import { diffSnapshots } from '../lib/postgres/snapshot.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { startLoopWriter, type LoopWriter } from './support/loop-writer.js';
import { startChecker } from './support/column-writers.js';
import { expectCleanRun } from './support/writers.js';
import { expectSameState, takeState } from './support/db-state.js';

const ROWS = 6_000;
const pick = (max: number) => 1 + Math.floor(Math.random() * max);

describe('splitTable / mergeTables: triggers both ways, copy backfill, verify, contract, reversible', function () {
  let url: string;
  let knex: Knex;
  let db: Db;

  before(async () => {
    ({ url, knex, db } = await openTestDatabase('split_merge_tables'));
  });
  // A failed test must not leave its writers running into the next one.
  const live = new Set<LoopWriter>();
  let aborted = false;
  beforeEach(() => {
    aborted = false;
  });
  afterEach(async () => {
    aborted = true;
    await Promise.all([...live].map((w) => w.stop().catch(() => undefined)));
    live.clear();
  });
  after(async () => {
    await knex?.destroy();
  });

  const umzugFor = (dir: string): ZeroDowntimeUmzug =>
    zeroDowntime({ knex, cwd: dir, migrations: 'migrations/*.ts', contract: { after: 0 }, backfill: { batchSize: 300, canary: false }, logger: silentLogger });
  const snap = (schemas: string[]) => takeState(db, schemas);
  const count = async (sql: string) => Number((await knex.raw<{ rows: { n: string }[] }>(sql)).rows[0]!.n);
  const stopAll = (ws: LoopWriter[]) => Promise.all(ws.splice(0).map((w) => w.stop()));
  const logWriterTotals = (ws: LoopWriter[]) =>
    console.log(`      writers: ${ws.reduce((n, w) => n + w.stats.ops, 0)} statements, ${ws.reduce((n, w) => n + w.stats.deadlocks, 0)} deadlocks retried`);
  const track = async (into: LoopWriter[], label: string, step: Parameters<typeof startLoopWriter>[2]) => {
    const w = await startLoopWriter(url, label, step);
    into.push(w);
    live.add(w);
    return w;
  };
  /** Starts `n` writers named prefix0, prefix1 …, writer `w` running `step(w)`, into `group` and `everyone`. */
  const startGroup = async (group: LoopWriter[], everyone: LoopWriter[], prefix: string, n: number, step: (w: number) => Parameters<typeof startLoopWriter>[2]) => {
    for (let w = 0; w < n; w++) group.push(await track(everyone, `${prefix}${w}`, step(w)));
  };

  it('splitTable: old writers on people and new writers on people + profiles agree at every point of expand → contract → down → down', async () => {
    await knex.raw(`CREATE TABLE people (id bigserial PRIMARY KEY, name text NOT NULL DEFAULT 'anon', email text, bio text, avatar text DEFAULT 'none.png')`);
    await knex.raw(`INSERT INTO people (name, email, bio) SELECT 'p' || g, 'p' || g || '@x', CASE WHEN g % 5 = 0 THEN NULL ELSE 'bio ' || g END FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE people');
    // Roles belong to the whole server: made once, never dropped, so two runs at once do not take it from each other.
    await knex.raw(`DO $$ BEGIN CREATE ROLE zd_split_app; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    await knex.raw(`GRANT SELECT, INSERT, UPDATE, DELETE ON people TO zd_split_app`);
    const before = await snap(['public']);
    const project = tempProject('split');
    project.write(
      '001.split-profiles.ts',
      `import { defineMigration, splitTable } from 'umzug-zero-downtime';
export default defineMigration({ changes: [splitTable({ from: 'people', to: 'profiles', columns: ['bio', 'avatar'], key: ['id'] })] });
`,
    );
    const umzug = umzugFor(project.dir);
    let maxId = ROWS;
    const old: LoopWriter[] = [];
    const neu: LoopWriter[] = [];
    const everyone: LoopWriter[] = [];
    const startOld = (n: number) =>
      startGroup(old, everyone, 'old', n, (w) => async (c, i) => {
        const r = Math.random();
        if (r < 0.3) await c.query(`INSERT INTO people (name, bio) VALUES ($1, $2)`, [`old${w}-${i}`, `b-old${w}-${i}`]);
        else if (r < 0.7) await c.query(`UPDATE people SET bio = $1 WHERE id = $2`, [`b-old${w}-${i}`, pick(maxId)]);
        else if (r < 0.8) await c.query(`UPDATE people SET avatar = NULL, email = $1 WHERE id = $2`, [`e${i}`, pick(maxId)]);
        else await c.query(`DELETE FROM people WHERE id = $1`, [pick(maxId)]);
      });
    const startNew = (n: number) =>
      startGroup(neu, everyone, 'new', n, (w) => async (c, i) => {
        const r = Math.random();
        if (r < 0.3) {
          await c.query('BEGIN');
          const id = (await c.query<{ id: string }>(`INSERT INTO people (name) VALUES ($1) RETURNING id`, [`new${w}-${i}`])).rows[0]!.id;
          await c.query(`INSERT INTO profiles (id, bio) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET bio = EXCLUDED.bio`, [id, `b-new${w}-${i}`]);
          await c.query('COMMIT');
        } else if (r < 0.7) await c.query(`UPDATE profiles SET bio = $1 WHERE id = $2`, [`b-new${w}-${i}`, pick(maxId)]);
        else if (r < 0.8) await c.query(`DELETE FROM profiles WHERE id = $1`, [pick(maxId)]);
        else await c.query(`DELETE FROM people WHERE id = $1`, [pick(maxId)]);
      });

    // While both tables carry the columns, every row present in both must agree; no profile without a person.
    let phase: 'synced' | 'contracted' | 'unsynced' = 'synced';
    let stage = 'expand';
    const checker = startChecker(
      async () => {
        if (phase !== 'synced') return null;
        const r = await knex.raw<{ rows: { bad: number; orphans: number; max: string }[] }>(
          `SELECT (SELECT count(*) FROM people p JOIN profiles t USING (id) WHERE ROW(p.bio, p.avatar) IS DISTINCT FROM ROW(t.bio, t.avatar))::int AS bad,
                  (SELECT count(*) FROM profiles t WHERE NOT EXISTS (SELECT 1 FROM people p WHERE p.id = t.id))::int AS orphans,
                  (SELECT max(id) FROM people) AS max`,
        );
        const x = r.rows[0]!;
        maxId = Number(x.max);
        return x.bad || x.orphans ? `${stage}: ${x.bad} rows disagree, ${x.orphans} orphans` : null;
      },
      /does not exist/,
      { aborted: () => aborted },
    );
    const fullyConsistent = () =>
      count(`SELECT count(*) AS n FROM people p LEFT JOIN profiles t USING (id) WHERE ROW(p.bio, p.avatar) IS DISTINCT FROM ROW(t.bio, t.avatar)`);

    await startOld(2);
    let newStarted: Promise<void> | undefined;
    umzug.engine.subscribe((e) => {
      // New-version writers start as soon as the sync triggers are in, i.e. while the backfill runs.
      if (e.type === 'step' && e.status === 'done' && e.phase === 'expand' && /sync triggers/.test(e.step) && !newStarted) newStarted = startNew(2);
    });
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['001.split-profiles.ts:expand']);
    await newStarted;
    expect(await fullyConsistent()).to.equal(0);
    // The application's role got the same grants on the new table, and its writes there reach people (and back).
    await knex.transaction(async (trx) => {
      await trx.raw('SET LOCAL ROLE zd_split_app');
      await trx.raw(`UPDATE profiles SET bio = 'as app' WHERE id = 2`);
      await trx.raw(`UPDATE people SET avatar = 'app.png' WHERE id = 3`);
    });
    expect((await knex.raw(`SELECT bio FROM people WHERE id = 2`)).rows[0]?.bio ?? 'as app').to.equal('as app');
    const status = await umzug.status();
    expect(status.migrations[0]!.changes[0]!.verify!.mismatches).to.equal(0);
    expect(await count(`SELECT count(*) AS n FROM profiles`)).to.be.greaterThan(ROWS * 0.8);
    await new Promise((res) => setTimeout(res, 300));
    expect(await fullyConsistent()).to.equal(0);

    // The old version retires; contract drops the triggers and the moved columns.
    await stopAll(old);
    phase = 'contracted';
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['001.split-profiles.ts:contract']);
    expect(await count(`SELECT count(*) AS n FROM information_schema.columns WHERE table_name = 'people' AND column_name IN ('bio', 'avatar')`)).to.equal(0);
    await new Promise((res) => setTimeout(res, 200));

    // Roll back the contract: the columns come back from profiles, in sync, and the old version may run again.
    await stopAll(neu);
    await umzug.down();
    phase = 'synced';
    stage = 'after undo of contract';
    expect(await fullyConsistent()).to.equal(0);
    await startOld(2);
    await startNew(2);
    await new Promise((res) => setTimeout(res, 400));
    await stopAll(neu);
    expect(await fullyConsistent()).to.equal(0);
    // The undo of expand drops the sync triggers, then the new table, in two steps (one lock at a time): in between,
    // the table is deliberately no longer kept in sync, so agreement is checked up to here, not during the undo.
    phase = 'unsynced';
    await umzug.down();
    expect(await count(`SELECT count(*) AS n FROM pg_class WHERE relname = 'profiles'`)).to.equal(0);
    await stopAll(old);
    const checked = await checker.stop({ atLeast: 10 });

    const after = await snap(['public']);
    expect(diffSnapshots(before.schema, after.schema)).to.deep.equal([]);
    expectCleanRun(everyone, checked, { minChecks: 10, minOps: 300 });
    logWriterTotals(everyone);
  });
  it('mergeTables: old writers on users + prefs and new writers on the merged table agree at every point of expand → contract → down → down', async () => {
    await knex.raw(`CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL DEFAULT 'anon', email text)`);
    await knex.raw(`CREATE TABLE "prefs; drop table x" (id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE, theme text, "x""; drop table users; --" text DEFAULT 'en')`);
    await knex.raw(`INSERT INTO users (name, email) SELECT 'u' || g, 'u' || g || '@x' FROM generate_series(1, ${ROWS}) g`);
    await knex.raw(`INSERT INTO "prefs; drop table x" SELECT g, CASE WHEN g % 3 = 0 THEN 'dark' END, 'l' || (g % 4) FROM generate_series(1, ${ROWS}) g WHERE g % 2 = 0`);
    await knex.raw('ANALYZE');
    const before = await snap(['public']);
    const project = tempProject('merge');
    project.write(
      '001.merge-accounts.ts',
      `import { defineMigration, mergeTables } from 'umzug-zero-downtime';
export default defineMigration({ changes: [mergeTables({ from: ['users', 'prefs; drop table x'], into: 'accounts', key: ['id'] })] });
`,
    );
    const umzug = umzugFor(project.dir);
    const lang = '"x""; drop table users; --"';
    let maxId = ROWS;
    const old: LoopWriter[] = [];
    const neu: LoopWriter[] = [];
    const everyone: LoopWriter[] = [];
    const startOld = (n: number) =>
      startGroup(old, everyone, 'old', n, (w) => async (c, i) => {
        const r = Math.random();
        if (r < 0.25) {
          await c.query('BEGIN');
          const id = (await c.query<{ id: string }>(`INSERT INTO users (name) VALUES ($1) RETURNING id`, [`old${w}-${i}`])).rows[0]!.id;
          if (i % 2) await c.query(`INSERT INTO "prefs; drop table x" (id, theme) VALUES ($1, 'light')`, [id]);
          await c.query('COMMIT');
        } else if (r < 0.5) await c.query(`UPDATE users SET name = $1 WHERE id = $2`, [`old${w}-${i}`, pick(maxId)]);
        else if (r < 0.75)
          // FOR KEY SHARE: a user deleted by another writer after this statement's snapshot is skipped rather than
          // failing the foreign key (an application race that exists without any migration running).
          await c.query(`INSERT INTO "prefs; drop table x" (id, theme) SELECT id, $1 FROM users WHERE id = $2 FOR KEY SHARE ON CONFLICT (id) DO UPDATE SET theme = EXCLUDED.theme`, [
            `t${i}`,
            pick(maxId),
          ]);
        else if (r < 0.85) await c.query(`DELETE FROM "prefs; drop table x" WHERE id = $1`, [pick(maxId)]);
        else await c.query(`DELETE FROM users WHERE id = $1`, [pick(maxId)]);
      });
    const startNew = (n: number) =>
      startGroup(neu, everyone, 'new', n, (w) => async (c, i) => {
        const r = Math.random();
        if (r < 0.3) await c.query(`INSERT INTO accounts (id, name, theme) VALUES (nextval('users_id_seq'), $1, $2)`, [`new${w}-${i}`, i % 2 ? 'blue' : null]);
        else if (r < 0.6) await c.query(`UPDATE accounts SET theme = $1, ${lang} = $2 WHERE id = $3`, [`n${i}`, `l${i}`, pick(maxId)]);
        else if (r < 0.85) await c.query(`UPDATE accounts SET name = $1, email = NULL WHERE id = $2`, [`new${w}-${i}`, pick(maxId)]);
        else await c.query(`DELETE FROM accounts WHERE id = $1`, [pick(maxId)]);
      });

    let phase: 'synced' | 'contracted' | 'unsynced' = 'synced';
    const checker = startChecker(
      async () => {
        if (phase !== 'synced') return null;
        const r = await knex.raw<{ rows: { bad: number; orphans: number; max: string }[] }>(
          `SELECT (SELECT count(*) FROM users u LEFT JOIN "prefs; drop table x" p USING (id) JOIN accounts a USING (id)
                    WHERE ROW(u.name, u.email, p.theme, p.${lang}) IS DISTINCT FROM ROW(a.name, a.email, a.theme, a.${lang}))::int AS bad,
                  (SELECT count(*) FROM accounts a WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = a.id))::int AS orphans,
                  (SELECT max(id) FROM users) AS max`,
        );
        const x = r.rows[0]!;
        maxId = Number(x.max);
        return x.bad || x.orphans ? `${x.bad} rows disagree, ${x.orphans} orphans` : null;
      },
      /does not exist/,
      { aborted: () => aborted },
    );
    const fullyConsistent = () =>
      count(`SELECT count(*) AS n FROM (users u LEFT JOIN "prefs; drop table x" p USING (id)) FULL JOIN accounts a USING (id)
              WHERE ROW(u.id, u.name, u.email, p.theme, p.${lang}) IS DISTINCT FROM ROW(a.id, a.name, a.email, a.theme, a.${lang})`);

    await startOld(2);
    let newStarted: Promise<void> | undefined;
    umzug.engine.subscribe((e) => {
      if (e.type === 'step' && e.status === 'done' && e.phase === 'expand' && /sync triggers/.test(e.step) && !newStarted) newStarted = startNew(2);
    });
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['001.merge-accounts.ts:expand']);
    await newStarted;
    expect(await fullyConsistent()).to.equal(0);
    await new Promise((res) => setTimeout(res, 300));
    expect(await fullyConsistent()).to.equal(0);

    await stopAll(old);
    phase = 'contracted';
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['001.merge-accounts.ts:contract']);
    expect(await count(`SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname IN ('users', 'prefs; drop table x')`)).to.equal(0);
    // Both retired tables are registered archives: purge lists them as whole tables.
    const listed = formatPurge(await purgeArchives(umzug, { olderThanMs: 0, dryRun: true }));
    expect(listed).to.match(/: public\.users \(whole table\) merge-tables,/);
    expect(listed).to.match(/: public\.prefs; drop table x \(whole table\) merge-tables,/);
    await new Promise((res) => setTimeout(res, 300)); // the new version writes accounts alone
    // users and prefs come back, in batches, with what was written to accounts meanwhile and while the new version
    // goes on writing (an emergency rollback does not stop the application first)
    let batches = 0;
    const off = umzug.engine.subscribe((e) => {
      if (e.type === 'backfill' && e.progress.phase === 'undoContract') batches = Math.max(batches, e.progress.batches);
    });
    await umzug.down();
    off();
    expect(batches, 'the resync ran in batches').to.be.greaterThan(1);
    await stopAll(neu);
    phase = 'synced';
    expect(await fullyConsistent()).to.equal(0);
    await startOld(2);
    await startNew(2);
    await new Promise((res) => setTimeout(res, 400));
    await stopAll(neu);
    expect(await fullyConsistent()).to.equal(0);
    // The undo of expand drops the sync triggers, then the new table, in two steps (one lock at a time): in between,
    // the table is deliberately no longer kept in sync, so agreement is checked up to here, not during the undo.
    phase = 'unsynced';
    await umzug.down();
    await stopAll(old);
    const checked = await checker.stop({ atLeast: 10 });
    expect(await count(`SELECT count(*) AS n FROM pg_class WHERE relname = 'accounts'`)).to.equal(0);
    const after = await snap(['public']);
    expect(diffSnapshots(before.schema, after.schema)).to.deep.equal([]);
    expectCleanRun(everyone, checked, { minChecks: 10, minOps: 300 });
    logWriterTotals(everyone);
  });

  it('up → down → up of a split and a merge restores schema and data exactly', async () => {
    await knex.raw(`CREATE SCHEMA rt`);
    await knex.raw(`CREATE TABLE rt.items (sku text PRIMARY KEY, title text NOT NULL, notes text, weight numeric(8,2) DEFAULT 1.5)`);
    await knex.raw(`INSERT INTO rt.items SELECT 'sku' || g, 't' || g, CASE WHEN g % 4 = 0 THEN NULL ELSE 'n' || g END, g / 7.0 FROM generate_series(1, 3000) g`);
    await knex.raw(`CREATE TABLE rt.a (k1 int, k2 text, v int NOT NULL, PRIMARY KEY (k1, k2))`);
    await knex.raw(`CREATE TABLE rt.b (k1 int, k2 text, w text, PRIMARY KEY (k1, k2))`);
    await knex.raw(`INSERT INTO rt.a SELECT g % 100, 'k' || (g / 100), g FROM generate_series(1, 3000) g`);
    await knex.raw(`INSERT INTO rt.b SELECT k1, k2, 'w' || v FROM rt.a WHERE v % 3 = 0`);
    const project = tempProject('split-merge-rt');
    project.write(
      '001.both.ts',
      `import { defineMigration, splitTable, mergeTables } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  splitTable({ from: { schema: 'rt', name: 'items' }, to: 'item_details', columns: ['notes', 'weight'], key: ['sku'] }),
  mergeTables({ from: [{ schema: 'rt', name: 'a' }, { schema: 'rt', name: 'b' }], into: 'ab', key: ['k1', 'k2'] }),
] });
`,
    );
    const umzug = umzugFor(project.dir);
    const beforeState = await snap(['rt']);
    await umzug.up();
    const expanded = await snap(['rt']);
    expect(expanded.data['rt.item_details']!.rows).to.equal(3000);
    expect(expanded.data['rt.ab']!.rows).to.equal(3000);
    await umzug.up();
    const contracted = await snap(['rt']);
    expect(Object.keys(contracted.data)).to.have.members(['rt.items', 'rt.item_details', 'rt.ab']);
    await umzug.down();
    await umzug.down();
    expectSameState(beforeState, await snap(['rt']), 'up → up → down → down');
    await umzug.up();
    await umzug.up();
    expectSameState(contracted, await snap(['rt']), 'up → up again after down → down');
  });

  it('refuses what it cannot carry over: a split off the primary key, NOT NULL or indexed moved columns, clashing merge columns', async () => {
    await knex.raw(`CREATE TABLE r1 (id int PRIMARY KEY, a text NOT NULL, b text, c text)`);
    await knex.raw(`CREATE INDEX r1_b ON r1 (b)`);
    await knex.raw(`CREATE TABLE r2 (id int PRIMARY KEY, c text)`);
    await knex.raw(`CREATE TABLE keyless (id int NOT NULL UNIQUE, c text)`);
    const cases: [string, RegExp][] = [
      [`splitTable({ from: 'r1', to: 'r1x', columns: ['c'], key: ['a'] })`, /must be the primary key of public\.r1/],
      [`splitTable({ from: 'r1', to: 'r1x', columns: ['a'], key: ['id'] })`, /NOT NULL/],
      [`splitTable({ from: 'r1', to: 'r1x', columns: ['b'], key: ['id'] })`, /index r1_b/],
      [`mergeTables({ from: ['r1', 'r2'], into: 'r12', key: ['id'] })`, /\["c"\] exist in both/],
      [`splitTable({ from: 'keyless', to: 'r1x', columns: ['c'], key: ['id'] })`, /table "public.keyless" has no primary key/],
    ];
    for (const [i, [change, message]] of cases.entries()) {
      const project = tempProject(`refuse${i}`);
      project.write('001.bad.ts', `import { defineMigration, splitTable, mergeTables } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [${change}] });\n`);
      const e = await umzugFor(project.dir).up().then(() => null, (x: Error) => x);
      expect(String((e as { cause?: Error })?.cause?.message ?? e?.message), change).to.match(message);
    }
    expect(await count(`SELECT count(*) AS n FROM pg_class WHERE relname IN ('r1x', 'r12')`)).to.equal(0);
  });
  it('a copy backfill stopped half-way resumes where it stopped: every row copied once, verify clean', async () => {
    await knex.raw(`CREATE TABLE orders_head (id int PRIMARY KEY, total int NOT NULL)`);
    await knex.raw(`CREATE TABLE orders_extra (id int PRIMARY KEY, note text)`);
    await knex.raw(`INSERT INTO orders_head SELECT g, g * 10 FROM generate_series(1, 6000) g`);
    await knex.raw(`INSERT INTO orders_extra SELECT g, 'n' || g FROM generate_series(1, 6000, 2) g`);
    const project = tempProject('merge-resume');
    project.write(
      '001.orders.ts',
      `import { defineMigration, mergeTables } from 'umzug-zero-downtime';
export default defineMigration({ changes: [mergeTables({ from: ['orders_head', 'orders_extra'], into: 'orders_all', key: ['id'] })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { batchSize: 500, adaptive: false, canary: false }, logger: silentLogger });
    let batches = 0;
    const remove = umzug.engine.addBatchGuard(async () => {
      if (++batches === 5) throw new Error('stopped by the test');
    });
    const first = await umzug.up().then(() => null, (e: Error) => e);
    expect(String(first?.cause ?? first)).to.match(/stopped by the test/);
    const partial = await count(`SELECT count(*) AS n FROM orders_all`);
    expect(partial).to.equal(2000);
    remove();
    await umzug.up();
    expect(await count(`SELECT count(*) AS n FROM orders_all`)).to.equal(6000);
    expect(
      await count(`SELECT count(*) AS n FROM orders_head h LEFT JOIN orders_extra e USING (id) FULL JOIN orders_all a USING (id)
                    WHERE ROW(h.id, h.total, e.note) IS DISTINCT FROM ROW(a.id, a.total, a.note)`),
    ).to.equal(0);
    const status = await umzug.status();
    expect(status.migrations[0]!.changes[0]!.verify!.mismatches).to.equal(0);
  });
});

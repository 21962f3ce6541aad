// Partitions that appear after the step that catches up with them (issue 19): after check-index and after a column
// swap, while addUnique's partitions are being given their constraints, and between dropTable's expand and contract.
// Each under a writer in every partition, then down and up again, exactly.
import { expect } from 'chai';
import type { Knex } from 'knex';
import type pg from 'pg';
import { zeroDowntime, type Db } from '../lib/index.js';
import { DEFAULT_LOCK_SAFETY, runStepLockSafe } from '../lib/engine/executor.js';
import { partitionIndexName } from '../lib/postgres/partitions.js';
import { expectSameState, takeState } from './support/db-state.js';
import { silentLogger, useTestDatabase } from './support/pg.js';
import { count, leaves, oneChangeProject, strip, trackedWriters } from './support/partition-helpers.js';

const BACKFILL = { batchSize: 200, adaptive: false, canary: false } as const;

const writer = trackedWriters();

const project = oneChangeProject;

/** Each leaf below `index` with the name of its index attached (at any depth), and whether `index` is valid. */
async function attachedNames(knex: Knex, index: string): Promise<{ valid: boolean; leaves: Record<string, string> }> {
  const v = await knex.raw<{ rows: { valid: boolean }[] }>(`SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass(?)`, [index]);
  const l = await knex.raw<{ rows: { t: string; i: string }[] }>(
    `SELECT x.indrelid::regclass::text AS t, c.relname AS i FROM pg_partition_tree(to_regclass(?)) p JOIN pg_index x ON x.indexrelid = p.relid JOIN pg_class c ON c.oid = p.relid
      WHERE p.isleaf AND x.indisvalid ORDER BY 1`,
    [index],
  );
  return { valid: v.rows[0]?.valid ?? false, leaves: Object.fromEntries(l.rows.map((x) => [strip(x.t), x.i])) };
}

/** down → down, up → up, down → down, up → up: the second of each pair of rounds gives what the first gave. */
async function roundTrips(umzug: { up(): Promise<unknown>; down(): Promise<unknown> }, db: Db, downs = 2): Promise<void> {
  const take = () => takeState(db, ['public']);
  const round = async (f: () => Promise<unknown>) => {
    for (let i = 0; i < downs; i++) await f();
    return take();
  };
  const reverted = await round(() => umzug.down());
  const applied = await round(() => umzug.up());
  expectSameState(reverted, await round(() => umzug.down()), 'down again');
  expectSameState(applied, await round(() => umzug.up()), 'up again');
}

describe('a partition created after check-index, after the swap, and every partition the change read gone', function () {
  this.timeout(120_000);
  const t = useTestDatabase('partman_late_swap', async ({ knex }) => {
    await knex.raw(`CREATE TABLE items (id bigint NOT NULL, kind integer NOT NULL, label text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
      CREATE TABLE items_a PARTITION OF items FOR VALUES FROM (0) TO (1000);
      CREATE TABLE items_b PARTITION OF items FOR VALUES FROM (1000) TO (2000);
      CREATE INDEX items_label_idx ON items (label);
      INSERT INTO items SELECT g, g % 5, 'l' || g FROM generate_series(1, 1999) g;`);
  });

  it('renameColumn: the late partitions\' indexes get the route\'s names at the swap and at its undo, found by their attachment; exact round trips', async () => {
    const umzug = zeroDowntime({
      knex: t.knex,
      cwd: project('late-swap', `renameColumn({ table: 'items', from: 'label', to: 'title' })`, 'renameColumn'),
      contract: { after: 0 },
      backfill: BACKFILL,
      logger: silentLogger,
    });
    let top = 2000;
    let open = false;
    // Every partition there is, old and new: the old version writes label, the trigger keeps title equal.
    const app = await writer(t.url, 'app', async (c: pg.Client, i: number) => {
      if (open && i % 3 === 0 && top < 2999) await c.query(`INSERT INTO items (id, kind, label) VALUES ($1, $2, $3)`, [top, top % 5, `w${top}`]).then(() => top++);
      else await c.query(`UPDATE items SET label = label || '.' WHERE id = $1`, [1 + Math.floor(Math.random() * (top - 1))]);
    });
    await umzug.up(); // expand: check-index has run
    // After check-index: PostgreSQL clones the twin's index onto the new partition under a name of its own making.
    await t.knex.raw(`CREATE TABLE items_c PARTITION OF items FOR VALUES FROM (2000) TO (3000)`);
    open = true;
    while (top < 2100) await new Promise((r) => setTimeout(r, 5));
    // pg_partman's retention: the partitions the change read are dropped (no default partition to find the index by).
    await t.knex.raw(`DROP TABLE items_a; DROP TABLE items_b`);
    await app.stop();
    expect(app.stats.errors).to.deep.equal([]);
    expect(await count(t.knex, `SELECT count(*) AS n FROM items_c`)).to.be.greaterThan(50);

    await umzug.up(); // contract: the swap
    expect(await attachedNames(t.knex, 'items_label_idx')).to.deep.equal({ valid: true, leaves: { items_c: partitionIndexName('items_label_idx', { schema: 'public', name: 'items_c' }) } });
    expect(await count(t.knex, `SELECT count(*) AS n FROM items WHERE title IS NULL`)).to.equal(0);

    // After the swap: a partition the new version writes into gets PostgreSQL's name again.
    await t.knex.raw(`CREATE TABLE items_d PARTITION OF items FOR VALUES FROM (3000) TO (4000)`);
    const next = await writer(t.url, 'new', async (c: pg.Client, i: number) => {
      await c.query(`INSERT INTO items (id, kind, title) VALUES ($1, $2, $3)`, [3000 + i, i % 5, `n${i}`]);
    });
    while (next.stats.ops < 50) await new Promise((r) => setTimeout(r, 5));
    await next.stop();
    expect(next.stats.errors).to.deep.equal([]);
    await umzug.down(); // undo the contract: the swap back reaches items_d by its attachment
    const names = (p: string) => partitionIndexName('items_label_idx', { schema: 'public', name: p });
    expect(await attachedNames(t.knex, 'items_label_idx')).to.deep.equal({ valid: true, leaves: { items_c: names('items_c'), items_d: names('items_d') } });
    await umzug.up();
    expect(await attachedNames(t.knex, 'items_label_idx')).to.deep.equal({ valid: true, leaves: { items_c: names('items_c'), items_d: names('items_d') } });
    await roundTrips(umzug, t.db);
    await umzug.close();
  });
});

describe('addUnique: partitions created while the partitions are given their constraints', function () {
  this.timeout(120_000);
  const t = useTestDatabase('partman_late_unique', async ({ knex }) => {
    await knex.raw(`CREATE TABLE orders (id bigint NOT NULL, code integer NOT NULL, note text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
      CREATE TABLE orders_a PARTITION OF orders FOR VALUES FROM (0) TO (1000);
      CREATE TABLE orders_b PARTITION OF orders FOR VALUES FROM (1000) TO (2000);
      INSERT INTO orders SELECT g, g, 'o' || g FROM generate_series(1, 1999) g;`);
  });

  it('a leaf and a sub-partitioned partition appear before the adopting step: their unique indexes are built concurrently and constrained first; exact round trip', async () => {
    const umzug = zeroDowntime({ knex: t.knex, cwd: project('late-unique', `addUnique({ table: 'orders', columns: ['code', 'id'], name: 'orders_code_key' })`, 'addUnique'), contract: { after: 0 }, logger: silentLogger });
    let top = 0;
    const ids = [2000, 3000, 3500];
    const app = await writer(t.url, 'app', async (c: pg.Client, i: number) => {
      const late = top > 0 && i % 2 === 0;
      if (late) {
        const base = ids[i % 3]!;
        const id = base + top++;
        await c.query(`INSERT INTO orders (id, code, note) VALUES ($1, $2, $3)`, [id, id, `w${i}`]);
      } else await c.query(`UPDATE orders SET note = note || '.' WHERE id = $1`, [1 + Math.floor(Math.random() * 1998)]);
    });
    // A run that stopped right before the adopting step, as the engine records its steps; then the partitions appear.
    const entry = (await umzug.entries()).find((e) => e.name === '001.change.ts:expand')!;
    const started = await umzug.engine.prepare(entry.name, 0, entry.changes[0]!);
    await umzug.engine.state.startChange(entry.name, 0, entry.changes[0]!.kind, started.description.summary, started.snapshot);
    const steps = started.description.expand.steps;
    for (const step of steps.slice(0, steps.findIndex((s) => s.id === 'add-constraint'))) {
      await runStepLockSafe(t.db, step, DEFAULT_LOCK_SAFETY, (conn) => umzug.engine.state.recordStep(conn, entry.name, 0, 'expand', step.id, step.description));
    }
    await t.knex.raw(`CREATE TABLE orders_c PARTITION OF orders FOR VALUES FROM (2000) TO (3000);
      CREATE TABLE orders_d PARTITION OF orders FOR VALUES FROM (3000) TO (4000) PARTITION BY RANGE (id);
      CREATE TABLE orders_d1 PARTITION OF orders_d FOR VALUES FROM (3000) TO (3500);
      CREATE TABLE orders_d2 PARTITION OF orders_d FOR VALUES FROM (3500) TO (4000);`);
    top = 1;
    while (top < 60) await new Promise((r) => setTimeout(r, 5));
    await umzug.up();
    while (top < 120) await new Promise((r) => setTimeout(r, 5));
    await app.stop();
    expect(app.stats.errors).to.deep.equal([]);

    const all = ['orders_a', 'orders_b', 'orders_c', 'orders_d1', 'orders_d2'];
    expect(await leaves(t.knex, 'orders')).to.deep.equal(all);
    // Every leaf's constraint is its own unique index, adopted level by level by the table's.
    const cons = await t.knex.raw<{ rows: { t: string; name: string; adopted: boolean }[] }>(
      `SELECT co.conrelid::regclass::text AS t, co.conname AS name, co.conparentid <> 0 AS adopted FROM pg_constraint co JOIN pg_partition_tree('orders') p ON p.relid = co.conrelid
        WHERE co.contype = 'u' ORDER BY 1`,
    );
    const route = (p: string) => partitionIndexName('orders_code_key', { schema: 'public', name: p });
    expect(cons.rows.map((r) => [strip(r.t), r.name, r.adopted])).to.deep.equal([
      ['orders', 'orders_code_key', false],
      ...['orders_a', 'orders_b', 'orders_c', 'orders_d', 'orders_d1', 'orders_d2'].map((p) => [p, route(p), true]),
    ]);
    const dup = await t.knex.raw(`INSERT INTO orders (id, code) VALUES (2999, 2999)`).then(
      () => t.knex.raw(`INSERT INTO orders (id, code) VALUES (2999, 2999)`),
    ).then(() => null, (e: { code?: string; message: string }) => e);
    expect(dup?.message).to.match(/duplicate key value violates unique constraint/);
    await t.knex.raw(`DELETE FROM orders WHERE id = 2999`);

    const first = await takeState(t.db, ['public']);
    await umzug.down();
    expect(await count(t.knex, `SELECT count(*) AS n FROM pg_class WHERE relname LIKE 'zd_pi_%' OR relname = 'orders_code_key'`)).to.equal(0);
    await umzug.up();
    expectSameState(first, await takeState(t.db, ['public']), 'up again');
    await umzug.close();
  });
});

describe('dropTable: partitions created or attached between expand and contract', function () {
  this.timeout(120_000);
  const t = useTestDatabase('partman_late_drop', async ({ knex }) => {
    await knex.raw(`CREATE TABLE logs (id bigint NOT NULL, msg text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
      CREATE TABLE logs_a PARTITION OF logs FOR VALUES FROM (0) TO (1000);
      CREATE TABLE logs_b PARTITION OF logs FOR VALUES FROM (1000) TO (3000) PARTITION BY RANGE (id);
      CREATE TABLE logs_b1 PARTITION OF logs_b FOR VALUES FROM (1000) TO (2000);
      INSERT INTO logs SELECT g, 'm' || g FROM generate_series(1, 1999, 2) g;
      ANALYZE logs;`);
  });

  it('the late partitions are archived with their rows and come back with them; row counts right; exact round trip', async () => {
    const umzug = zeroDowntime({ knex: t.knex, cwd: project('late-drop', `dropTable({ table: 'logs' })`, 'dropTable'), contract: { after: 0 }, logger: silentLogger });
    await umzug.up(); // expand: nothing
    // Premade meanwhile: a partition, one below the partitioned partition, and an existing table with rows attached.
    await t.knex.raw(`CREATE TABLE logs_c PARTITION OF logs FOR VALUES FROM (3000) TO (4000);
      CREATE TABLE logs_b2 PARTITION OF logs_b FOR VALUES FROM (2000) TO (3000);
      CREATE TABLE logs_old (LIKE logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
      INSERT INTO logs_old SELECT g, 'old' || g FROM generate_series(5001, 5199, 2) g;
      ALTER TABLE logs ATTACH PARTITION logs_old FOR VALUES FROM (5000) TO (6000);`);
    // The old version still writes, into every partition: even ids are new rows, odd ones are updated.
    const starts = [0, 1000, 2000, 3000, 5000];
    const app = await writer(t.url, 'app', async (c: pg.Client, i: number) => {
      const base = starts[i % starts.length]!;
      const k = Math.floor(i / starts.length);
      await c.query(`INSERT INTO logs (id, msg) VALUES ($1, $2)`, [base + 2 * (k % 499) + 2, `w${i}`]).catch((e: { code?: string }) => {
        if (e.code !== '23505') throw e;
      });
      await c.query(`UPDATE logs SET msg = msg || '.' WHERE id = $1`, [base + 1 + 2 * (k % 99)]);
    });
    while (app.stats.ops < 300) await new Promise((r) => setTimeout(r, 5));
    await app.stop();
    expect(app.stats.errors).to.deep.equal([]);
    const rows = await count(t.knex, `SELECT count(*) AS n FROM logs`);
    expect(await count(t.knex, `SELECT count(*) AS n FROM logs WHERE id >= 2000`)).to.be.greaterThan(100);
    // As autovacuum would have: the partitions the change read are analyzed, the late ones never were.
    await t.knex.raw(`ANALYZE logs_a, logs_b1`);
    const before = await takeState(t.db, ['public']);

    await umzug.up(); // contract: the table and every partition, the late ones too, move into the state schema
    expect(await count(t.knex, `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname LIKE 'logs%'`)).to.equal(0);
    const archive = await t.knex.raw<{ rows: { archive: string; rows: string }[] }>(`SELECT archive, rows::text AS rows FROM zero_downtime.column_archives WHERE kind = 'drop-table'`);
    expect(archive.rows).to.have.length(1);
    expect(await count(t.knex, `SELECT count(*) AS n FROM zero_downtime.${archive.rows[0]!.archive}`)).to.equal(rows);
    // The planner's estimate, taken once the late partitions (never analyzed) were: ANALYZE reads every row of tables this small.
    expect(Number(archive.rows[0]!.rows), "the registry's estimate counts the late partitions' rows").to.equal(rows);

    await umzug.down(); // the table comes back with every partition, under its name
    expectSameState(before, await takeState(t.db, ['public']), 'down');
    expect(await count(t.knex, `SELECT count(*) AS n FROM logs`)).to.equal(rows);
    expect(await count(t.knex, `SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'zero_downtime' AND c.relname LIKE 'zd_dropped_%'`)).to.equal(0);
    await umzug.up();
    await umzug.down();
    expectSameState(before, await takeState(t.db, ['public']), 'up → down again');
    await umzug.close();
  });
});

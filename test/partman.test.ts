// Partitions that appear or go while a change runs (issue 19): pg_partman's premake (Debian's postgresql-15-partman,
// installed by scripts/partman.sh) creating partitions during a backfill while a writer fills them, a partition created
// by hand and an existing table attached mid-expand, and partitions detached mid-expand (plain and CONCURRENTLY).
// Each: the late partitions get the new column, trigger and indexes, their rows are backfilled and verified, no
// writer sees an error, and up → up → down → down → up → up ends as the first round did, exactly.
import { expect } from 'chai';
import type { Knex } from 'knex';
import type pg from 'pg';
import { zeroDowntime, type Db } from '../lib/index.js';
import { DEFAULT_LOCK_SAFETY, runStepLockSafe } from '../lib/engine/executor.js';
import { partitionIndexName } from '../lib/postgres/partitions.js';
import { expectSameState, takeState, type DbState } from './support/db-state.js';
import type { LoopWriter } from './support/loop-writer.js';
import { silentLogger, useTestDatabase } from './support/pg.js';
import { count, leaves, oneChangeProject, strip, trackedWriters } from './support/partition-helpers.js';

/** Small fixed batches, so that the guard below runs between several of them. */
const BACKFILL = { batchSize: 200, adaptive: false, canary: false } as const;


const writer = trackedWriters();

/** The leaves with a valid index attached (at any depth) to `index`, and whether `index` is valid. */
async function attached(knex: Knex, index: string): Promise<{ valid: boolean; leaves: string[] }> {
  const v = await knex.raw<{ rows: { valid: boolean }[] }>(`SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass(?)`, [index]);
  const l = await knex.raw<{ rows: { t: string }[] }>(
    `SELECT x.indrelid::regclass::text AS t FROM pg_partition_tree(to_regclass(?)) p JOIN pg_index x ON x.indexrelid = p.relid WHERE p.isleaf AND x.indisvalid ORDER BY 1`,
    [index],
  );
  return { valid: v.rows[0]?.valid ?? false, leaves: l.rows.map((x) => strip(x.t)).sort() };
}

/** The leaves that have the row trigger named like `pattern`, cloned from the table's. */
async function triggered(knex: Knex, table: string, pattern: string): Promise<string[]> {
  const r = await knex.raw<{ rows: { t: string }[] }>(
    `SELECT tg.tgrelid::regclass::text AS t FROM pg_trigger tg JOIN pg_partition_tree(?::regclass) p ON p.relid = tg.tgrelid
      WHERE p.isleaf AND tg.tgname LIKE ? AND tg.tgparentid <> 0 ORDER BY 1`,
    [table, pattern],
  );
  return r.rows.map((x) => strip(x.t)).sort();
}

/** Columns of `table` (the twin of a column swap is the one that was not there before). */
async function columns(knex: Knex, table: string): Promise<string[]> {
  const r = await knex.raw<{ rows: { attname: string }[] }>(`SELECT attname FROM pg_attribute WHERE attrelid = ?::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [table]);
  return r.rows.map((x) => x.attname);
}

/**
 * The second round of a round trip: down → down must give back what the first round's down gave, and up → up what the
 * first round's contract gave (the partitions that appeared in the first round are known to the second from the start,
 * and their indexes must carry the names the first round gave them).
 */
async function secondRound(umzug: { up(): Promise<unknown>; down(): Promise<unknown> }, db: Db, contracted: DbState): Promise<void> {
  const take = () => takeState(db, ['public']);
  await umzug.down();
  await umzug.down();
  const reverted = await take();
  await umzug.up();
  await umzug.up();
  expectSameState(contracted, await take(), 'up → up again after down → down');
  await umzug.down();
  await umzug.down();
  expectSameState(reverted, await take(), 'down → down again');
}

const project = oneChangeProject;

describe('pg_partman: partitions premade while a change runs', function () {
  this.timeout(120_000);
  const t = useTestDatabase('partman_premake', async ({ knex }) => {
    const v = await knex.raw<{ rows: { v: string }[] }>(`SELECT default_version AS v FROM pg_available_extensions WHERE name = 'pg_partman'`);
    expect(v.rows, 'pg_partman is not installed: run scripts/services.sh (it installs postgresql-15-partman)').to.have.length(1);
    expect(v.rows[0]!.v, 'this test uses the pg_partman 4 API (create_parent with p_type)').to.match(/^4\./);
    await knex.raw(`CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman;
      CREATE TABLE readings (id bigint NOT NULL, sensor integer NOT NULL, amount integer NOT NULL, note text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
      CREATE INDEX readings_amount_idx ON readings (amount);
      SELECT partman.create_parent('public.readings', 'id', 'native', '1000', p_premake := 2, p_start_partition := '0');
      INSERT INTO readings SELECT g, g % 7, g % 500, 'r' || g FROM generate_series(1, 2999) g;`);
  });

  it('changeColumnType and addIndex: partitions premade by run_maintenance() during the backfill get the new column, trigger and indexes, are backfilled and verified; exact round trip', async () => {
    const before = await leaves(t.knex, 'readings');
    expect(before).to.deep.equal(['readings_default', 'readings_p0', 'readings_p1000', 'readings_p2000']);
    const umzug = zeroDowntime({
      knex: t.knex,
      cwd: project('partman', `changeColumnType({ table: 'readings', column: 'amount', type: 'bigint' }),\naddIndex({ table: 'readings', columns: ['sensor', 'id'] })`, 'changeColumnType, addIndex'),
      contract: { after: 0 },
      backfill: BACKFILL,
      logger: silentLogger,
    });
    // The writer inserts into the partitions pg_partman made (never into its default partition, which would keep
    // run_maintenance() from attaching a partition over those rows) and updates rows everywhere.
    let next = 3000;
    let limit = 3000;
    const app: LoopWriter = await writer(t.url, 'app', async (c: pg.Client, i: number) => {
      if (i % 2 && next < limit) {
        const id = next;
        next += 7;
        await c.query(`INSERT INTO readings (id, sensor, amount, note) VALUES ($1, $2, $3, $4)`, [id, id % 7, id % 500, `w${id}`]);
      } else await c.query(`UPDATE readings SET amount = amount + 1 WHERE id = $1`, [1 + Math.floor(Math.random() * (next - 1))]);
    });
    let batches = 0;
    const made: string[][] = [];
    const maintain = async () => {
      await t.knex.raw(`SELECT partman.run_maintenance('public.readings')`);
      made.push(await leaves(t.knex, 'readings'));
      limit = 1000 * Math.floor(made.length === 1 ? 5 : 7);
    };
    const remove = umzug.engine.addBatchGuard(async (p) => {
      if (p.phase !== 'expand') return;
      batches++;
      if (batches === 2 || (made.length === 1 && next >= 4100)) {
        await maintain();
        // Let the writer reach the new partitions before the next batch.
        const target = made.length === 1 ? 4100 : 5100;
        for (let i = 0; i < 2000 && next < target; i++) await new Promise((r) => setTimeout(r, 5));
      }
    });
    try {
      await umzug.up(); // expand: both changes
    } finally {
      remove();
    }
    expect(made, 'run_maintenance() ran twice during the backfill').to.have.length(2);
    const late = ['readings_p3000', 'readings_p4000', 'readings_p5000', 'readings_p6000'];
    expect(await leaves(t.knex, 'readings')).to.deep.equal([...before, ...late].sort());
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM readings WHERE id >= 5000`), 'the writer filled the second premade partitions').to.be.greaterThan(0);

    // The new partitions have the twin column (PostgreSQL: LIKE + ATTACH), the sync trigger (cloned at ATTACH), and
    // both indexes: the addIndex one and the twin's, built or caught up with by check-index.
    const twin = (await columns(t.knex, 'readings')).find((c) => !['id', 'sensor', 'amount', 'note'].includes(c))!;
    expect(twin).to.be.a('string');
    for (const p of late) expect(await columns(t.knex, p), p).to.include(twin);
    expect(await triggered(t.knex, 'readings', 'zd_%')).to.deep.equal(await leaves(t.knex, 'readings'));
    expect(await attached(t.knex, 'readings_sensor_id_idx')).to.deep.equal({ valid: true, leaves: await leaves(t.knex, 'readings') });
    const twinIndex = (await t.knex.raw<{ rows: { relname: string }[] }>(`SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE x.indrelid = 'readings'::regclass AND c.relname LIKE 'zd_tw_%'`)).rows;
    expect(twinIndex).to.have.length(1);
    expect(await attached(t.knex, twinIndex[0]!.relname)).to.deep.equal({ valid: true, leaves: await leaves(t.knex, 'readings') });
    // Backfilled and verified: every row's twin holds its value, in the late partitions too.
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM readings WHERE ?? IS DISTINCT FROM amount`, [twin])).to.equal(0);
    const verified = await t.knex.raw<{ rows: { verify_mismatches: number | null }[] }>(`SELECT verify_mismatches FROM zero_downtime.changes ORDER BY change_index`);
    expect(verified.rows.map((r) => (r.verify_mismatches === null ? null : Number(r.verify_mismatches)))).to.deep.equal([0, null]);

    // The old version stops before the contract, as in a deployment.
    await app.stop();
    expect(app.stats.errors).to.deep.equal([]);
    expect(app.stats.ops).to.be.greaterThan(50);
    await umzug.up(); // contract
    expect((await columns(t.knex, 'readings_p5000')).filter((c) => c === 'amount')).to.have.length(1);
    const types = await t.knex.raw<{ rows: { t: string }[] }>(`SELECT DISTINCT format_type(atttypid, atttypmod) AS t FROM pg_attribute a JOIN pg_partition_tree('readings') p ON p.relid = a.attrelid WHERE attname = 'amount'`);
    expect(types.rows.map((r) => r.t)).to.deep.equal(['bigint']);
    // The late partitions' indexes carry the names the route gives a partition's index: the names an up that reads them gives.
    expect(await attached(t.knex, 'readings_amount_idx')).to.deep.equal({ valid: true, leaves: await leaves(t.knex, 'readings') });
    for (const p of late) {
      const names = await t.knex.raw<{ rows: { relname: string }[] }>(`SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE x.indrelid = ?::regclass ORDER BY 1`, [p]);
      expect(names.rows.map((r) => r.relname), p).to.deep.equal(
        [`${p}_pkey`, partitionIndexName('readings_amount_idx', { schema: 'public', name: p }), partitionIndexName('readings_sensor_id_idx', { schema: 'public', name: p })].sort(),
      );
    }
    await secondRound(umzug, t.db, await takeState(t.db, ['public']));
    await umzug.close();
  });
});

/**
 * Range by id, three partitions with a gap between the first two (for a table attached behind the backfill's cursor)
 * and a default one; an index on the column the test swaps.
 */
const ITEMS = `CREATE TABLE items (id bigint NOT NULL, kind integer NOT NULL, label text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE items_a PARTITION OF items FOR VALUES FROM (0) TO (1000);
CREATE TABLE items_b PARTITION OF items FOR VALUES FROM (2000) TO (3000);
CREATE TABLE items_c PARTITION OF items FOR VALUES FROM (3000) TO (4000);
CREATE TABLE items_rest PARTITION OF items DEFAULT;
CREATE INDEX items_label_idx ON items (label);
INSERT INTO items SELECT g, g % 5, 'l' || g FROM generate_series(1, 999) g;
INSERT INTO items SELECT g, g % 5, 'l' || g FROM generate_series(2000, 3999) g;`;

describe('partitions created, attached and detached by hand while a change runs', function () {
  this.timeout(120_000);
  const t = useTestDatabase('partman_by_hand', async ({ knex }) => {
    await knex.raw(ITEMS);
  });

  it('renameColumn and addIndex: a partition created and a table with rows attached during the backfill, one partition detached; exact round trip', async () => {
    const umzug = zeroDowntime({
      knex: t.knex,
      cwd: project('by-hand', `renameColumn({ table: 'items', from: 'label', to: 'title' }),\naddIndex({ table: 'items', columns: ['kind'] })`, 'renameColumn, addIndex'),
      contract: { after: 0 },
      backfill: BACKFILL,
      logger: silentLogger,
    });
    let next = 5000;
    let open = false;
    const app = await writer(t.url, 'app', async (c: pg.Client, i: number) => {
      if (i % 2 && open) {
        const id = next++;
        if (id < 6000) await c.query(`INSERT INTO items (id, kind, label) VALUES ($1, $2, $3)`, [id, id % 5, `w${id}`]);
      } else await c.query(`UPDATE items SET label = label || '.' WHERE id = $1`, [(i % 3 ? 1 : 2000) + Math.floor(Math.random() * 999)]);
    });
    let batches = 0;
    const remove = umzug.engine.addBatchGuard(async (p) => {
      if (p.phase !== 'expand') return;
      batches++;
      if (batches === 8) {
        // By hand: a new partition (PostgreSQL clones the trigger and the indexes the table has now, not the twin
        // index, which does not exist yet), and an existing table with rows attached, whose keys the backfill passed.
        await t.knex.raw(`CREATE TABLE items_e PARTITION OF items FOR VALUES FROM (5000) TO (6000)`);
        await t.knex.raw(`CREATE TABLE items_old (LIKE items INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
          INSERT INTO items_old (id, kind, label) SELECT g, g % 5, 'old' || g FROM generate_series(1000, 1099) g;
          ALTER TABLE items ATTACH PARTITION items_old FOR VALUES FROM (1000) TO (2000)`);
        // Detached: the change planned steps for it; from now on it is someone else's table.
        await t.knex.raw(`ALTER TABLE items DETACH PARTITION items_c`);
        open = true;
      }
    });
    try {
      await umzug.up(); // expand
    } finally {
      remove();
    }
    const now = ['items_a', 'items_b', 'items_e', 'items_old', 'items_rest'];
    expect(await leaves(t.knex, 'items')).to.deep.equal(now);
    expect(await attached(t.knex, 'items_kind_idx')).to.deep.equal({ valid: true, leaves: now });
    expect(await triggered(t.knex, 'items', 'zd_%')).to.deep.equal(now);
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM items WHERE title IS DISTINCT FROM label`), 'every row backfilled, the attached ones too').to.equal(0);
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM items_e`)).to.be.greaterThan(0);
    // The detached table is left as it was when it left: no trigger (PostgreSQL drops the clone), no index of ours.
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'items_c'::regclass AND NOT tgisinternal`)).to.equal(0);
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE x.indrelid = 'items_c'::regclass AND c.relname LIKE 'zd_%'`)).to.equal(0);

    await app.stop();
    expect(app.stats.errors).to.deep.equal([]);
    await umzug.up(); // contract
    expect(await attached(t.knex, 'items_label_idx')).to.deep.equal({ valid: true, leaves: now });
    expect(await columns(t.knex, 'items_old')).to.deep.equal(['id', 'kind', 'title']);
    await secondRound(umzug, t.db, await takeState(t.db, ['public']));
    await umzug.close();
  });

});

describe('a partition detached while an index is built partition by partition', function () {
  const t = useTestDatabase('partman_detach');

  it('addIndex: a partition detached CONCURRENTLY after the partitions before it were attached: its steps are skipped, the index is made valid', async () => {
    await t.knex.raw(`CREATE TABLE parts (id bigint PRIMARY KEY, v integer) PARTITION BY RANGE (id);
      CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (100);
      CREATE TABLE parts_2 PARTITION OF parts FOR VALUES FROM (100) TO (200);
      CREATE TABLE parts_3 PARTITION OF parts FOR VALUES FROM (200) TO (300);
      INSERT INTO parts SELECT g, g FROM generate_series(0, 299) g;`);
    const umzug = zeroDowntime({ knex: t.knex, cwd: project('detach', `addIndex({ table: 'parts', columns: ['v'] })`, 'addIndex'), contract: { after: 0 }, logger: silentLogger });
    // A run stopped after parts_2's index was attached (its steps recorded, as the engine records them), then parts_3
    // is detached, then the run resumes. PostgreSQL counts a partitioned index's partitions only when one is attached:
    // parts_3's attach would have made the index valid, and no attach comes after it.
    const entry = (await umzug.entries()).find((e) => e.name === '001.change.ts:expand')!;
    const started = await umzug.engine.prepare(entry.name, 0, entry.changes[0]!);
    await umzug.engine.state.startChange(entry.name, 0, entry.changes[0]!.kind, started.description.summary, started.snapshot);
    const steps = started.description.expand.steps;
    for (const step of steps.slice(0, steps.findIndex((s) => s.id === 'partition:public.parts_3:build'))) {
      await runStepLockSafe(t.db, step, DEFAULT_LOCK_SAFETY, (conn) => umzug.engine.state.recordStep(conn, entry.name, 0, 'expand', step.id, step.description));
    }
    await t.knex.raw(`ALTER TABLE parts DETACH PARTITION parts_3 CONCURRENTLY`);
    expect((await attached(t.knex, 'parts_v_idx')).valid, 'PostgreSQL leaves the parent index invalid').to.equal(false);
    await umzug.up();
    expect(await attached(t.knex, 'parts_v_idx')).to.deep.equal({ valid: true, leaves: ['parts_1', 'parts_2'] });
    // Nothing was built on the table that left.
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'parts_3'::regclass`)).to.equal(1);
    await umzug.down();
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'zd_pi_%' OR relname = 'parts_v_idx'`)).to.equal(0);
    await umzug.close();
  });
});

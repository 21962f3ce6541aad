// A partitioned table's backfill walks each leaf partition's heap pages (issue 19): chunks are per leaf, planned leaf
// by leaf in turn so two workers walk two partitions at once, `umzug status` shows each partition's progress, a run
// stopped in mid-partition resumes where it stopped, a table attached meanwhile is walked and a partition detached
// meanwhile is left alone, all under writers in every partition; a run killed (SIGKILL) in mid-partition is taken
// over by the next at its last committed page.
import { expect } from 'chai';
import type pg from 'pg';
import { zeroDowntime } from '../lib/index.js';
import { buildStatus, formatStatus, type StatusReport } from '../lib/ops/status.js';
import { silentLogger, useTestDatabase } from './support/pg.js';
import { tempProject } from './support/project.js';
import { count, oneChangeProject, strip, trackedWriters } from './support/partition-helpers.js';
import { spawnUp } from './support/backfill-spawn.js';

/**
 * By list of region, one partition itself hashed in two, a default partition named to break unquoted SQL, and an
 * empty one: 5 leaves with rows (4 000 each), 1 without.
 */
const ROWS = 20_000;
const LATE = 1500;
const ORDERS = `CREATE TABLE orders (id bigint NOT NULL, region text NOT NULL, amount integer NOT NULL, note text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE orders_eu PARTITION OF orders FOR VALUES IN ('eu');
CREATE TABLE orders_us PARTITION OF orders FOR VALUES IN ('us');
CREATE TABLE orders_asia PARTITION OF orders FOR VALUES IN ('asia') PARTITION BY HASH (id);
CREATE TABLE orders_asia_0 PARTITION OF orders_asia FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE orders_asia_1 PARTITION OF orders_asia FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE "orders; drop table x" PARTITION OF orders DEFAULT;
CREATE TABLE orders_none PARTITION OF orders FOR VALUES IN ('none');
INSERT INTO orders (id, region, amount, note) SELECT g, (ARRAY['eu', 'us', 'asia', 'asia', 'other'])[1 + g % 5], g % 1000, 'n' || g FROM generate_series(1, ${ROWS}) g;
ANALYZE orders;`;
const WITH_ROWS = ['orders; drop table x', 'orders_asia_0', 'orders_asia_1', 'orders_eu', 'orders_us'];
const REGIONS = ['eu', 'us', 'asia', 'other'];

const CHANGE = `changeColumnType({ table: 'orders', column: 'amount', type: 'bigint' })`;
/** Small fixed batches and chunks (about 1 500 rows, a third of a leaf), two workers, no pacing. */
const BACKFILL = { batchSize: 200, adaptive: false, canary: false, chunkRows: 1500, workers: 2 } as const;

interface ChunkRow {
  chunk_no: number;
  leaf: string | null;
  lo: number;
  hi: number;
  rows_done: number;
  rows_updated: number;
  done: boolean;
}
async function chunks(knex: import('knex').Knex): Promise<ChunkRow[]> {
  const r = await knex.raw<{ rows: ChunkRow[] }>(
    `SELECT chunk_no, leaf::regclass::text AS leaf, (lo->>0)::int AS lo, (hi->>0)::int AS hi, rows_done::int AS rows_done, rows_updated::int AS rows_updated, done
       FROM zero_downtime.backfill_chunks WHERE phase = 'expand' ORDER BY chunk_no`,
  );
  return r.rows.map((x) => ({ ...x, leaf: x.leaf === null ? null : strip(x.leaf) }));
}

const writer = trackedWriters();

describe('partitioned tables: the backfill walks each leaf partition by its heap pages', function () {
  this.timeout(120_000);
  const t = useTestDatabase('part_backfill', async ({ knex }) => {
    await knex.raw(ORDERS);
  });

  it('chunks per leaf, planned in turn (two workers in two partitions at once), none for an empty leaf; status per partition; every row once', async () => {
    const umzug = zeroDowntime({ knex: t.knex, cwd: oneChangeProject('leaf-walk', CHANGE, 'changeColumnType'), backfill: BACKFILL, logger: silentLogger });
    let batches = 0;
    let mostLeavesAtOnce = 0;
    let during: StatusReport | null = null;
    const remove = umzug.engine.addBatchGuard(async (p) => {
      if (p.phase !== 'expand') return;
      // Numbered before the first await: the two workers' guards interleave.
      const n = ++batches;
      const held = await count(t.knex, `SELECT count(DISTINCT leaf)::int AS n FROM zero_downtime.backfill_chunks WHERE owner IS NOT NULL AND NOT done`);
      mostLeavesAtOnce = Math.max(mostLeavesAtOnce, held);
      if (n === 12) during = await buildStatus(umzug);
    });
    try {
      await umzug.up();
    } finally {
      remove();
    }

    const all = await chunks(t.knex);
    expect(all.every((c) => c.leaf !== null), 'every chunk names its leaf').to.equal(true);
    expect([...new Set(all.map((c) => c.leaf))].sort()).to.deep.equal(WITH_ROWS);
    // In turn: the first chunk of each leaf before any leaf's second.
    expect(new Set(all.slice(0, WITH_ROWS.length).map((c) => c.leaf)).size).to.equal(WITH_ROWS.length);
    expect(all.length, 'about three chunks per leaf').to.be.within(2 * WITH_ROWS.length, 4 * WITH_ROWS.length);
    for (const leaf of WITH_ROWS) {
      const own = all.filter((c) => c.leaf === leaf);
      own.forEach((c, i) => expect(c.lo, `${leaf}: its chunks follow on from each other`).to.equal(i === 0 ? 0 : own[i - 1]!.hi));
    }
    expect(all.every((c) => c.done)).to.equal(true);
    // A row the batch rewrote can be met again in a later page of its leaf (counted, not written again).
    expect(all.reduce((n, c) => n + c.rows_updated, 0), 'every row written once, none twice').to.equal(ROWS);
    expect(all.reduce((n, c) => n + c.rows_done, 0)).to.be.at.least(ROWS);
    expect(mostLeavesAtOnce, 'two workers held chunks of two partitions at once').to.be.at.least(2);

    // Mid-run, `status` listed each partition reached so far with its pages and rows; its JSON holds the same.
    const mid = during as StatusReport | null;
    expect(mid, `no status taken: the backfill ran ${batches} batches in ${all.length} chunks`).to.not.equal(null);
    const parts = mid!.migrations[0]!.changes[0]!.backfill!.partitions!;
    expect(parts.map((p) => p.partition).sort()).to.include.members(['public.orders_eu', 'public.orders_us']);
    expect(parts.some((p) => p.rowsDone > 0 && p.pagesDone !== null && p.pages !== null && p.pagesDone > 0 && p.pagesDone <= p.pages)).to.equal(true);
    const text = formatStatus(mid!);
    expect(text).to.match(/public\.orders_eu: (done|\d+\.\d% of \d+ pages), \d+ rows/);
    for (const p of parts) expect(text).to.contain(`${p.partition}: `);
    // Afterwards: every partition done; the lines are in the JSON only.
    const after = (await buildStatus(umzug)).migrations[0]!.changes[0]!.backfill!;
    expect(after.done).to.equal(true);
    expect(after.partitions!.every((p) => p.done && p.pagesDone === p.pages)).to.equal(true);
    expect(after.partitions!.map((p) => p.partition).sort()).to.deep.equal(WITH_ROWS.map((l) => (l.includes(' ') ? `public."${l}"` : `public.${l}`)).sort());
    expect(after.partitions!.reduce((n, p) => n + p.rowsDone, 0)).to.equal(all.reduce((n, c) => n + c.rows_done, 0));
    expect(formatStatus(await buildStatus(umzug))).to.not.match(/orders_eu:/);

    const v = (await buildStatus(umzug)).migrations[0]!.changes[0]!.verify!;
    expect([v.rowsChecked, v.mismatches]).to.deep.equal([ROWS, 0]);
    await umzug.close();
  });
});

describe('partitioned tables: a leaf-by-leaf backfill stopped, the partitions changed, resumed', function () {
  this.timeout(120_000);
  const t = useTestDatabase('part_backfill_resume', async ({ knex }) => {
    await knex.raw(ORDERS);
  });

  it('stopped in mid-partition, then a table with rows attached and a partition detached: the run resumes there, walks the new one, leaves the detached one; writers in every partition', async () => {
    const umzug = zeroDowntime({ knex: t.knex, cwd: oneChangeProject('leaf-resume', CHANGE, 'changeColumnType'), backfill: { ...BACKFILL, workers: 1 }, logger: silentLogger });
    let next = 100_000;
    const app = await writer(t.url, 'app', async (c: pg.Client, i: number) => {
      const region = REGIONS[i % REGIONS.length]!;
      if (i % 3 === 0) await c.query(`INSERT INTO orders (id, region, amount) VALUES ($1, $2, $3)`, [next++, region, i % 1000]);
      else await c.query(`UPDATE orders SET amount = amount + 1 WHERE id = $1 AND region = $2`, [1 + Math.floor(Math.random() * ROWS), region]);
    });
    let batches = 0;
    const remove = umzug.engine.addBatchGuard(async (p) => {
      if (p.phase === 'expand' && ++batches === 9) throw new Error('stopped on purpose after 8 batches');
    });
    const stopped = await umzug.up().then(
      () => null,
      (e: Error) => e,
    );
    remove();
    expect(stopped?.message).to.contain('stopped on purpose');
    const before = await chunks(t.knex);
    const open = before.filter((c) => !c.done);
    expect(open.length, 'a chunk left in mid-partition').to.be.at.least(1);
    const walked = before.reduce((n, c) => n + c.rows_done, 0);
    expect(walked).to.be.greaterThan(0);

    // Meanwhile: a loaded table joins (its rows predate the trigger), and a partition not yet reached leaves.
    // The partition a chunk was left open in, where that is one of the two a list partition can leave (the app's rows
    // of its region go to the default partition then); else the other one.
    const gone = open.map((c) => c.leaf).find((l) => l === 'orders_us' || l === 'orders_eu') ?? 'orders_us';
    await t.knex.raw(`CREATE TABLE orders_late (LIKE orders INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
      INSERT INTO orders_late (id, region, amount) SELECT g, 'late', g % 7 FROM generate_series(1, ${LATE}) g;
      ALTER TABLE orders ATTACH PARTITION orders_late FOR VALUES IN ('late')`);
    await t.knex.raw(`ALTER TABLE orders DETACH PARTITION ${gone}`);
    const goneRows = await count(t.knex, `SELECT count(*)::int AS n FROM ${gone}`);

    await umzug.up(); // resumes the expand
    await app.stop();
    expect(app.stats.errors).to.deep.equal([]);

    const after = await chunks(t.knex);
    // The chunks of the first run are kept and finished, not planned again.
    for (const c of before) {
      const same = after.find((a) => a.chunk_no === c.chunk_no)!;
      expect([same.leaf, same.lo, same.hi]).to.deep.equal([c.leaf, c.lo, c.hi]);
    }
    expect(after.some((c) => c.leaf === 'orders_late'), 'the attached table was walked as a leaf').to.equal(true);
    const walkedIn = (rows: ChunkRow[]) => rows.filter((c) => c.leaf === gone).reduce((n, c) => n + c.rows_done, 0);
    expect(walkedIn(after), 'nothing walked in the detached one after it left').to.equal(walkedIn(before));
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM ${gone}`)).to.equal(goneRows);
    expect(after.every((c) => c.done)).to.equal(true);
    // Every row of the table now (the attached ones too) carries the same value in the new column.
    const twin = await t.knex.raw<{ rows: { attname: string }[] }>(
      `SELECT attname FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped AND attname NOT IN ('id', 'region', 'amount', 'note')`,
    );
    expect(twin.rows).to.have.length(1);
    const col = twin.rows[0]!.attname;
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM orders WHERE "${col}" IS DISTINCT FROM amount::bigint`)).to.equal(0);
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM orders_late WHERE "${col}" IS NULL`)).to.equal(0);
    const v = (await buildStatus(umzug)).migrations[0]!.changes[0]!.verify!;
    expect(v.mismatches).to.equal(0);
    expect(v.rowsChecked).to.be.at.least(ROWS - ROWS / 5 + LATE);
    await umzug.close();
  });
});

describe('partitioned tables: which backfills walk the leaves', function () {
  this.timeout(120_000);
  const t = useTestDatabase('part_backfill_which', async ({ knex }) => {
    await knex.raw(ORDERS);
  });
  const leavesOf = async (change: number, migration = '001.change.ts:expand') =>
    (await t.knex.raw<{ rows: { leaf: string | null }[] }>(`SELECT DISTINCT leaf::text AS leaf FROM zero_downtime.backfill_chunks WHERE migration = ? AND change_index = ? AND phase = 'expand'`, [migration, change])).rows.map((r) => r.leaf);

  it("addColumn's backfill (no sync trigger) and splitTable's copy walk each leaf by the key, one chunk each; deriveColumn each leaf's pages; `partitionWalk: 'key'` the table's key", async () => {
    const umzug = zeroDowntime({
      knex: t.knex,
      cwd: oneChangeProject(
        'leaf-which',
        `addColumn({ table: 'orders', column: { name: 'tag', type: 'text' }, backfill: "'t' || orders.id" }),\nderiveColumn({ table: 'orders', column: { name: 'doubled', type: 'bigint' }, from: ['amount'], up: 'amount * 2' })`,
        'addColumn, deriveColumn',
      ),
      backfill: BACKFILL,
      logger: silentLogger,
    });
    await umzug.up();
    // addColumn: a chunk per leaf, the empty one too, each the whole leaf by its key (no pages); its expression names
    // the row by the bare table name, as it may on the table itself, and means each leaf's row.
    const byLeafKey = await t.knex.raw<{ rows: { leaf: string; lo: unknown; hi: unknown; end_key: unknown; rows_done: number }[] }>(
      `SELECT leaf::regclass::text AS leaf, lo, hi, end_key, rows_done::int AS rows_done FROM zero_downtime.backfill_chunks WHERE change_index = 0 AND phase = 'expand' ORDER BY leaf`,
    );
    expect(byLeafKey.rows.map((r) => strip(r.leaf)).sort()).to.deep.equal([...WITH_ROWS, 'orders_none'].sort());
    expect(byLeafKey.rows.every((r) => r.lo === null && r.hi === null && r.end_key === null)).to.equal(true);
    expect(byLeafKey.rows.reduce((n, r) => n + r.rows_done, 0), 'every row walked once by its key').to.equal(ROWS);
    const change0 = (await buildStatus(umzug)).migrations[0]!.changes[0]!.backfill!;
    expect(change0.partitions!.every((p) => p.done && p.pages === null && p.pagesDone === null)).to.equal(true);
    expect((await leavesOf(1)).length, 'deriveColumn: its leaves with rows').to.equal(WITH_ROWS.length);
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM orders WHERE tag IS DISTINCT FROM 't' || id OR doubled IS DISTINCT FROM amount * 2`)).to.equal(0);
    await umzug.close();

    // Another migration file: the first one's state stays as it is.
    const tripled = tempProject('leaf-which-key');
    tripled.write('002.tripled.ts', `import { defineMigration, deriveColumn } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [deriveColumn({ table: 'orders', column: { name: 'tripled', type: 'bigint' }, from: ['amount'], up: 'amount * 3' })] });\n`);
    const byKey = zeroDowntime({
      knex: t.knex,
      cwd: tripled.dir,
      backfill: { ...BACKFILL, partitionWalk: 'key' },
      logger: silentLogger,
    });
    await byKey.up();
    await byKey.close();
    expect(await leavesOf(0, '002.tripled.ts:expand')).to.deep.equal([null]);

    // A copy (splitTable) reads the walked rows by their keys: leaf by leaf too, one chunk per leaf.
    const split = tempProject('leaf-which-split');
    split.write('003.split.ts', `import { defineMigration, splitTable } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [splitTable({ from: 'orders', to: 'order_notes', columns: ['note'], key: ['id', 'region'] })] });\n`);
    const splitter = zeroDowntime({ knex: t.knex, cwd: split.dir, backfill: BACKFILL, logger: silentLogger });
    await splitter.up();
    await splitter.close();
    expect((await leavesOf(0, '003.split.ts:expand')).length, 'splitTable: a chunk per leaf').to.equal(WITH_ROWS.length + 1);
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM order_notes`)).to.equal(ROWS);
    expect(await count(t.knex, `SELECT count(*)::int AS n FROM orders WHERE tripled IS DISTINCT FROM amount * 3`)).to.equal(0);
  });
});

describe('partitioned tables: a leaf-by-leaf backfill killed (SIGKILL) in mid-partition', function () {
  this.timeout(120_000);
  const t = useTestDatabase('part_backfill_kill', async ({ knex }) => {
    await knex.raw(ORDERS);
  });

  it('the next run takes the dead run\'s chunk over at its last committed page: every row written once', async () => {
    const dir = oneChangeProject('leaf-kill', CHANGE, 'changeColumnType');
    const child = spawnUp(t.url, dir, 200, 40, { adaptive: false, canary: false, chunkRows: 1500 });
    const walked = () => count(t.knex, `SELECT coalesce(sum(rows_updated), 0)::int AS n FROM zero_downtime.backfill_chunks`).catch(() => 0);
    let before = 0;
    for (let i = 0; i < 400 && before < 3000; i++) {
      before = await walked();
      if (before < 3000) await new Promise((res) => setTimeout(res, 50));
    }
    child.kill('SIGKILL');
    await child.exited;
    expect(before, `the backfill never got going: ${child.output()}`).to.be.at.least(3000);
    const left = await chunks(t.knex);
    expect(left.some((c) => !c.done), 'killed in mid-walk').to.equal(true);
    expect(left.every((c) => c.leaf !== null)).to.equal(true);

    const umzug = zeroDowntime({ knex: t.knex, cwd: dir, backfill: BACKFILL, logger: silentLogger });
    await umzug.up();
    const all = await chunks(t.knex);
    // The killed run's chunks kept their pages; its open one was finished from its last committed page.
    for (const c of left) {
      const now = all.find((a) => a.chunk_no === c.chunk_no)!;
      expect([now.leaf, now.lo, now.hi]).to.deep.equal([c.leaf, c.lo, c.hi]);
    }
    expect(all.every((c) => c.done)).to.equal(true);
    expect(all.reduce((n, c) => n + c.rows_updated, 0), 'every row written, the killed batch\'s too').to.equal(ROWS);
    const v = (await buildStatus(umzug)).migrations[0]!.changes[0]!.verify!;
    expect([v.rowsChecked, v.mismatches]).to.deep.equal([ROWS, 0]);
    await umzug.close();
  });
});


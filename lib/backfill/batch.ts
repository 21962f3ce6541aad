import { setConfig, sqlState, type Connection, type Db } from '../db/db.js';
import type { BackfillSpec } from '../migration.js';
import { ctidRangeUpdateSql, LEAF_NAME_SQL, LEAF_PAGES_SQL, keyExtentSql, keysetBoundSql, keysetNthKeySql, keysetRangeJoinUpdateSqls, keysetRangeUpdateSql, rowNamedAs, type KeyColumn } from '../postgres/batch-sql.js';
import { qualified, tableLabel, type TableName } from '../postgres/identifiers.js';
import { isPartitioned } from '../postgres/catalog.js';
import { BACKFILL_QUIET_SETTING } from '../postgres/triggers.js';
import { copyRangeSql, mirrorRangeSqls } from '../postgres/table-sync.js';
import type { Bound, Chunk, ChunkStore } from './chunks.js';
import type { WalkKey } from './walk-key.js';

export interface BatchResult {
  readonly scanned: number;
  readonly updated: number;
  /** The new last key of the chunk. */
  readonly to: string[] | null;
  readonly finished: boolean;
  /** Rows the batch was sized for (pages × rows per page for ctid walks). */
  readonly nominal: number;
}

/** One batch of a chunk, inside the caller's transaction on `c`: the rows after `from`, `size` of them at most. */
export type Batch = (c: Connection, chunk: Chunk, from: string[] | null, size: number) => Promise<BatchResult>;


export interface TableStats {
  readonly rows: number;
  readonly rowsPerPage: number;
}

/**
 * ANALYZEs the walked table when its statistics lag far behind it (a table the expand just filled, then walked by an
 * undo minutes later, before autovacuum came by). With a 1M-row table counted as 3 689 rows the planner finds each
 * batch's end by a bitmap scan and sort of its whole 250 000-key chunk: 280 ms instead of 8, every batch. ANALYZE
 * reads a sample and takes SHARE UPDATE EXCLUSIVE, which writers do not wait for; if another holder keeps it past
 * lock_timeout the backfill goes on with the old statistics.
 */
export async function analyzeIfStale(db: Db, spec: BackfillSpec, lockTimeoutMs: number): Promise<boolean> {
  const r = await db.query<{ stale: boolean }>(
    `SELECT s.n_mod_since_analyze > 10000 + 0.2 * greatest(c.reltuples, 0) AS stale
       FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = $1::regclass`,
    [qualified(spec.table)],
  );
  if (!r.rows[0]?.stale) return false;
  // One transaction with a transaction-local lock_timeout: a session SET would not hold behind PgBouncer in
  // transaction mode (and would outlive the ANALYZE on the pooled connection).
  try {
    await db.transaction(async (c) => {
      await c.query(`SELECT set_config('lock_timeout', $1, true)`, [`${Math.max(1, Math.round(lockTimeoutMs))}ms`]);
      await c.query(`ANALYZE ${qualified(spec.table)}`);
    });
    return true;
  } catch (e) {
    if (sqlState(e) === '55P03') return false;
    throw e;
  }
}

export async function tableStats(db: Db, spec: BackfillSpec): Promise<TableStats> {
  // A partitioned table's own statistics hold no pages (and no live-row count): its leaves' are summed.
  const heaps = (await isPartitioned(db, spec.table)) ? `SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf` : `SELECT $1::regclass`;
  const r = await db.query<{ reltuples: number; relpages: number; live: number | null; pages: number }>(
    `SELECT sum(greatest(c.reltuples, 0))::float8 AS reltuples, sum(c.relpages)::int8::float8 AS relpages, sum(s.n_live_tup)::float8 AS live,
            sum(pg_relation_size(c.oid) / current_setting('block_size')::int)::float8 AS pages
       FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid IN (${heaps})`,
    [qualified(spec.table)],
  );
  const x = r.rows[0];
  let rows = Math.max(0, Math.round(Math.max(x?.reltuples ?? 0, x?.live ?? 0)));
  if (rows === 0) {
    // Never analyzed: the planner still estimates from the file's size and the row width, which beats "?".
    const plan = await db.query<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(`EXPLAIN (FORMAT JSON) SELECT 1 FROM ${qualified(spec.table)}`);
    rows = Math.round(plan.rows[0]?.['QUERY PLAN'][0]?.Plan['Plan Rows'] ?? 0);
  }
  // Never analyzed: the estimate over the pages there are now (a batch of 50 rows a page, the guess before, was a
  // batch of four times its size on a table of narrow rows).
  const rowsPerPage = x && x.reltuples > 0 && x.relpages > 0 ? Math.max(1, x.reltuples / x.relpages) : x && x.pages > 0 && rows > 0 ? Math.max(1, rows / x.pages) : 50;
  return { rows, rowsPerPage };
}

const INTEGER_TYPES = new Set(['smallint', 'integer', 'bigint']);

/**
 * Where the next chunk after `after` ends: chunkRows keys further (found in the index, not counted), or a page range.
 * A one-column integer key whose values are dense (the key range at most 4× the rows, as a serial's is) is cut by
 * arithmetic instead, from its min and max and the table's row estimate: the index walk to the 250 000th key took
 * half a second per chunk of a 1M-row table, the first one in line before the first batch. Sparse keys are walked.
 */
export function makePlanner(walk: WalkKey, spec: BackfillSpec, chunkRows: number, rowsPerPage: number, rows = 0, chunks?: Pick<ChunkStore, 'plannedLeaves'>): Bound {
  if (walk.kind === 'leaves' || walk.kind === 'leaf-keys') {
    if (!chunks) throw new Error('makePlanner: a leaf-by-leaf walk needs the chunk store to see which leaves are planned');
    return walk.kind === 'leaves' ? makeLeafPlanner(spec, chunkRows, rowsPerPage, chunks) : makeLeafKeyPlanner(spec, chunks);
  }
  if (walk.kind === 'keys' && walk.columns.length === 1 && INTEGER_TYPES.has(walk.columns[0]!.type) && rows > 0) {
    const walked = makeKeyWalkPlanner(walk, spec, chunkRows);
    const sql = keyExtentSql(spec.table, walk.columns[0]!);
    return async (c, after) => {
      const r = (await c.query<{ lo: string | null; hi: string | null }>(sql)).rows[0];
      const lo = after?.hi ?? null;
      if (!r?.lo || !r.hi) return { lo, hi: null, final: true, endKey: null };
      const [min, max] = [BigInt(r.lo), BigInt(r.hi)];
      const range = max - min + 1n;
      if (range > 4n * BigInt(Math.ceil(rows))) return walked(c, after);
      const span = (BigInt(chunkRows) * range + BigInt(Math.ceil(rows)) - 1n) / BigInt(Math.ceil(rows));
      const hi = (lo ? BigInt(lo[0]!) : min - 1n) + (span > 0n ? span : 1n);
      return hi >= max ? { lo, hi: null, final: true, endKey: null } : { lo, hi: [String(hi)], final: false, endKey: null };
    };
  }
  return walk.kind === 'keys' ? makeKeyWalkPlanner(walk, spec, chunkRows) : makePagePlanner(spec, chunkRows, rowsPerPage);
}

function makePagePlanner(spec: BackfillSpec, chunkRows: number, rowsPerPage: number): Bound {
  return async (c, after) => {
    let end = after?.endKey ? Number(after.endKey[0]) : NaN;
    if (!after) {
      // Pages that exist now; rows written later are the triggers' business, and our own new row versions land
      // beyond this end (or are found again holding their value already).
      const r = await c.query<{ pages: string }>(`SELECT (pg_relation_size($1::regclass) / current_setting('block_size')::int)::bigint AS pages`, [
        qualified(spec.table),
      ]);
      end = Number(r.rows[0]!.pages);
    }
    const lo = after?.hi ? Number(after.hi[0]) : 0;
    const hi = Math.min(end, lo + Math.max(1, Math.ceil(chunkRows / rowsPerPage)));
    return { lo: [String(lo)], hi: [String(hi)], final: hi >= end, endKey: [String(end)] };
  };
}

/**
 * Page ranges of each leaf partition, the leaves taken in turn (oid order, one chunk each, then round again), so the
 * workers, which claim chunks in order, walk different partitions at once and each partition's row locks and WAL come
 * from one batch at a time. The leaves are listed anew at each chunk: a partition created or attached meanwhile is
 * walked too (from its pages then), one detached or dropped is left alone. A leaf's walk ends at the pages it had
 * when its first chunk was planned; rows written later are the sync trigger's. Empty leaves get no chunk. The last
 * chunk is the one after which no leaf has pages left to plan.
 */
function makeLeafPlanner(spec: BackfillSpec, chunkRows: number, rowsPerPage: number, chunks: Pick<ChunkStore, 'plannedLeaves'>): Bound {
  const pagesPerChunk = Math.max(1, Math.ceil(chunkRows / rowsPerPage));
  return async (c, after) => {
    const planned = await chunks.plannedLeaves(c);
    const live = (await c.query<{ oid: string; pages: string }>(LEAF_PAGES_SQL, [qualified(spec.table)])).rows;
    const open = live
      .map((l) => {
        const oid = Number(l.oid);
        const p = planned.get(oid);
        return { oid, lo: p?.planned ?? 0, end: p?.end ?? Number(l.pages) };
      })
      .filter((l) => l.lo < l.end);
    if (open.length === 0) return { lo: ['0'], hi: ['0'], final: true, endKey: ['0'] };
    const next = open.find((l) => after?.leaf != null && l.oid > after.leaf) ?? open[0]!;
    const hi = Math.min(next.end, next.lo + pagesPerChunk);
    return { leaf: next.oid, lo: [String(next.lo)], hi: [String(hi)], final: open.length === 1 && hi >= next.end, endKey: [String(next.end)] };
  };
}

/**
 * One chunk per leaf partition, walked by the key (lo and hi open: the whole leaf), in oid order: workers take
 * different partitions. The leaves are listed anew at each chunk, so a partition created or attached before the last
 * chunk is planned is walked too.
 */
function makeLeafKeyPlanner(spec: BackfillSpec, chunks: Pick<ChunkStore, 'plannedLeaves'>): Bound {
  return async (c) => {
    const planned = await chunks.plannedLeaves(c);
    const open = (await c.query<{ oid: string }>(LEAF_PAGES_SQL, [qualified(spec.table)])).rows.map((l) => Number(l.oid)).filter((oid) => !planned.has(oid));
    if (open.length === 0) return { lo: null, hi: null, final: true, endKey: null };
    return { leaf: open[0]!, lo: null, hi: null, final: open.length === 1, endKey: null };
  };
}

function makeKeyWalkPlanner(walk: Extract<WalkKey, { kind: 'keys' }>, spec: BackfillSpec, chunkRows: number): Bound {
  return async (c, after) => {
    const lo = after?.hi ?? null;
    const r = await c.query<{ last_key: string[] }>(keysetNthKeySql(spec.table, walk.columns, lo !== null, false), [chunkRows, ...(lo ?? [])]);
    const hi = r.rows[0]?.last_key;
    return hi ? { lo, hi, final: false, endKey: null } : { lo, hi: null, final: true, endKey: null };
  };
}

/**
 * Looks up where the next batch ends while the current one writes, on a pooled connection of its own. Finding the
 * end reads every key of the batch in the index and, on pages not all-visible, checks each row in the heap: about
 * a sixth of the batch's time, spent on the other core instead of in line before the UPDATE.
 */
class NextEnd {
  private pending: { chunkNo: number; from: string; size: number; end: Promise<string[] | null | undefined> } | null = null;

  constructor(
    private readonly db: Db,
    private readonly sqlFor: (hasFrom: boolean, hasTo: boolean) => string,
  ) {}

  start(chunk: Chunk, from: string[], size: number): void {
    const end = this.db
      .query<{ last_key: string[] }>(this.sqlFor(true, chunk.hi !== null), [size, ...from, ...(chunk.hi ?? [])])
      .then((r) => r.rows[0]?.last_key ?? null)
      .catch(() => undefined); // looked up again in the batch's own transaction
    this.pending = { chunkNo: chunk.chunkNo, from: JSON.stringify(from), size, end };
  }

  /**
   * The end looked up for this batch and the size it was looked up for, or undefined. A lookup for another start (a
   * retry, a new chunk) is dropped, and so is one for a size far from what the sizer now wants (it shrinks a batch
   * that came close to its timeout).
   */
  async take(chunk: Chunk, from: string[] | null, size: number): Promise<{ end: string[] | null; size: number } | undefined> {
    const p = this.pending;
    this.pending = null;
    if (!p || from === null || p.chunkNo !== chunk.chunkNo || p.from !== JSON.stringify(from)) return undefined;
    if (p.size > size * 1.25 || p.size < size * 0.75) return undefined;
    const end = await p.end;
    return end === undefined ? undefined : { end, size: p.size };
  }
}

/**
 * The batch function of one worker. `prefetch` (a pooled connection to spare per worker) lets the next batch's end
 * be looked up while this batch's UPDATE runs.
 */
export function makeBatch(db: Db, walk: WalkKey, spec: BackfillSpec, rowsPerPage: number, prefetch: boolean, partitionOf?: TableName): Batch {
  const only = spec.only ?? 'distinct';
  if (walk.kind === 'leaves') return makeLeafBatch(spec, only, rowsPerPage);
  if (walk.kind === 'leaf-keys') return makeLeafKeyBatch(db, walk.columns, spec, rowsPerPage, prefetch);
  if (walk.kind === 'ctid') {
    if (spec.copy) throw new Error(`backfill: copying ${tableLabel(spec.table)} needs its primary key to walk; it has none. Nothing was copied.`);
    if (spec.archiveKeys) throw new Error(`backfill: archiving the keys of the rows it fills in ${tableLabel(spec.table)} needs its primary key to walk; it has none. Nothing was written.`);
    if (spec.mirror) throw new Error(`backfill: mirroring ${tableLabel(spec.table)} needs its primary key to walk; it has none. Nothing was written.`);
    if (spec.join) throw new Error(`backfill: restoring ${tableLabel(spec.table)} from ${tableLabel(spec.join.table)} needs its primary key to walk; it has none. Nothing was written.`);
    const sql = ctidRangeUpdateSql(spec.table, spec.set, only);
    const fast = spec.tryFirst ? ctidRangeUpdateSql(spec.table, spec.tryFirst, only) : null;
    return async (c, chunk, from, size) => {
      const start = Number((from ?? chunk.lo ?? ['0'])[0]);
      const hi = Number(chunk.hi![0]);
      const pages = Math.max(1, Math.round(size / rowsPerPage));
      const to = Math.min(hi, start + pages);
      await quietTriggers(c, spec);
      const write = async (q: string) => (await c.query<{ scanned: number; updated: number }>(q, [start, to])).rows[0]!;
      const r = fast ? await tryThenGuard(c, fast, sql, write) : await write(sql);
      return { scanned: r.scanned, updated: r.updated, to: [String(to)], finished: to >= hi, nominal: pages * rowsPerPage };
    };
  }
  const cols = walk.columns;
  const nthSql = [false, true].map((f) => [false, true].map((t) => keysetNthKeySql(spec.table, cols, f, t)));
  const next = prefetch ? new NextEnd(db, (f, t) => nthSql[+f]![+t]!) : null;
  return async (c, chunk, from, size) => {
    const lower = from ?? chunk.lo;
    const bounds = [...(lower ?? []), ...(chunk.hi ?? [])];
    const ahead = await next?.take(chunk, lower, size);
    if (ahead) size = ahead.size;
    let end = ahead ? ahead.end : (await c.query<{ last_key: string[] }>(nthSql[+(lower !== null)]![+(chunk.hi !== null)]!, [size, ...bounds])).rows[0]?.last_key ?? null;
    let n = size;
    if (end === null) {
      // Fewer than `size` keys left in the chunk: once per chunk, count them and find the last one.
      const tail = await c.query<{ n: number; last_key: string[] | null }>(keysetBoundSql(spec.table, cols, lower !== null, chunk.hi !== null), [size, ...bounds]);
      ({ n, last_key: end } = tail.rows[0]!);
    }
    // Keys are unique and walked in order, so reaching the chunk's upper key ends the chunk with this batch.
    const finished = n < size || (chunk.hi !== null && end !== null && sameKey(end, chunk.hi));
    // A chunk's last batch runs to the chunk's end; the table's last chunk is open-ended.
    const upper = finished ? chunk.hi : end;
    if (!finished && end) next?.start(chunk, end, size);
    let updated = 0;
    // A mirror also deletes rows the walked table lacks, so a range with no walked keys (the open end) still runs.
    if (n > 0 || spec.mirror) {
      await quietTriggers(c, spec);
      const params = [...(lower ?? []), ...(upper ?? [])];
      if (spec.tryFirst && !spec.copy && !spec.mirror && !spec.join) {
        const fast = keysetRangeUpdateSql(spec.table, cols, spec.tryFirst, only, lower !== null, upper !== null, spec.archiveKeys, partitionOf);
        const guarded = keysetRangeUpdateSql(spec.table, cols, spec.set, only, lower !== null, upper !== null, spec.archiveKeys, partitionOf);
        updated = await tryThenGuard(c, fast, guarded, async (sql) => (await c.query(sql, params)).rowCount);
        return { scanned: n, updated, to: finished ? (chunk.hi ?? end ?? lower) : end, finished, nominal: n };
      }
      const writes = spec.copy
        ? [copyRangeSql(spec.table, cols, spec.copy, lower !== null, upper !== null)]
        : spec.mirror
          ? mirrorRangeSqls(spec.table, cols, spec.mirror, lower !== null, upper !== null)
          : spec.join
          ? keysetRangeJoinUpdateSqls(spec.table, cols, spec.set, only, spec.join, lower !== null, upper !== null)
          : [keysetRangeUpdateSql(spec.table, cols, spec.set, only, lower !== null, upper !== null, spec.archiveKeys, partitionOf)];
      for (const write of writes) updated += (await c.query(write, params)).rowCount;
    }
    return { scanned: n, updated, to: finished ? (chunk.hi ?? end ?? lower) : end, finished, nominal: n };
  };
}

/**
 * A batch of a leaf-by-leaf walk: pages of the chunk's leaf, written through the leaf itself (its own TID range
 * scan). The leaf is looked up by oid in the batch's transaction: renamed, it is followed; detached or dropped since
 * its pages were planned, its rows are no longer this table's, and the chunk ends with nothing written.
 */
function makeLeafBatch(spec: BackfillSpec, only: 'distinct' | 'null', rowsPerPage: number): Batch {
  const sqls = new Map<string, { sql: string; fast: string | null }>();
  const sqlFor = (leaf: TableName) => {
    const k = qualified(leaf);
    let x = sqls.get(k);
    if (!x) {
      x = { sql: ctidRangeUpdateSql(leaf, spec.set, only, spec.table), fast: spec.tryFirst ? ctidRangeUpdateSql(leaf, spec.tryFirst, only, spec.table) : null };
      sqls.set(k, x);
    }
    return x;
  };
  return async (c, chunk, from, size) => {
    const start = Number((from ?? chunk.lo ?? ['0'])[0]);
    const hi = Number(chunk.hi![0]);
    const found = await leafNow(c, chunk, spec.table);
    if (!found || start >= hi) return { scanned: 0, updated: 0, to: [String(hi)], finished: true, nominal: 0 };
    const to = Math.min(hi, start + Math.max(1, Math.round(size / rowsPerPage)));
    const { sql, fast } = sqlFor(found);
    await quietTriggers(c, spec);
    const write = async (q: string) => (await c.query<{ scanned: number; updated: number }>(q, [start, to])).rows[0]!;
    const r = fast ? await tryThenGuard(c, fast, sql, write) : await write(sql);
    return { scanned: r.scanned, updated: r.updated, to: [String(to)], finished: to >= hi, nominal: (to - start) * rowsPerPage };
  };
}

/** The chunk's leaf as it is named now, in the batch's transaction; undefined once it is no longer below `table`. */
async function leafNow(c: Connection, chunk: Chunk, table: TableName): Promise<TableName | undefined> {
  if (chunk.leaf === null) return undefined;
  const r = await c.query<{ schema: string; name: string }>(LEAF_NAME_SQL, [chunk.leaf, qualified(table)]);
  return r.rows[0] ? { schema: r.rows[0].schema, name: r.rows[0].name } : undefined;
}

/**
 * A batch of a walk by the key, leaf by leaf: the keyset batch of the chunk's leaf itself, as if it were the table
 * (a partition has the table's columns and its primary key's index). The leaf is looked up by oid as in
 * makeLeafBatch. A plain update reads the leaf under the table's name (see leafRow in batch-sql.ts); a copy's or a
 * join's statements name the walked table themselves, so there the expressions that name the row by the partitioned
 * table name the leaf instead.
 */
function makeLeafKeyBatch(db: Db, columns: readonly KeyColumn[], spec: BackfillSpec, rowsPerPage: number, prefetch: boolean): Batch {
  const batches = new Map<string, Batch>();
  const aliased = !spec.copy && !spec.join && !spec.mirror;
  const onLeaf = (leaf: TableName): BackfillSpec => {
    if (aliased) return { ...spec, table: leaf };
    const as = qualified(leaf);
    return { ...spec, table: leaf, set: rowNamedAs(spec.set, spec.table, as), ...(spec.tryFirst ? { tryFirst: rowNamedAs(spec.tryFirst, spec.table, as) } : {}) };
  };
  return async (c, chunk, from, size) => {
    const found = await leafNow(c, chunk, spec.table);
    if (!found) return { scanned: 0, updated: 0, to: from, finished: true, nominal: 0 };
    // By oid and name: a leaf renamed meanwhile gets statements with its new name.
    const id = `${chunk.leaf}:${qualified(found)}`;
    let batch = batches.get(id);
    if (!batch) {
      batch = makeBatch(db, { kind: 'keys', columns, source: 'primary key' }, onLeaf(found), rowsPerPage, prefetch, aliased ? spec.table : undefined);
      batches.set(id, batch);
    }
    return batch(c, chunk, from, size);
  };
}

/**
 * Tells the sync triggers, transaction-locally, to stay quiet for the batch's own writes: a copy's or a mirror's
 * (splitTable, mergeTables: they write another table, which must not echo back), and the one whose work the batch's
 * UPDATE does itself (`quietTrigger`).
 */
async function quietTriggers(c: Connection, spec: BackfillSpec): Promise<void> {
  const flags = new Set([spec.copy?.quietFlag, ...(spec.mirror ?? []).map((m) => m.quietFlag)].filter((f): f is string => !!f));
  const settings: (readonly [string, string])[] = [...flags].map((flag) => [flag, 'on'] as const);
  if (spec.quietTrigger) settings.push([BACKFILL_QUIET_SETTING, spec.quietTrigger]);
  await setConfig(c, settings, true);
}

/**
 * Errors that say nothing about the rows (a lock or statement timeout, a deadlock, a lost connection, a shutdown):
 * the batch's own retry handles them, and running the guarded form instead would only repeat the wait.
 */
function notAboutTheRows(e: unknown): boolean {
  const state = sqlState(e) ?? '';
  return ['55P03', '57014', '40001', '40P01', '25P02'].includes(state) || state.startsWith('08') || state.startsWith('57P') || state === '';
}

/**
 * Runs `fast` (the author's expressions) under a savepoint and, when a row makes it fail, rolls back to the
 * savepoint and runs `guarded` (the try functions that record such a row and leave it NULL).
 */
async function tryThenGuard<T>(c: Connection, fast: string, guarded: string, run: (sql: string) => Promise<T>): Promise<T> {
  await c.query('SAVEPOINT _zd_try');
  try {
    const r = await run(fast);
    await c.query('RELEASE SAVEPOINT _zd_try');
    return r;
  } catch (e) {
    if (notAboutTheRows(e)) throw e;
    await c.query('ROLLBACK TO SAVEPOINT _zd_try');
    return run(guarded);
  }
}

/** Key values as the server printed them (json_build_array of ::text), compared element by element. */
function sameKey(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

import { isConnectionLost, sqlState, type Connection, type Db } from '../engine/db.js';
import { backoffDelay, type LockSafetyOptions } from '../engine/executor.js';
import type { PhaseName, StateStore } from '../engine/state.js';
import type { BackfillSpec } from '../migration.js';
import { ctidRangeUpdateSql, keysetBoundSql, keysetRangeUpdateSql, type KeyColumn } from '../postgres/batch-sql.js';
import { qualified, tableLabel } from '../postgres/identifiers.js';
import { copyRangeSql } from '../postgres/table-sync.js';
import { BatchSizer } from './adaptive.js';
import { CanaryProbe } from './canary.js';
import { ChunkStore, type Chunk } from './chunks.js';
import { WorkerLease } from './lease.js';
import { Throttle, type HealthCheck, type ThrottleEvent } from './throttle.js';
import { resolveWalkKey, type WalkKey } from './walk-key.js';

export interface CanarySettings {
  /** The canary's p99 may reach baseline × budget before the backfill pauses. Default 1.5. */
  readonly budget: number;
  /** …and at least baseline + slackMs, so sub-millisecond noise does not stop a backfill. Default 2 ms. */
  readonly slackMs: number;
  readonly baselineSamples: number;
  readonly intervalMs: number;
  readonly windowMs: number;
  /** Over this stretch at most 1 % of probes may be over budget. Default 60 s. */
  readonly tailWindowMs: number;
}

export interface BackfillOptions {
  /** First batch size (rows); the adaptive sizer takes it from there. */
  readonly batchSize: number;
  /** Pause between batches, to leave room for the application's own writes. */
  readonly pauseMs: number;
  /** Attempts per batch on lock timeouts, deadlocks and lost connections before the backfill gives up. */
  readonly maxBatchAttempts: number;
  /** Batch duration the sizer steers toward. Default 200 ms. */
  readonly targetBatchMs?: number;
  readonly minBatchSize?: number;
  readonly maxBatchSize?: number;
  /** false keeps every batch at batchSize. Default true. */
  readonly adaptive?: boolean;
  /** statement_timeout of one batch; a batch that runs past it is split in two and retried. Default 10 s. */
  readonly batchTimeoutMs?: number;
  /** Workers in this process (each its own connection). Default 1. */
  readonly workers?: number;
  /** Rows per chunk, the unit workers claim. Default 100 000. */
  readonly chunkRows?: number;
  /** Pause while a standby lags more than this (pg_stat_replication); null = ignore. Default 10 s. */
  readonly maxReplicationLagMs?: number | null;
  readonly healthCheck?: HealthCheck;
  /** The canary probe; false = none. */
  readonly canary?: Partial<CanarySettings> | false;
}

export const DEFAULT_CANARY: CanarySettings = Object.freeze({ budget: 1.5, slackMs: 2, baselineSamples: 100, intervalMs: 10, windowMs: 500, tailWindowMs: 60_000 });

export const DEFAULT_BACKFILL: BackfillOptions = Object.freeze({
  batchSize: 1000,
  pauseMs: 0,
  maxBatchAttempts: 10,
  targetBatchMs: 200,
  minBatchSize: 100,
  maxBatchSize: 50_000,
  adaptive: true,
  batchTimeoutMs: 10_000,
  workers: 1,
  chunkRows: 100_000,
  maxReplicationLagMs: 10_000,
  canary: process.env.ZD_NO_CANARY ? false : DEFAULT_CANARY,
});

export interface BackfillProgress {
  readonly migration: string;
  readonly changeIndex: number;
  readonly phase: PhaseName;
  /** Rows walked so far, by every worker of this backfill on every machine. */
  readonly rowsDone: number;
  /** …of which were written (the others already held the value). */
  readonly rowsUpdated: number;
  readonly totalEstimate: number;
  readonly batches: number;
  readonly done: boolean;
  /** The batch size the reporting worker will use next. */
  readonly batchSize?: number;
}

export interface BackfillRun {
  readonly db: Db;
  readonly state: StateStore;
  readonly key: { readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName };
  readonly spec: BackfillSpec;
  /** The primary key; empty for a table without one (a unique NOT NULL index or ctid ranges are used then). */
  readonly keys: readonly KeyColumn[];
  readonly totalEstimate: number;
  readonly options: BackfillOptions;
  readonly lock: LockSafetyOptions;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: BackfillProgress) => void;
  /**
   * Awaited before every batch: the place for throttles, health checks and thresholds. It may wait (the backfill
   * pauses, holding no locks) or throw (the backfill stops; progress so far is kept).
   */
  readonly beforeBatch?: (p: BackfillProgress) => Promise<void>;
  readonly onRetry?: (e: { attempt: number; code: string; delayMs: number }) => void;
  readonly onThrottle?: (e: ThrottleEvent) => void;
  /** Told once, before the first batch, what the backfill walks and the canary's baseline. */
  readonly onStart?: (e: { walk: WalkKey; workers: number; canaryBaselineP99Ms: number | null; totalEstimate: number }) => void;
  /** Filled at the end with the canary's probe times measured during the backfill (for benchmarks). */
  readonly canaryReport?: { baselineP99Ms?: number; during?: number[] };
}

export class BackfillInterrupted extends Error {
  override name = 'BackfillInterrupted';
}

class ProgressMoved extends Error {}

const RETRYABLE_BATCH = new Set(['55P03', '40P01', '40001', '57014']);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface BatchResult {
  scanned: number;
  updated: number;
  /** The new last key of the chunk. */
  to: string[] | null;
  finished: boolean;
  /** Rows the batch was sized for (pages × rows per page for ctid walks). */
  nominal: number;
}

/**
 * The backfill: the key space is cut into chunks that workers claim (SKIP LOCKED), and each chunk is walked in keyset
 * batches. A batch and its progress commit in one transaction, and commit only if the chunk is still the worker's
 * and still at the key the batch started from, so after a crash, a lost connection or a takeover no row is skipped
 * or written twice. Nothing proportional to the table is held in memory: one chunk and one batch bound at a time.
 */
export async function runKeysetBackfill(run: BackfillRun): Promise<BackfillProgress> {
  const { db, state, key, spec } = run;
  const o = { ...DEFAULT_BACKFILL, ...run.options };
  await ChunkStore.ensure(db, state);
  const walk = await db.withConnection((c) => resolveWalkKey(c, spec.table, run.keys));
  const stats = await tableStats(db, spec);
  const totalEstimate = Math.max(run.totalEstimate, stats.rows);
  await state.startBackfill(key.migration, key.changeIndex, key.phase, totalEstimate);
  const gen = await db.query<{ g: string }>(
    `SELECT started_at::text AS g FROM ${state.table('backfills')} WHERE migration = $1 AND change_index = $2 AND phase = $3`,
    [key.migration, key.changeIndex, key.phase],
  );
  const current = await state.getBackfill(key.migration, key.changeIndex, key.phase);
  if (!current || !gen.rows[0]) throw new Error('backfill progress row vanished right after it was created');
  let progress: BackfillProgress = {
    ...key,
    rowsDone: current.rowsDone,
    rowsUpdated: current.rowsUpdated,
    batches: current.batches,
    done: current.done,
    totalEstimate: current.totalEstimate || totalEstimate,
  };
  if (current.done) return progress;

  const chunks = new ChunkStore(db, state, key, gen.rows[0].g);
  // The lease and the canary each hold a pooled connection for the whole run; a small pool gives up the canary
  // first, then the lease (correctness does not depend on it), rather than leave the batches waiting for a connection.
  const poolMax = (db.knex.client as { config?: { pool?: { max?: number } } }).config?.pool?.max ?? 10;
  const lease = new WorkerLease(db);
  if (poolMax >= 2) await lease.start();
  const canarySettings = o.canary === false || poolMax < 3 ? null : { ...DEFAULT_CANARY, ...o.canary };
  let canary: CanaryProbe | null = null;
  const stop = new AbortController();
  const onUserAbort = () => stop.abort();
  run.signal?.addEventListener('abort', onUserAbort);
  if (run.signal?.aborted) stop.abort();
  try {
    if (canarySettings && !db.isEmbedded) {
      canary = new CanaryProbe(db, spec.table, walk, canarySettings);
      if (!(await canary.start(totalEstimate))) canary = null;
    }
    const throttle = new Throttle(
      db,
      {
        maxReplicationLagMs: o.maxReplicationLagMs ?? null,
        ...(o.healthCheck ? { healthCheck: o.healthCheck } : {}),
        canaryBudget: canarySettings?.budget ?? 1,
        canarySlackMs: canarySettings?.slackMs ?? 0,
        checkEveryMs: 1000,
      },
      canary,
      run.onThrottle,
    );
    const workers = db.isEmbedded ? 1 : Math.max(1, Math.min(o.workers ?? 1, poolMax - (poolMax >= 2 ? 1 : 0) - (canary ? 1 : 0)));
    run.onStart?.({ walk, workers, canaryBaselineP99Ms: canary?.baselineP99 ?? null, totalEstimate });

    const planBound = makePlanner(walk, spec, o.chunkRows ?? 100_000, stats.rowsPerPage);
    const batch = makeBatch(walk, spec, stats.rowsPerPage);

    const worker = async (): Promise<void> => {
      const sizer = new BatchSizer(o.batchSize, Math.min(o.minBatchSize ?? 100, o.batchSize), Math.max(o.maxBatchSize ?? 50_000, o.batchSize), o.targetBatchMs ?? 200, o.adaptive ?? true);
      for (;;) {
        if (stop.signal.aborted) throw interrupted(progress);
        const got = await chunks.claimOrPlan(lease.key, planBound);
        if (got === 'all-done') {
          await chunks.finish();
          return;
        }
        if (got === 'none-free') {
          await sleep(200);
          continue;
        }
        await walkChunk(got, sizer);
      }
    };

    const walkChunk = async (chunk: Chunk, sizer: BatchSizer): Promise<void> => {
      let lastKey = chunk.lastKey;
      let done = false;
      try {
        while (!done) {
          await throttle.wait(stop.signal);
          if (stop.signal.aborted) throw interrupted(progress);
          if (run.beforeBatch) await run.beforeBatch(progress);
          for (let attempt = 1; ; attempt++) {
            try {
              const from = lastKey;
              const started = performance.now();
              const res = await db.transaction(async (conn) => {
                await conn.query('SELECT set_config($1, $2, true), set_config($3, $4, true)', [
                  'lock_timeout',
                  `${run.lock.lockTimeoutMs}ms`,
                  'statement_timeout',
                  `${o.batchTimeoutMs ?? 10_000}ms`,
                ]);
                const b = await batch(conn, chunk, from, sizer.size);
                const totals = await chunks.advance(conn, chunk.chunkNo, lease.key, from, b.to, b.scanned, b.updated, b.finished);
                if (!totals) throw new ProgressMoved();
                return { ...b, totals };
              });
              sizer.observe(res.nominal, performance.now() - started);
              lastKey = res.to ?? lastKey;
              done = res.finished;
              progress = { ...progress, ...res.totals, batchSize: sizer.size };
              run.onProgress?.(progress);
              break;
            } catch (err) {
              if (err instanceof ProgressMoved) return; // taken over by another worker: its rows are its own now
              if (isConnectionLost(err)) {
                // Our COMMIT may have landed before the connection dropped: the chunk row is the truth.
                const saved = await chunks.read(chunk.chunkNo).catch(() => null);
                if (saved && saved.owner !== lease.key && !saved.done) return;
                if (saved && (saved.done || JSON.stringify(saved.lastKey) !== JSON.stringify(lastKey))) {
                  lastKey = saved.lastKey;
                  done = saved.done;
                  break;
                }
              }
              const code = sqlState(err) ?? (isConnectionLost(err) ? 'connection-lost' : undefined);
              if (code === '57014') sizer.split();
              const retryable = code !== undefined && (RETRYABLE_BATCH.has(code) || code === 'connection-lost' || isConnectionLost(err));
              if (!retryable || attempt >= o.maxBatchAttempts) {
                throw new Error(
                  `backfill of ${tableLabel(spec.table)}: batch after key ${JSON.stringify(lastKey)} failed (${code ?? 'error'}: ${(err as Error).message}) on attempt ${attempt}. ` +
                    `${progress.rowsDone} rows are done and committed; the failed batch was rolled back. Run the same command again to resume.`,
                  { cause: err },
                );
              }
              const delayMs = code === '57014' ? 0 : backoffDelay(attempt, run.lock);
              run.onRetry?.({ attempt, code: code ?? 'unknown', delayMs });
              await sleep(delayMs);
            }
          }
          if (!done && o.pauseMs > 0) await sleep(o.pauseMs);
        }
      } catch (err) {
        await chunks.release(chunk.chunkNo, lease.key).catch(() => undefined);
        throw err;
      }
    };

    const results = await Promise.allSettled(
      Array.from({ length: workers }, () =>
        worker().catch((e: unknown) => {
          stop.abort(); // one worker's failure stops the others at their next batch
          throw e;
        }),
      ),
    );
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
    if (failures.length > 0) throw failures.find((e) => !(e instanceof BackfillInterrupted)) ?? failures[0];
  } finally {
    run.signal?.removeEventListener('abort', onUserAbort);
    if (canary) {
      await canary.stop();
      if (run.canaryReport) {
        run.canaryReport.baselineP99Ms = canary.baselineP99;
        run.canaryReport.during = canary.during;
      }
    }
    await lease.stop();
  }
  const end = await state.getBackfill(key.migration, key.changeIndex, key.phase);
  if (!end) return progress;
  return { ...progress, rowsDone: end.rowsDone, rowsUpdated: end.rowsUpdated, batches: end.batches, done: end.done };
}

function interrupted(p: BackfillProgress): BackfillInterrupted {
  return new BackfillInterrupted(`backfill stopped after ${p.rowsDone} rows; progress is saved, run again to resume`);
}

async function tableStats(db: Db, spec: BackfillSpec): Promise<{ rows: number; rowsPerPage: number }> {
  const r = await db.query<{ reltuples: number; relpages: number; live: number | null }>(
    `SELECT c.reltuples::float8 AS reltuples, c.relpages::int AS relpages, s.n_live_tup::float8 AS live
       FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = $1::regclass`,
    [qualified(spec.table)],
  );
  const x = r.rows[0];
  let rows = Math.max(0, Math.round(Math.max(x?.reltuples ?? 0, x?.live ?? 0)));
  if (rows === 0) {
    // Never analyzed: the planner still estimates from the file's size and the row width, which beats "?".
    const plan = await db.query<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(`EXPLAIN (FORMAT JSON) SELECT 1 FROM ${qualified(spec.table)}`);
    rows = Math.round(plan.rows[0]?.['QUERY PLAN'][0]?.Plan['Plan Rows'] ?? 0);
  }
  const rowsPerPage = x && x.reltuples > 0 && x.relpages > 0 ? Math.max(1, x.reltuples / x.relpages) : 50;
  return { rows, rowsPerPage };
}

type Planner = (c: Connection, after: Chunk | null) => Promise<{ lo: string[] | null; hi: string[] | null; final: boolean; endKey: string[] | null }>;

/** The next chunk after `after`: chunkRows keys further (read from the index, not counted), or a page range. */
function makePlanner(walk: WalkKey, spec: BackfillSpec, chunkRows: number, rowsPerPage: number): Planner {
  if (walk.kind === 'ctid') {
    return async (c, after) => {
      let end = after?.endKey ? Number(after.endKey[0]) : NaN;
      if (!after) {
        // Pages that exist now; rows written later are the triggers' business, and our own new row versions land
        // beyond this end (or are found again holding their value already).
        const r = await c.query<{ pages: string }>(
          `SELECT (pg_relation_size($1::regclass) / current_setting('block_size')::int)::bigint AS pages`,
          [qualified(spec.table)],
        );
        end = Number(r.rows[0]!.pages);
      }
      const lo = after?.hi ? Number(after.hi[0]) : 0;
      const hi = Math.min(end, lo + Math.max(1, Math.ceil(chunkRows / rowsPerPage)));
      return { lo: [String(lo)], hi: [String(hi)], final: hi >= end, endKey: [String(end)] };
    };
  }
  return async (c, after) => {
    const lo = after?.hi ?? null;
    const r = await c.query<{ n: number; last_key: string[] | null }>(keysetBoundSql(spec.table, walk.columns, lo !== null, false), [chunkRows, ...(lo ?? [])]);
    const row = r.rows[0]!;
    if (row.n < chunkRows) return { lo, hi: null, final: true, endKey: null };
    return { lo, hi: row.last_key, final: false, endKey: null };
  };
}

type Batch = (c: Connection, chunk: Chunk, from: string[] | null, size: number) => Promise<BatchResult>;

function makeBatch(walk: WalkKey, spec: BackfillSpec, rowsPerPage: number): Batch {
  const only = spec.only ?? 'distinct';
  if (walk.kind === 'ctid') {
    if (spec.copy) throw new Error(`backfill: copying ${tableLabel(spec.table)} needs its primary key to walk; it has none. Nothing was copied.`);
    const sql = ctidRangeUpdateSql(spec.table, spec.set, only);
    return async (c, chunk, from, size) => {
      const start = Number((from ?? chunk.lo ?? ['0'])[0]);
      const hi = Number(chunk.hi![0]);
      const pages = Math.max(1, Math.round(size / rowsPerPage));
      const to = Math.min(hi, start + pages);
      const r = await c.query<{ scanned: number; updated: number }>(sql, [start, to]);
      return { scanned: r.rows[0]!.scanned, updated: r.rows[0]!.updated, to: [String(to)], finished: to >= hi, nominal: pages * rowsPerPage };
    };
  }
  const cols = walk.columns;
  return async (c, chunk, from, size) => {
    const lower = from ?? chunk.lo;
    const b = await c.query<{ n: number; last_key: string[] | null }>(keysetBoundSql(spec.table, cols, lower !== null, chunk.hi !== null), [
      size,
      ...(lower ?? []),
      ...(chunk.hi ?? []),
    ]);
    const { n, last_key } = b.rows[0]!;
    const finished = n < size;
    // A chunk's last batch runs to the chunk's end; the table's last chunk is open-ended.
    const upper = finished ? chunk.hi : last_key;
    let updated = 0;
    if (n > 0) {
      // A copy (splitTable, mergeTables) writes another table, with the sync triggers told to stay quiet.
      if (spec.copy?.quietFlag) await c.query('SELECT set_config($1, $2, true)', [spec.copy.quietFlag, 'on']);
      const write = spec.copy
        ? copyRangeSql(spec.table, cols, spec.copy, lower !== null, upper !== null)
        : keysetRangeUpdateSql(spec.table, cols, spec.set, only, lower !== null, upper !== null);
      const u = await c.query(write, [...(lower ?? []), ...(upper ?? [])]);
      updated = u.rowCount;
    }
    return { scanned: n, updated, to: finished ? (chunk.hi ?? last_key ?? lower) : last_key, finished, nominal: n };
  };
}

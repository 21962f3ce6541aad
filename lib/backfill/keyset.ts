import { isConnectionLost, setConfig, sqlState, type Db } from '../db/db.js';
import { backoffDelay, type LockSafetyOptions } from '../engine/executor.js';
import { LeaseLostError, type LeaseTiming } from '../engine/lease.js';
import type { PhaseName, StateStore } from '../engine/state.js';
import type { BackfillSpec } from '../migration.js';
import type { KeyColumn } from '../postgres/batch-sql.js';
import { tableLabel } from '../postgres/identifiers.js';
import { BatchSizer } from './adaptive.js';
import { analyzeIfStale, makeBatch, makePlanner, tableStats, type Batch } from './batch.js';
import { CanaryProbe } from './canary.js';
import { ChunkStore, type Chunk } from './chunks.js';
import { WorkerLease } from './lease.js';
import { Throttle, type HealthCheck, type ThrottleEvent } from './throttle.js';
import { resolveWalkKey, type PartitionWalk, type WalkKey } from './walk-key.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { batchWalCompression } from '../postgres/wal-compression.js';
import { sleep } from '../db/timing.js';

export interface CanarySettings {
  /** A probe over baseline × budget counts as slow; the pacer keeps slow probes under 1 %, so the p99 within it. Default 1.5. */
  readonly budget: number;
  /** …and at least baseline + slackMs, so sub-millisecond noise does not stop a backfill. Default 2 ms. */
  readonly slackMs: number;
  /** Probes before the first batch, for the first baseline (idle probes between batches replace it). Default 100. */
  readonly baselineSamples: number;
  readonly intervalMs: number;
  /** Over this stretch at most 1 % of probes may be over budget; past that the backfill is held. It is also the span
   * of the idle probes whose p99 is the baseline: short enough that the baseline follows the application's load down
   * again within seconds after a noisy stretch (a minute let a backfill started after one run on a loose budget). Default 20 s. */
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
  /**
   * Workers added to `workers` while no other client uses the server (the pacer's look at pg_stat_activity, so only
   * with the canary on): an idle server's second core is the backfill's. Each hands its chunk back at its next batch
   * once another client shows up and waits until the server is quiet again. Default 1; 0 turns them off.
   */
  readonly idleWorkers?: number;
  /** Rows per chunk, the unit workers claim. Default 250 000 (five batches of the largest size: a chunk's planning is paid once per chunk). */
  readonly chunkRows?: number;
  /**
   * How a partitioned table is walked: 'pages', each leaf partition's heap by page ranges where that is safe (see
   * walk-key.ts), or 'key', the table's key through the parent. Default 'pages'.
   */
  readonly partitionWalk?: 'pages' | 'key';
  /** Pause while a standby lags more than this (pg_stat_replication); null = ignore. Default 10 s. */
  readonly maxReplicationLagMs?: number | null;
  readonly healthCheck?: HealthCheck;
  /** The canary probe; false = none. */
  readonly canary?: Partial<CanarySettings> | false;
  /**
   * A fixed share of the time batches may run (0 < pace ≤ 1; 1 = back to back) instead of the canary's pacing, e.g.
   * for an emergency rollback (`--pace`). Undefined: the canary paces. The canary, when on, still holds the backfill
   * when more than 1 % of its probes are over budget.
   */
  readonly pace?: number;
}

export const DEFAULT_CANARY: CanarySettings = Object.freeze({ budget: 1.5, slackMs: 2, baselineSamples: 100, intervalMs: 10, tailWindowMs: 20_000 });

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
  idleWorkers: 1,
  chunkRows: 250_000,
  partitionWalk: 'pages',
  maxReplicationLagMs: 10_000,
  canary: DEFAULT_CANARY,
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
  /** The workers' lease timing behind a transaction pooler (`lock.leaseTimeout`); default DEFAULT_LEASE_TIMING. */
  readonly leaseTiming?: LeaseTiming;
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
  readonly onStart?: (e: { walk: WalkKey; workers: number; idleWorkers: number; canaryBaselineP99Ms: number | null; totalEstimate: number }) => void;
  /** Filled at the end with the canary's probe times measured during the backfill (for benchmarks). */
  readonly canaryReport?: { baselineP99Ms?: number; finalBaselineP99Ms?: number; during?: number[] };
}

export class BackfillInterrupted extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'backfill-interrupted';
  override name = 'BackfillInterrupted';
}

class ProgressMoved extends Error {}

const RETRYABLE_BATCH = new Set(['55P03', '40P01', '40001', '57014']);

/**
 * The backfill: the key space is cut into chunks that workers claim (SKIP LOCKED), and each chunk is walked in keyset
 * batches. A batch and its progress commit in one transaction, and commit only if the chunk is still the worker's
 * and still at the key the batch started from, so after a crash, a lost connection or a takeover no row is skipped
 * or written twice. Nothing proportional to the table is held in memory: one chunk and one batch bound at a time.
 */
export async function runKeysetBackfill(run: BackfillRun): Promise<BackfillProgress> {
  const { db, state, key, spec } = run;
  const o = { ...DEFAULT_BACKFILL, ...run.options };
  await state.ensure(); // the chunk table is part of the state's layout (version 4)
  // Leaf by leaf by pages only where a sync trigger keeps the written column in step on every other write: a row an
  // application updates moves to another page, maybe one already walked, and without the trigger it would be missed
  // there (addColumn's backfill has none: it walks each leaf by the key, which finds the row wherever it moved). A
  // copy or a join reads the walked rows' keys and works leaf by leaf too; a mirror deletes every key of the batch's
  // range the walked table lacks, which on a leaf would be the other partitions' rows: through the parent.
  const partitionWalk: PartitionWalk =
    o.partitionWalk === 'key' || spec.mirror ? 'parent' : spec.quietTrigger && !spec.archiveKeys && !spec.copy && !spec.join ? 'pages' : 'keys';
  const walk = await db.withConnection((c) => resolveWalkKey(c, spec.table, run.keys, partitionWalk));
  if (!db.isEmbedded) await analyzeIfStale(db, spec, run.lock.lockTimeoutMs);
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

  const walCompression = await batchWalCompression(db);
  const batchSettings: (readonly [string, string])[] = [
    ['lock_timeout', `${run.lock.lockTimeoutMs}ms`],
    ['statement_timeout', `${o.batchTimeoutMs ?? 10_000}ms`],
    ['synchronous_commit', 'off'],
    ...(walCompression ? [['wal_compression', walCompression] as const] : []),
  ];

  const chunks = new ChunkStore(db, state, key, gen.rows[0].g);
  // The lease and the canary each hold a pooled connection for the whole run; a small pool gives up the canary
  // first, then the lease (correctness does not depend on it), rather than leave the batches waiting for a connection.
  const poolMax = (db.knex.client as { config?: { pool?: { max?: number } } }).config?.pool?.max ?? 10;
  const lease = new WorkerLease(db, state.schema, run.leaseTiming);
  if (poolMax >= 2) await lease.start();
  const canarySettings = o.canary === false || poolMax < 3 ? null : { ...DEFAULT_CANARY, ...o.canary };
  let canary: CanaryProbe | null = null;
  const stop = new AbortController();
  const onUserAbort = () => stop.abort(run.signal?.reason);
  run.signal?.addEventListener('abort', onUserAbort);
  if (run.signal?.aborted) stop.abort(run.signal.reason);
  try {
    if (canarySettings && !db.isEmbedded) {
      canary = new CanaryProbe(db, spec.table, walk, canarySettings);
      if (!(await canary.start())) canary = null;
    }
    const throttle = new Throttle(
      db,
      {
        maxReplicationLagMs: o.maxReplicationLagMs ?? null,
        ...(o.healthCheck ? { healthCheck: o.healthCheck } : {}),
        canaryBudget: canarySettings?.budget ?? 1,
        canarySlackMs: canarySettings?.slackMs ?? 0,
        checkEveryMs: 1000,
        tableRows: totalEstimate,
        minBatchRows: o.minBatchSize ?? 100,
        ...(o.pace !== undefined ? { fixedPace: o.pace } : {}),
      },
      canary,
      run.onThrottle,
    );
    const spare = poolMax - (poolMax >= 2 ? 1 : 0) - (canary ? 1 : 0);
    const workers = db.isEmbedded ? 1 : Math.max(1, Math.min(o.workers ?? 1, spare));
    // Idle workers need the canary's look at who else uses the server, and a connection each to spare.
    const idleWorkers = db.isEmbedded || !canary || o.pace !== undefined ? 0 : Math.max(0, Math.min(o.idleWorkers ?? 0, spare - workers));
    let walking = workers;
    let allDone = false;
    // A second connection per worker, where the pool has them, finds the next batch's end while a batch writes.
    const prefetch = !db.isEmbedded && spare >= 2 * (workers + idleWorkers);
    // …and a third plans the next chunk while this one is walked (a page range costs nothing to plan).
    const planAhead = prefetch && walk.kind === 'keys' && spare >= 3 * (workers + idleWorkers);
    run.onStart?.({ walk, workers, idleWorkers, canaryBaselineP99Ms: canary?.baselineP99 ?? null, totalEstimate });
    /** Whether an idle worker may walk now: the pacer has looked and seen nobody else. */
    const quiet = () => !throttle.underTraffic;

    const planBound = makePlanner(walk, spec, o.chunkRows ?? 250_000, stats.rowsPerPage, stats.rows, chunks);

    const worker = async (idle: boolean): Promise<void> => {
      const batch = makeBatch(db, walk, spec, stats.rowsPerPage, prefetch);
      const sizer = new BatchSizer(o.batchSize, Math.min(o.minBatchSize ?? 100, o.batchSize), Math.max(o.maxBatchSize ?? 50_000, o.batchSize), o.targetBatchMs ?? 200, o.adaptive ?? true);
      for (;;) {
        if (stop.signal.aborted) throw stopped(stop.signal, progress);
        if (idle && (allDone || walking === 0)) return;
        if (idle && !quiet()) {
          await sleep(200);
          continue;
        }
        const got = await chunks.claimOrPlan(lease.key, planBound);
        if (got === 'all-done') {
          allDone = true;
          await chunks.finish();
          return;
        }
        if (got === 'none-free') {
          await sleep(200);
          continue;
        }
        const ahead = planAhead ? chunks.planAhead(planBound).catch(() => false) : null;
        try {
          await walkChunk(got, sizer, batch, idle);
        } finally {
          await ahead; // a failed look-ahead costs nothing: claimOrPlan plans the chunk in line then
        }
      }
    };

    const walkChunk = async (chunk: Chunk, sizer: BatchSizer, batch: Batch, idle: boolean): Promise<void> => {
      let lastKey = chunk.lastKey;
      let done = false;
      let batchMs = 0;
      try {
        while (!done) {
          if (idle && !quiet()) {
            // Another client showed up: the chunk goes back, resumed from its last batch by whoever claims it next.
            await chunks.release(chunk.chunkNo, lease.key);
            return;
          }
          await throttle.wait(stop.signal);
          if (stop.signal.aborted) throw stopped(stop.signal, progress);
          if (run.beforeBatch) await run.beforeBatch(progress);
          for (let attempt = 1; ; attempt++) {
            try {
              const from = lastKey;
              const started = performance.now();
              canary?.batchStarted();
              const res = await db.transaction(async (conn) => {
                // synchronous_commit off: the batch and its progress commit together, so a server crash that loses
                // the last commits loses both, and the resume redoes exactly those rows. The commit that records the
                // phase as done is synchronous and flushes everything before it. wal_compression: batchWalCompression.
                await setConfig(conn, batchSettings, true);
                const b = await batch(conn, chunk, from, Math.min(sizer.size, throttle.batchCap(sizer.rowsPerMs)));
                const totals = await chunks.advance(conn, chunk.chunkNo, lease.key, from, b.to, b.scanned, b.updated, b.finished);
                if (!totals) throw new ProgressMoved();
                return { ...b, totals };
              }).finally(() => canary?.batchEnded());
              batchMs = performance.now() - started;
              sizer.observe(res.nominal, batchMs);
              lastKey = res.to ?? lastKey;
              done = res.finished;
              progress = { ...progress, ...res.totals, batchSize: sizer.size };
              run.onProgress?.(progress);
              break;
            } catch (err) {
              if (err instanceof ProgressMoved) return; // taken over by another worker: its rows are its own now
              if (err instanceof LeaseLostError) throw err; // the migration lock's fence: nothing more may commit
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
          if (!done) await throttle.rest(batchMs, workers + (quiet() ? idleWorkers : 0), stop.signal);
          if (!done && o.pauseMs > 0) await sleep(o.pauseMs);
        }
      } catch (err) {
        await chunks.release(chunk.chunkNo, lease.key).catch(() => undefined);
        throw err;
      }
    };

    const results = await Promise.allSettled(
      Array.from({ length: workers + idleWorkers }, (_x, i) => {
        const idle = i >= workers;
        return worker(idle)
          .catch((e: unknown) => {
            stop.abort(); // one worker's failure stops the others at their next batch
            throw e;
          })
          .finally(() => {
            if (!idle) walking--;
          });
      }),
    );
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
    if (failures.length > 0) throw failures.find((e) => !(e instanceof BackfillInterrupted)) ?? failures[0];
  } finally {
    run.signal?.removeEventListener('abort', onUserAbort);
    if (canary) {
      await canary.stop();
      if (run.canaryReport) {
        const first = canary.initialBaselineP99;
        const last = canary.baselineP99;
        if (first !== null) run.canaryReport.baselineP99Ms = first;
        if (last !== null) run.canaryReport.finalBaselineP99Ms = last;
        run.canaryReport.during = canary.during;
      }
    }
    await lease.stop();
  }
  const end = await state.getBackfill(key.migration, key.changeIndex, key.phase);
  if (!end) return progress;
  return { ...progress, rowsDone: end.rowsDone, rowsUpdated: end.rowsUpdated, batches: end.batches, done: end.done };
}

/** Why the backfill stops: a lost migration lock says so (the run must fail), anything else is an interruption. */
function stopped(signal: AbortSignal, p: BackfillProgress): Error {
  return signal.reason instanceof LeaseLostError ? signal.reason : interrupted(p);
}

function interrupted(p: BackfillProgress): BackfillInterrupted {
  return new BackfillInterrupted(`backfill stopped after ${p.rowsDone} rows; progress is saved, run again to resume`);
}

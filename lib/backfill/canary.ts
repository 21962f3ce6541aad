import { setConfig, sqlState, type Connection, type Db } from '../db/db.js';
import { ctidProbeSql, keyProbeSql, partitionedPagesSql, relationPagesSql, sampleKeysSql, type KeyColumn } from '../postgres/batch-sql.js';
import { isPartitioned } from '../postgres/catalog.js';
import { qualified, type TableName } from '../postgres/identifiers.js';
import type { WalkKey } from './walk-key.js';
import { sleep, percentile } from '../db/timing.js';

export interface CanaryOptions {
  /** Length of the stretch over which at most 1 % of probes may be over budget (the p99 promise). Default 20 s. */
  readonly tailWindowMs?: number;
  /** Probes measured before the backfill starts, for the first baseline p99. */
  readonly baselineSamples: number;
  /** Time between probes while the backfill runs. */
  readonly intervalMs: number;
}


/**
 * The last `capacity` values, in fixed memory. Shares and percentiles are computed when asked (a few thousand numbers,
 * a few times a second), so a threshold that moves applies to every probe kept, not only to those after the move.
 */
export class SampleRing {
  private readonly values: Float64Array;
  private pos = 0;
  private filled = 0;
  constructor(readonly capacity: number) {
    this.values = new Float64Array(Math.max(1, capacity));
  }
  push(v: number): void {
    this.values[this.pos] = v;
    this.pos = (this.pos + 1) % this.values.length;
    if (this.filled < this.values.length) this.filled++;
  }
  get size(): number {
    return this.filled;
  }
  /** Share of the kept values above `limit`, or null when none are kept. */
  shareAbove(limit: number): number | null {
    if (this.filled === 0) return null;
    let n = 0;
    for (let i = 0; i < this.filled; i++) if (this.values[i]! > limit) n++;
    return n / this.filled;
  }
  percentile(p: number): number {
    return percentile(this.values.subarray(0, this.filled), p);
  }
  clear(): void {
    this.pos = 0;
    this.filled = 0;
  }
}

/** Probe targets: this many keys, each on a page of its own, probed in turn. */
export const PROBE_TARGETS = 2000;

/**
 * Keys to probe, spread over the table: about twice as many pages as targets are sampled (a few megabytes read once),
 * one key taken from each, so the probes read pages the way an application's reads across the table do, most of
 * them not in the buffer cache, rather than the same few hot pages. Empty for an empty table.
 */
export async function sampleProbeTargets(db: Db, table: TableName, keys: readonly KeyColumn[] | 'ctid', n = PROBE_TARGETS): Promise<string[][]> {
  const sizeSql = (await isPartitioned(db, table)) ? partitionedPagesSql : relationPagesSql;
  const pages = Number((await db.query<{ pages: number }>(sizeSql, [qualified(table)])).rows[0]?.pages ?? 1);
  const sql = sampleKeysSql(table, keys);
  let rows = (await db.query<{ k: string[] }>(sql, [Math.min(100, Math.max(0.0001, (100 * 2 * n) / pages)), n])).rows;
  if (rows.length < Math.min(10, n)) rows = (await db.query<{ k: string[] }>(sql, [100, n])).rows;
  return rows.map((r) => r.k);
}

/**
 * A probe counts as during a batch when it starts while one runs or in the batch's wake: half as long as the batch
 * took, at most 100 ms (the WAL and dirty pages it left are written out meanwhile; in bench/, probes in the first
 * 100 ms after a 200 ms batch were over budget three times as often as idle ones, later ones no more than idle).
 */
export function wakeMs(batchMs: number): number {
  return Math.min(100, batchMs / 2);
}
/** Idle probes that replace the first baseline (a second or two of probes says little about a p99). */
const IDLE_FOR_BASELINE = 300;

/** What a probe does: the read an application does most, or the start of a write to one row. */
export type ProbeKind = 'read' | 'write';

/**
 * The probes of one kind, filed as *busy* (a batch of this process was running, or had just ended) or *idle* (none
 * was): the idle ones keep measuring what the application gets without the backfill, so the baseline follows the
 * application's own load instead of one moment before the start; the busy ones measure what a batch costs it.
 */
export class ProbeSeries {
  private firstBaseline = 0;
  /** Every probe of the tail window (the p99 promise is kept over it). */
  readonly all: SampleRing;
  /** Probes with no batch of ours running or just ended. */
  readonly idle: SampleRing;
  /** Probes that started during a batch of ours or in its wake. */
  readonly busy: SampleRing;
  /** Busy probes measured so far (the ring keeps only the last ones). */
  busyProbes = 0;

  constructor(
    readonly kind: ProbeKind,
    private readonly baselineSamples: number,
    tail: number,
  ) {
    this.all = new SampleRing(tail);
    // The same span as `all`: with no batch running the two hold the same probes, and 1.1× the p99 of a set is
    // passed by fewer than 1 % of that set, so the application's own ups and downs can never hold the backfill.
    this.idle = new SampleRing(tail);
    this.busy = new SampleRing(500);
  }

  add(ms: number, busy: boolean): void {
    this.all.push(ms);
    if (busy) {
      this.busy.push(ms);
      this.busyProbes++;
    } else this.idle.push(ms);
  }

  /**
   * The application's p99 without the backfill: the p99 of the idle probes (those between batches), once
   * `baselineSamples` of them have come in; null before that. The first batches do not wait for it: they run at the
   * pacer's start duty (a tenth of the time), so most early probes are idle ones and the baseline is known within a
   * second or two, while a small table is often done by then.
   */
  get baselineP99(): number | null {
    if (this.idle.size >= IDLE_FOR_BASELINE) return this.idle.percentile(99);
    if (this.firstBaseline > 0) return this.firstBaseline;
    if (this.idle.size < this.baselineSamples) return null;
    this.firstBaseline = this.idle.percentile(99);
    return this.firstBaseline;
  }

  /** The first baseline (null when the backfill ended before enough idle probes came in). */
  get initialBaselineP99(): number | null {
    return this.firstBaseline > 0 ? this.firstBaseline : this.baselineP99;
  }

  /** Takes `p99` as the first baseline and starts the record afresh. */
  rebaseline(p99: number): void {
    this.firstBaseline = p99;
    this.clear();
  }

  /** Forgets what was measured (the baseline stays): what came before no longer describes the application's load. */
  clear(): void {
    this.all.clear();
    this.idle.clear();
    this.busy.clear();
  }
}

/** Longest a write probe waits for a row lock: past this it counts as that slow and the next probe goes on. */
const WRITE_PROBE_LOCK_TIMEOUT_MS = 2000;

/**
 * A canary: two probes an application's requests stand for, taken in turn on a connection of their own before and
 * during the backfill. The read (one row by key) sees what a batch costs the server's CPU and I/O; the write (one row
 * locked FOR NO KEY UPDATE, the lock an application's UPDATE takes, released at once) also waits when the row is in a
 * running batch, which a read never does: a long batch holds its rows' locks until it commits, and an application's
 * write to one of them waits for all of it. The write changes no data and fires no trigger; it commits with
 * synchronous_commit off, so its time is the lock and the server, not the disk's flush. The pacer (pacer.ts) turns
 * both into the pause after each batch.
 */
export class CanaryProbe {
  private targets: string[][] = [];
  private next = 0;
  private running = false;
  private loop: Promise<void> | null = null;
  private batchesRunning = 0;
  private lastBatchEnd = -Infinity;
  private lastWake = 0;
  private batchStart = 0;
  readonly reads: ProbeSeries;
  readonly writes: ProbeSeries;
  /**
   * Behind a transaction pooler a session setting would leak to other clients' server sessions, and a write probe
   * without its lock_timeout could wait on a lock for good: there the reads pace alone.
   */
  private writeProbes: boolean;
  /** Every read probe time measured, for reports (bounded). */
  readonly during: number[] = [];

  constructor(
    private readonly db: Db,
    private readonly table: TableName,
    private readonly walk: WalkKey,
    private readonly opts: CanaryOptions,
  ) {
    // Each kind is probed every other time: its window holds half as many probes over the same span.
    const tail = Math.max(100, Math.round((opts.tailWindowMs ?? 20_000) / Math.max(1, 2 * opts.intervalMs)));
    const baselineSamples = Math.max(1, Math.ceil(opts.baselineSamples / 2));
    this.reads = new ProbeSeries('read', baselineSamples, tail);
    this.writes = new ProbeSeries('write', baselineSamples, tail);
    this.writeProbes = db.pooling !== 'transaction';
  }

  /** What a probe finds its row by: the walked key, or ctid for a table without one. */
  private get probeKey(): readonly KeyColumn[] | null {
    return this.walk.kind === 'ctid' ? null : this.walk.columns;
  }

  /** The kinds probed: reads, and writes unless they cannot be. */
  get series(): readonly ProbeSeries[] {
    return this.writeProbes ? [this.reads, this.writes] : [this.reads];
  }

  /** The read probes' baseline (the figure reports give). */
  get baselineP99(): number | null {
    return this.reads.baselineP99;
  }
  get initialBaselineP99(): number | null {
    return this.reads.initialBaselineP99;
  }

  /** Picks probe targets from a block sample and starts probing at once; false when the table is empty. */
  async start(): Promise<boolean> {
    this.targets = await sampleProbeTargets(this.db, this.table, this.probeKey ?? 'ctid');
    if (this.targets.length === 0) return false;
    this.running = true;
    await this.db.withConnection(async (c) => {
      for (let i = 0; i < 5; i++) await this.probe(c, 'read'); // warm the plan and the cache
    });
    this.loop = this.run();
    return true;
  }

  /** A batch of this process starts / ends: probes from now until its wake has passed are busy. */
  batchStarted(): void {
    if (this.batchesRunning++ === 0) this.batchStart = performance.now();
  }
  batchEnded(): void {
    this.batchesRunning = Math.max(0, this.batchesRunning - 1);
    this.lastBatchEnd = performance.now();
    this.lastWake = wakeMs(this.lastBatchEnd - this.batchStart);
  }

  private async probe(c: Connection, kind: ProbeKind): Promise<number> {
    const key = this.targets[this.next++ % this.targets.length]!;
    const lock = kind === 'write';
    const sql = this.probeKey ? keyProbeSql(this.table, this.probeKey, lock) : ctidProbeSql(this.table, lock);
    const started = performance.now();
    try {
      await c.query(sql, key);
    } catch (e) {
      // A write probe that waited out its lock_timeout was that slow. One the role may not run (no UPDATE right on
      // the table: a read-only monitoring role) is dropped, and the reads pace alone.
      const code = sqlState(e);
      if (lock && code === '42501') this.writeProbes = false;
      else if (code !== '55P03') throw e;
    }
    return performance.now() - started;
  }

  private async run(): Promise<void> {
    let turn = 0;
    while (this.running) {
      try {
        await this.db.withConnection(async (c) => {
          const session = this.writeProbes;
          if (session) await setConfig(c, [['synchronous_commit', 'off'], ['lock_timeout', `${WRITE_PROBE_LOCK_TIMEOUT_MS}ms`]], false);
          try {
            while (this.running) {
              const kind: ProbeKind = this.writeProbes && turn++ % 2 === 1 ? 'write' : 'read';
              const startedAt = performance.now();
              const busy = this.batchesRunning > 0 || startedAt - this.lastBatchEnd < this.lastWake;
              const ms = await this.probe(c, kind);
              (kind === 'read' ? this.reads : this.writes).add(ms, busy || this.batchesRunning > 0);
              if (kind === 'read' && this.during.length < 200_000) this.during.push(ms);
              await sleep(this.opts.intervalMs);
            }
          } finally {
            // the connection goes back to the pool: it must not keep the probe's settings
            if (session) await c.query('RESET synchronous_commit; RESET lock_timeout').catch(() => undefined);
          }
        });
      } catch {
        // a lost canary connection is not the backfill's failure: reconnect after a moment
        await sleep(200);
      }
    }
  }

  /** Takes `p99` as the first baseline of both kinds and starts the record of probes afresh. */
  rebaseline(p99: number): void {
    for (const s of this.series) s.rebaseline(p99);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

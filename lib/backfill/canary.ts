import type { Connection, Db } from '../engine/db.js';
import { ctidProbeSql, keyProbeSql, sampleKeysSql } from '../postgres/batch-sql.js';
import type { TableName } from '../postgres/identifiers.js';
import type { WalkKey } from './walk-key.js';

export interface CanaryOptions {
  /**
   * Length of the stretch over which at most 1 % of probes may be over budget (the p99 promise). Default 60 s.
   */
  readonly tailWindowMs?: number;
  /** Probes measured before the backfill starts, for the baseline p99. */
  readonly baselineSamples: number;
  /** Time between probes while the backfill runs. */
  readonly intervalMs: number;
  /** p99 is taken over the probes of this last stretch of time. */
  readonly windowMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * A canary: the read an application does most (one row by key), timed on a connection of its own before and during
 * the backfill. The backfill pauses while the recent p99 is above the budget over the baseline, so what users feel
 * bounds its speed rather than a guessed fixed pause.
 */
export class CanaryProbe {
  private targets: string[][] = [];
  private next = 0;
  private samples: { at: number; ms: number }[] = [];
  private running = false;
  private loop: Promise<void> | null = null;
  baselineP99 = 0;
  /** Probe times collected while the backfill is paused (see Throttle.wait), or null when not collecting. */
  idle: number[] | null = null;
  /** Probe time above which a probe counts as slow; set by the throttle from the budget. */
  slowAboveMs = Infinity;
  private ring: Uint8Array = new Uint8Array(1);
  private ringPos = 0;
  private ringFilled = 0;
  private ringSlow = 0;
  /** Every probe time measured after the baseline, for reports (bounded). */
  readonly during: number[] = [];

  constructor(
    private readonly db: Db,
    private readonly table: TableName,
    private readonly walk: WalkKey,
    private readonly opts: CanaryOptions,
  ) {}

  /** Picks probe targets from a block sample and measures the baseline; false when the table is empty. */
  async start(estimatedRows: number): Promise<boolean> {
    const percent = Math.min(100, Math.max(0.001, (100 * 400) / Math.max(estimatedRows, 1)));
    const sql = sampleKeysSql(this.table, this.walk.kind === 'ctid' ? 'ctid' : this.walk.columns);
    let rows = (await this.db.query<{ k: string[] }>(sql, [percent, 200])).rows;
    if (rows.length < 10) rows = (await this.db.query<{ k: string[] }>(sql, [100, 200])).rows;
    if (rows.length === 0) return false;
    this.targets = rows.map((r) => r.k);
    this.running = true;
    const baseline: number[] = [];
    await this.db.withConnection(async (c) => {
      for (let i = 0; i < 5; i++) await this.probe(c); // warm the plan and the cache
      for (let i = 0; i < this.opts.baselineSamples; i++) {
        baseline.push(await this.probe(c));
        // spaced like the probes during the backfill, so the baseline spans a second or more of the app's load
        await sleep(this.opts.intervalMs);
      }
    });
    this.baselineP99 = percentile(baseline, 99);
    this.ring = new Uint8Array(Math.max(100, Math.round((this.opts.tailWindowMs ?? 60_000) / Math.max(1, this.opts.intervalMs))));
    this.loop = this.run();
    return true;
  }

  private async probe(c: Connection): Promise<number> {
    const key = this.targets[this.next++ % this.targets.length]!;
    const started = performance.now();
    if (this.walk.kind === 'ctid') await c.query(ctidProbeSql(this.table), key);
    else await c.query(keyProbeSql(this.table, this.walk.columns), key);
    return performance.now() - started;
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        await this.db.withConnection(async (c) => {
          while (this.running) {
            const ms = await this.probe(c);
            const at = Date.now();
            this.samples.push({ at, ms });
            if (this.during.length < 200_000) this.during.push(ms);
            if (this.idle && this.idle.length < 100_000) this.idle.push(ms);
            const slow = ms > this.slowAboveMs ? 1 : 0;
            if (this.ringFilled === this.ring.length) this.ringSlow -= this.ring[this.ringPos]!;
            else this.ringFilled++;
            this.ring[this.ringPos] = slow;
            this.ringSlow += slow;
            this.ringPos = (this.ringPos + 1) % this.ring.length;
            while (this.samples.length > 0 && this.samples[0]!.at < at - this.opts.windowMs) this.samples.shift();
            await sleep(this.opts.intervalMs);
          }
        });
      } catch {
        // a lost canary connection is not the backfill's failure: reconnect after a moment
        await sleep(200);
      }
    }
  }

  /** p99 of the probes in the recent window, or null while there are too few to say. */
  recentP99(): number | null {
    if (this.samples.length < 10) return null;
    return percentile(
      this.samples.map((s) => s.ms),
      99,
    );
  }

  /**
   * Share of the probes of the tail window that were slow, or null while there are too few. Above 1 % the p99 over
   * that stretch is over budget, however short each slow spell was.
   */
  slowShare(): number | null {
    return this.ringFilled < 100 ? null : this.ringSlow / this.ringFilled;
  }

  /**
   * The application's latency moved for reasons of its own (measured while the backfill was paused): the new p99 is
   * the baseline from now on, and the record of slow probes starts afresh.
   */
  rebaseline(p99: number): void {
    this.baselineP99 = p99;
    this.ring.fill(0);
    this.ringSlow = 0;
    this.ringFilled = 0;
    this.ringPos = 0;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

import type { Db } from '../engine/db.js';
import { percentile, type CanaryProbe } from './canary.js';

/** A user-supplied check: true (or { ok: true }) lets the backfill go on; anything else pauses it. */
export type HealthCheck = () => Promise<boolean | { readonly ok: boolean; readonly reason?: string }>;

export interface ThrottleOptions {
  /** Pause while any standby replays more than this far behind (pg_stat_replication). null = do not look. */
  readonly maxReplicationLagMs: number | null;
  readonly healthCheck?: HealthCheck;
  /** Canary p99 may reach baseline × budget (and at least baseline + slackMs) before the backfill pauses. */
  readonly canaryBudget: number;
  readonly canarySlackMs: number;
  /** How often lag and the health check are asked, at most. */
  readonly checkEveryMs: number;
}

export interface ThrottleEvent {
  readonly state: 'paused' | 'resumed' | 'rebaselined';
  readonly reason: string;
  /** For 'resumed': how long the pause lasted. */
  readonly pausedMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Decides, before every batch, whether the database can take another one now. While it cannot, the backfill
 * waits between batches, holding no locks and no open transaction.
 */
export class Throttle {
  private lastCheck = 0;
  private cached: string | null = null;

  constructor(
    private readonly db: Db,
    private readonly opts: ThrottleOptions,
    private readonly canary: CanaryProbe | null,
    private readonly onEvent?: (e: ThrottleEvent) => void,
  ) {
    if (canary) canary.slowAboveMs = Math.max(canary.baselineP99 * opts.canaryBudget, canary.baselineP99 + opts.canarySlackMs);
  }

  /** Why the backfill should wait now, or null. */
  async reason(): Promise<string | null> {
    const now = Date.now();
    if (now - this.lastCheck >= this.opts.checkEveryMs) {
      this.lastCheck = now;
      this.cached = (await this.replicationReason()) ?? (await this.healthReason());
    }
    if (this.cached) return this.cached;
    return this.canaryReason();
  }

  private async replicationReason(): Promise<string | null> {
    if (this.opts.maxReplicationLagMs === null || this.db.isEmbedded) return null;
    // Per receiver, the lag that matters to it: a standby's replay lag (its readers see data that old); for a WAL
    // receiver that never replays (pg_receivewal, Barman), its write lag — its flush_lag/replay_lag grow without end
    // because it confirms no flush before a segment is full, and counting them would pause a backfill for good.
    // The *_lag columns only move when a receiver reports, so a stalled one (hung, network cut) keeps its last small
    // values: one that is behind the primary's WAL counts as at least as late as its last report is old.
    const r = await this.db.query<{ lag_ms: number | null; name: string | null }>(
      `SELECT extract(epoch FROM lag) * 1000 AS lag_ms, name FROM (
         SELECT greatest(CASE WHEN replay_lsn IS NOT NULL THEN replay_lag ELSE write_lag END,
                         CASE WHEN coalesce(replay_lsn, write_lsn, '0/0'::pg_lsn) < pg_current_wal_lsn() THEN now() - reply_time END) AS lag,
                application_name AS name
           FROM pg_stat_replication) r
        WHERE lag IS NOT NULL ORDER BY lag DESC LIMIT 1`,
    );
    const row = r.rows[0];
    const lag = row?.lag_ms === undefined || row.lag_ms === null ? null : Number(row.lag_ms);
    return lag !== null && lag > this.opts.maxReplicationLagMs
      ? `replication lag ${Math.round(lag)} ms > ${this.opts.maxReplicationLagMs} ms${row?.name ? ` (${row.name})` : ''}`
      : null;
  }

  private async healthReason(): Promise<string | null> {
    if (!this.opts.healthCheck) return null;
    try {
      const res = await this.opts.healthCheck();
      if (res === true || (typeof res === 'object' && res.ok)) return null;
      return `health check: ${(typeof res === 'object' && res.reason) || 'not healthy'}`;
    } catch (e) {
      return `health check failed: ${(e as Error).message}`;
    }
  }

  /**
   * Two views of the canary: the recent p99 (a spike now), and the share of slow probes over the tail window. The
   * second is what keeps the p99 of the whole backfill within budget: short batches that each slow a few probes
   * add up, and the backfill then pauses until enough fast probes have passed to keep the slow ones under 1 %.
   */
  private budget(): number {
    const base = this.canary?.baselineP99 ?? 0;
    return Math.max(base * this.opts.canaryBudget, base + this.opts.canarySlackMs);
  }

  private canaryReason(): string | null {
    if (!this.canary) return null;
    const budget = this.budget();
    this.canary.slowAboveMs = budget;
    const p99 = this.canary.recentP99();
    if (p99 !== null && p99 > budget) return `canary p99 ${p99.toFixed(2)} ms > budget ${budget.toFixed(2)} ms (baseline ${this.canary.baselineP99.toFixed(2)} ms)`;
    const share = this.canary.slowShare();
    if (share !== null && share > 0.01) return `${(share * 100).toFixed(1)} % of canary probes over budget ${budget.toFixed(2)} ms lately (at most 1 % keeps the p99 within it)`;
    return null;
  }

  /** Returns once the backfill may run a batch; returns early when `signal` aborts. */
  async wait(signal?: AbortSignal): Promise<void> {
    let why = await this.reason();
    if (!why) return;
    const started = Date.now();
    this.onEvent?.({ state: 'paused', reason: why });
    // While paused, the canary measures the application without the backfill. If that alone is over budget for a
    // while, the load changed, not us: waiting would stall the backfill for good, so the baseline moves instead.
    if (this.canary) this.canary.idle = [];
    try {
      while (why && !signal?.aborted) {
        await sleep(100);
        why = await this.reason();
        const idle = this.canary?.idle;
        if (why && this.canary && idle && idle.length >= 300 && Date.now() - started >= 5000) {
          // the first half second still carries the last batch's wake
          const idleP99 = percentile(idle.slice(50), 99);
          if (idleP99 > this.budget()) {
            this.onEvent?.({ state: 'rebaselined', reason: `canary p99 ${idleP99.toFixed(2)} ms with the backfill paused: the new baseline (was ${this.canary.baselineP99.toFixed(2)} ms)` });
            this.canary.rebaseline(idleP99);
            this.canary.slowAboveMs = this.budget();
            why = await this.reason();
          }
          this.canary.idle = [];
        }
      }
    } finally {
      if (this.canary) this.canary.idle = null;
    }
    this.onEvent?.({ state: 'resumed', reason: 'healthy again', pausedMs: Date.now() - started });
  }
}

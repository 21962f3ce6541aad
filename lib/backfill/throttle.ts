import type { Db } from '../db/db.js';
import { wakeMs, type CanaryProbe } from './canary.js';
import { busyFraction, MIN_BUSY_PROBES, restAfter, START_FRACTION, TAIL_SHARE } from './pacer.js';
import { sleep } from '../db/timing.js';

/** A user-supplied check: true (or { ok: true }) lets the backfill go on; anything else pauses it. */
export type HealthCheck = () => Promise<boolean | { readonly ok: boolean; readonly reason?: string }>;

export interface ThrottleOptions {
  /** Pause while any standby replays more than this far behind (pg_stat_replication). null = do not look. */
  readonly maxReplicationLagMs: number | null;
  readonly healthCheck?: HealthCheck;
  /** Canary p99 may reach baseline × budget (and at least baseline + slackMs). */
  readonly canaryBudget: number;
  readonly canarySlackMs: number;
  /** How often lag and the health check are asked, at most. */
  readonly checkEveryMs: number;
  /** A busy share set by the operator (BackfillOptions.pace), in place of the canary's. */
  readonly fixedPace?: number;
}

export interface ThrottleEvent {
  /**
   * paused / resumed: the backfill is held (lag, health check, the canary's tail) and goes on again; rebaselined:
   * the canary's baseline moved while it was held; paced: the share of time the backfill may be busy changed.
   */
  readonly state: 'paused' | 'resumed' | 'rebaselined' | 'paced';
  readonly reason: string;
  /** For 'resumed': how long the pause lasted. */
  readonly pausedMs?: number;
  /** For 'paced': the share of the time batches may run (1 = no rest). */
  readonly busyFraction?: number;
}


/**
 * Decides, before every batch, whether the database can take another one now, and after every batch how long to rest.
 * While it cannot, the backfill waits between batches, holding no locks and no open transaction.
 */
export class Throttle {
  private lastCheck = 0;
  private cached: string | null = null;
  private lastPace: number | null = null;
  private fraction = START_FRACTION;
  private busyAtChange = 0;

  constructor(
    private readonly db: Db,
    private readonly opts: ThrottleOptions,
    private readonly canary: CanaryProbe | null,
    private readonly onEvent?: (e: ThrottleEvent) => void,
  ) {}

  /** Probe time above which a canary probe counts as slow; null while the canary has no baseline yet. */
  budget(): number | null {
    if (!this.canary) return this.opts.canarySlackMs;
    const base = this.canary.baselineP99;
    return base === null ? null : Math.max(base * this.opts.canaryBudget, base + this.opts.canarySlackMs);
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
   * The p99 promise over the tail window: more than 1 % of its probes over budget means the p99 over that stretch is
   * over budget, however short each slow spell was. The pacer keeps the share under this; should it get past
   * (a burst of the application's own), the backfill waits until enough fast probes have come in.
   */
  private canaryReason(): string | null {
    const budget = this.budget();
    if (!this.canary || this.canary.all.size < 100 || budget === null) return null;
    const share = this.canary.all.shareAbove(budget);
    if (share !== null && share > TAIL_SHARE) {
      return `${(share * 100).toFixed(1)} % of canary probes over budget ${budget.toFixed(2)} ms lately (at most 1 % keeps the p99 within it; baseline ${(this.canary.baselineP99 ?? 0).toFixed(2)} ms)`;
    }
    return null;
  }

  /** Returns once the backfill may run a batch; returns early when `signal` aborts. */
  async wait(signal?: AbortSignal): Promise<void> {
    let why = await this.reason();
    if (!why) return;
    const started = Date.now();
    this.onEvent?.({ state: 'paused', reason: why });
    // While held, every canary probe is idle: the baseline follows what the application gets without the backfill,
    // so a load that changed on its own (not our doing) moves the budget instead of stalling the backfill for good.
    const before = this.canary?.baselineP99 ?? 0;
    while (why && !signal?.aborted) {
      await sleep(100, signal);
      why = await this.reason();
    }
    const base = this.canary?.baselineP99 ?? 0;
    if (this.canary && before > 0 && Math.abs(base - before) / before > 0.1) {
      this.onEvent?.({ state: 'rebaselined', reason: `canary p99 ${base.toFixed(2)} ms with the backfill held: the new baseline (was ${before.toFixed(2)} ms)` });
    }
    this.onEvent?.({ state: 'resumed', reason: 'healthy again', pausedMs: Date.now() - started });
  }

  /** Rests after a batch that took `batchMs`, as long as the canary says the application can take (none without one). */
  async rest(batchMs: number, workers: number, signal?: AbortSignal): Promise<void> {
    if (this.opts.fixedPace !== undefined) {
      if (this.lastPace === null) {
        this.lastPace = this.opts.fixedPace;
        this.onEvent?.({ state: 'paced', busyFraction: this.opts.fixedPace, reason: this.opts.fixedPace >= 1 ? 'batches back to back (--pace off)' : `batches ${(this.opts.fixedPace * 100).toFixed(0)} % of the time (--pace)` });
      }
      const ms = restAfter(batchMs, this.opts.fixedPace, workers, 0);
      if (ms > 0) await sleep(ms, signal);
      return;
    }
    if (!this.canary) return;
    const ms = restAfter(batchMs, this.pace(), workers, wakeMs(batchMs));
    if (ms > 0) await sleep(ms, signal);
  }

  /** The share of the time batches may run now (1 without a canary), from what the canary has measured so far. */
  pace(): number {
    if (this.opts.fixedPace !== undefined) return this.opts.fixedPace;
    if (!this.canary) return 1;
    const budget = this.budget();
    // No baseline yet (the first second or so): the start duty, a tenth of the time, while idle probes come in.
    if (budget === null) return this.fraction;
    const busy = this.canary.busy;
    const wanted = busyFraction({ sBusy: busy.shareAbove(budget), busyProbes: busy.size, sIdle: this.canary.idle.shareAbove(budget) });
    // Down at once; up at most ×2, and only on fresh evidence: MIN_BUSY_PROBES probes measured at the present duty
    // (no slow probe among a few dozen says little about a 1 % share, so a run of luck cannot open the throttle all the way).
    if (wanted < this.fraction || (wanted > this.fraction && this.canary.busyProbes - this.busyAtChange >= MIN_BUSY_PROBES)) {
      this.fraction = Math.min(wanted, this.fraction * 2);
      this.busyAtChange = this.canary.busyProbes;
    }
    const fraction = this.fraction;
    const last = this.lastPace;
    if (last === null || fraction / last >= 1.5 || last / fraction >= 1.5 || (fraction >= 1) !== (last >= 1)) {
      this.lastPace = fraction;
      this.onEvent?.({
        state: 'paced',
        busyFraction: fraction,
        reason:
          fraction >= 1
            ? 'batches back to back: the canary is not slowed by them'
            : `batches ${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)} % of the time: ${pct(busy.shareAbove(budget))} of canary probes during batches and ${pct(this.canary.idle.shareAbove(budget))} between them over budget ${budget.toFixed(2)} ms`,
      });
    }
    return fraction;
  }
}

const pct = (s: number | null) => (s === null ? '?' : `${(s * 100).toFixed(1)} %`);

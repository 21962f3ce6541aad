import type { Db } from '../db/db.js';
import { wakeMs, type CanaryProbe, type ProbeSeries } from './canary.js';
import { otherClients } from '../postgres/activity-sql.js';
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
  /**
   * Whether the canary paces only while other clients use the server (default true): with none, the canary's probes
   * are slowed by our own batches and nobody else's requests, and a backfill that throttled itself then would only
   * take longer. false paces on the probes alone (tests of the pacer itself).
   */
  readonly onlyUnderTraffic?: boolean;
  /** Rows in the table (an estimate), for the cap on a batch's rows under traffic; 0 = no cap. */
  readonly tableRows?: number;
  /** The smallest batch the cap may ask for. */
  readonly minBatchRows?: number;
}

/**
 * Under traffic, a batch locks at most this share of the table's rows, and at least LOCKED_FLOOR rows. An
 * application's write to a row that a running batch has updated waits until the batch commits; with writes spread over
 * the table, about half this share of them (times the share of the time batches run: a batch's rows are locked one by
 * one as it goes) meet a locked row, so a cap under 1 % keeps those waits out of the writes' p99 whatever a batch
 * takes. 50 000-row batches on a 1M-row table (5 %) put the waits in it: the peer benchmark's writes ran at 8× their
 * p99 without a backfill.
 */
export const LOCKED_SHARE = 0.005;
/** 1000 rows commit within a few milliseconds: a wait that short stays within any write's budget, and is pgroll's batch. */
export const LOCKED_FLOOR = 1000;

/**
 * Under traffic, a batch also holds its row locks at most about this long (the sizer's recent rows per millisecond
 * decide how many rows that is, never below LOCKED_FLOOR): a write that meets a locked row waits for the batch's
 * commit, so the batch's duration, not only its share of the table, is what such a write pays. The peer benchmark's
 * writes ran at 4× their p99 with 4 600-row batches of about 40 ms each beside pgroll's 1.0× with 1000-row batches.
 */
export const LOCKED_MS = 15;

/** After the last sight of another client, the backfill keeps pacing this long (traffic comes in bursts). */
export const TRAFFIC_MEMORY_MS = 5000;

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
  /** When another client was last seen using the server; null before the first look. */
  private trafficSeenAt: number | null = null;
  private lookedForTraffic = false;
  private wasQuiet = false;

  constructor(
    private readonly db: Db,
    private readonly opts: ThrottleOptions,
    private readonly canary: CanaryProbe | null,
    private readonly onEvent?: (e: ThrottleEvent) => void,
  ) {}

  /** Probe time above which a probe of `series` counts as slow; null while it has no baseline yet. */
  budget(series?: ProbeSeries): number | null {
    const base = (series ?? this.canary?.reads)?.baselineP99;
    if (base === undefined) return this.opts.canarySlackMs;
    return base === null ? null : Math.max(base * this.opts.canaryBudget, base + this.opts.canarySlackMs);
  }

  /**
   * False while no other client has used the server for TRAFFIC_MEMORY_MS: then nothing paces or holds the backfill
   * on the canary's account. True before the first look and when the canary paces regardless.
   */
  get underTraffic(): boolean {
    if (this.opts.onlyUnderTraffic === false || !this.lookedForTraffic) return true;
    return this.trafficSeenAt !== null && Date.now() - this.trafficSeenAt < TRAFFIC_MEMORY_MS;
  }

  private async lookForTraffic(): Promise<void> {
    if (!this.canary || this.opts.onlyUnderTraffic === false || this.opts.fixedPace !== undefined) return;
    try {
      // A second look confirms the first: a pooled connection of ours opened while the first look ran is known as
      // ours only once it is open (one run in eight took it for the application and paced an idle server for 5 s).
      const others = () => otherClients(this.db);
      if ((await others()) > 0 && (await sleep(50).then(others)) > 0) this.trafficSeenAt = Date.now();
      this.lookedForTraffic = true;
    } catch {
      // no view of pg_stat_activity: pace on the probes as if there were traffic
      this.lookedForTraffic = false;
    }
    const quiet = !this.underTraffic;
    if (quiet !== this.wasQuiet && this.canary) {
      this.wasQuiet = quiet;
      if (!quiet) {
        // Traffic is back: what the probes measured without it says nothing of what batches cost it now.
        for (const series of this.canary.series) series.clear();
        this.fraction = START_FRACTION;
        this.busyAtChange = this.busyProbesSoFar();
      }
      this.announce(quiet ? 1 : this.fraction, quiet ? 'batches back to back: no other client is using the server' : 'another client is using the server: the canary paces the batches again');
    }
  }

  /** Why the backfill should wait now, or null. */
  async reason(): Promise<string | null> {
    const now = Date.now();
    if (now - this.lastCheck >= this.opts.checkEveryMs) {
      this.lastCheck = now;
      await this.lookForTraffic();
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
    if (!this.canary || !this.underTraffic) return null;
    for (const series of this.canary.series) {
      const budget = this.budget(series);
      if (series.all.size < 100 || budget === null) continue;
      const share = series.all.shareAbove(budget);
      if (share !== null && share > TAIL_SHARE) {
        return `${(share * 100).toFixed(1)} % of canary ${series.kind}s over budget ${budget.toFixed(2)} ms lately (at most 1 % keeps the p99 within it; baseline ${(series.baselineP99 ?? 0).toFixed(2)} ms)`;
      }
    }
    return null;
  }

  /**
   * The most rows a batch may take now: under traffic, LOCKED_SHARE of the table and LOCKED_MS of the batches' recent
   * speed (`rowsPerMs`; at least LOCKED_FLOOR either way), so few of the application's writes ever wait on a batch's
   * row locks, and not for long; with none, or no canary, no cap.
   */
  batchCap(rowsPerMs?: number | null): number {
    if (!this.canary || !this.underTraffic || !this.opts.tableRows || this.opts.fixedPace !== undefined) return Infinity;
    const floor = Math.max(this.opts.minBatchRows ?? 100, LOCKED_FLOOR);
    const byShare = Math.max(floor, Math.round(this.opts.tableRows * LOCKED_SHARE));
    return rowsPerMs ? Math.min(byShare, Math.max(floor, Math.round(rowsPerMs * LOCKED_MS))) : byShare;
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
    if (!this.canary || !this.underTraffic) return 1;
    // Each kind of probe asks for its duty; the backfill gets the smaller. A kind with no baseline yet (the first
    // second or so) asks for the start duty, a tenth of the time, while its idle probes come in.
    let wanted = 1;
    let why = '';
    for (const series of this.canary.series) {
      const budget = this.budget(series);
      const busy = series.busy;
      const w = budget === null ? this.fraction : busyFraction({ sBusy: busy.shareAbove(budget), busyProbes: busy.size, sIdle: series.idle.shareAbove(budget) });
      if (w < wanted || why === '') {
        if (w < wanted) wanted = w;
        why = budget === null ? `no ${series.kind} baseline yet` : `${pct(busy.shareAbove(budget))} of canary ${series.kind}s during batches and ${pct(series.idle.shareAbove(budget))} between them over budget ${budget.toFixed(2)} ms`;
      }
    }
    // Down at once; up at most ×2, and only on fresh evidence: MIN_BUSY_PROBES probes measured at the present duty
    // (no slow probe among a few dozen says little about a 1 % share, so a run of luck cannot open the throttle all
    // the way).
    const fresh = this.busyProbesSoFar();
    if (wanted < this.fraction || (wanted > this.fraction && fresh - this.busyAtChange >= MIN_BUSY_PROBES)) {
      this.fraction = Math.min(wanted, this.fraction * 2);
      this.busyAtChange = fresh;
    }
    const fraction = this.fraction;
    this.announce(fraction, fraction >= 1 ? 'batches back to back: the canary is not slowed by them' : `batches ${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)} % of the time: ${why}`);
    return fraction;
  }

  /** Busy probes of every kind measured so far: the mark that fresh evidence is counted from. */
  private busyProbesSoFar(): number {
    return (this.canary?.series ?? []).reduce((n, series) => n + series.busyProbes, 0);
  }

  /** Tells of a duty that moved by half or more, or to or from back to back. */
  private announce(fraction: number, reason: string): void {
    const last = this.lastPace;
    if (last === null || fraction / last >= 1.5 || last / fraction >= 1.5 || (fraction >= 1) !== (last >= 1)) {
      this.lastPace = fraction;
      this.onEvent?.({ state: 'paced', busyFraction: fraction, reason });
    }
  }
}

const pct = (s: number | null) => (s === null ? '?' : `${(s * 100).toFixed(1)} %`);

import type { Knex } from 'knex';
import type { SqlParam } from '../db/db.js';
import { sleep, percentile } from '../db/timing.js';
import { loadSqlParser } from '../postgres/sql-ast.js';
import { isOwnStatement } from '../postgres/stat-statements.js';
import { ownEntrySql } from '../postgres/statement-kind.js';

export interface ProbeOptions {
  /** Time between probes. */
  readonly intervalMs: number;
  /** p50 / p99 are taken over the probes of this last stretch. */
  readonly windowMs: number;
  /** Idle probes (none during a batch or its wake) whose p99 is the first baseline. */
  readonly baselineSamples: number;
  /** statement_timeout of one probe: a probe stuck behind a lock counts as this slow instead of stopping the loop. */
  readonly timeoutMs: number;
  /**
   * false behind a transaction pooler: a session SET there would stay behind on whichever server session ran it, for
   * the application connection that gets it next, so the probe runs without its statement_timeout. Default true.
   */
  readonly sessionSettings?: boolean;
  /**
   * Told the server process of each connection the probe opens (outside the pool), so the backfill's look for other
   * clients does not take the probe for the application in the moment before its application_name is set.
   */
  readonly onConnect?: (pid: number) => void;
}

export interface ProbeTarget {
  /** What the probe does, in words, for breach explanations ("reads of public.users by key"). */
  readonly label: string;
  readonly sql: string;
  /** Parameter sets the probe cycles through (sampled keys); empty for a query without parameters. */
  readonly params: readonly (readonly SqlParam[])[];
}

interface RawConnection {
  query(text: string, values?: readonly unknown[]): Promise<unknown>;
  readonly processID?: number;
}

interface RawConnectionClient {
  acquireRawConnection(): Promise<RawConnection>;
  destroyRawConnection(c: RawConnection): Promise<void>;
}


/** Idle probes needed before their p99 replaces the first baseline (a few dozen probes say little about a p99). */
export const IDLE_FOR_BASELINE = 200;
/** The rolling baseline is the p99 of the idle probes of this last stretch: the application's load as it is now. */
export const BASELINE_SPAN_MS = 60_000;

/**
 * The monitor's canary: one read the application does (by default a row by key of the table being backfilled),
 * timed in a loop on a connection of its own, outside the pool, so the backfill's workers never wait for it and it
 * never waits for them. The backfill engine has a canary of its own that steers its speed; this one is what the
 * thresholds, the metrics and the report look at, and it keeps running while the backfill is paused.
 */
export class LatencyProbe {
  private conn: RawConnection | null = null;
  /** target.sql as sent: see start(). */
  private sql: string;
  private running = false;
  private loop: Promise<void> | null = null;
  private next = 0;
  private window: { at: number; ms: number }[] = [];
  private inFlightSince: number | null = null;
  private idle: { at: number; ms: number }[] = [];
  private firstBaselineP99 = 0;
  private cachedBaseline: { n: number; at: number; p99: number } | null = null;
  baselineP50Ms = 0;
  failures = 0;
  /**
   * Whether a batch of the backfill is running or has just ended (the monitor knows; it stands before each batch and
   * hears of its end). Probes taken then measure the backfill's cost, not the application's own load: no baseline.
   */
  busy: () => boolean = () => false;
  /**
   * Set while the canary is over its limit: idle probes then do not move the baseline, or a slowdown would raise its
   * own bar and be judged against itself.
   */
  frozen = false;
  /** Told once, when the first baseline is known. */
  onBaseline?: (p99Ms: number) => void;

  constructor(
    private readonly knex: Knex,
    readonly target: ProbeTarget,
    private readonly opts: ProbeOptions,
    private readonly onSample?: (ms: number) => void,
    private readonly onError?: (err: Error) => void,
  ) {
    this.sql = target.sql;
  }

  /**
   * Opens the connection and starts probing; false when no connection could be opened. The backfill does not wait for
   * a baseline: it is the p99 of the first `baselineSamples` idle probes (taken between batches, which run a tenth of
   * the time at first), so it measures the application without the backfill, as one taken before the first batch did.
   */
  async start(): Promise<boolean> {
    // The probe reads what the application reads, in the application's shape (`SELECT * FROM t WHERE id = $1`); in a
    // pg_stat_statements entry of its own (a `_zd_canary` CTE), it is neither counted as a user of a column a contract
    // removes, nor hides one, nor is taken for one of the application's top queries by the relative triggers.
    // The default target (batch-sql.ts keyProbeSql) comes wrapped already; only other SQL needs the parser loaded.
    // Without the parser (its WebAssembly failed to load) the probe still times its read, in the shared entry.
    if (!isOwnStatement(this.target.sql)) {
      await loadSqlParser().catch(() => undefined);
      this.sql = ownEntrySql(this.target.sql, '_zd_canary');
    }
    const client = this.knex.client as unknown as RawConnectionClient;
    try {
      this.conn = await client.acquireRawConnection();
      if (typeof this.conn.processID === 'number') this.opts.onConnect?.(this.conn.processID);
      await this.configureSession(true);
    } catch (e) {
      this.onError?.(e as Error);
      return false;
    }
    for (let i = 0; i < 3; i++) await this.probe(); // plan and cache warm-up
    this.running = true;
    this.loop = this.run();
    return true;
  }

  private async probe(): Promise<number> {
    const params = this.target.params.length > 0 ? this.target.params[this.next++ % this.target.params.length] : undefined;
    const started = performance.now();
    this.inFlightSince = Date.now();
    try {
      await this.conn!.query(this.sql, params ? [...params] : undefined);
    } catch (e) {
      // A probe cancelled by its statement_timeout was slow, not broken: it counts with the time it took.
      if ((e as { code?: string }).code !== '57014') {
        this.failures++;
        this.onError?.(e as Error);
        await this.reconnectIfLost(e);
      }
    } finally {
      this.inFlightSince = null;
    }
    return performance.now() - started;
  }

  private async configureSession(named: boolean): Promise<void> {
    if (this.opts.sessionSettings === false) return;
    await this.conn!.query(`SET statement_timeout = ${Math.max(1, Math.round(this.opts.timeoutMs))}`);
    if (named) await this.conn!.query(`SET application_name = 'umzug-zero-downtime canary'`);
  }

  private async reconnectIfLost(e: unknown): Promise<void> {
    if (!/terminat|closed|ECONNRESET|EPIPE|Connection/i.test(String((e as Error)?.message))) return;
    const client = this.knex.client as unknown as RawConnectionClient;
    await client.destroyRawConnection(this.conn!).catch(() => undefined);
    await sleep(200);
    try {
      this.conn = await client.acquireRawConnection();
      if (typeof this.conn.processID === 'number') this.opts.onConnect?.(this.conn.processID);
      await this.configureSession(false);
    } catch {
      // the next probe fails again and comes back here
    }
  }

  /**
   * The application's p99 without the backfill: 0 (not known yet) until `baselineSamples` idle probes are in, then
   * the first baseline, their p99, until enough idle probes are in; then the p99 of the idle probes of the last BASELINE_SPAN_MS (as the pacer's baseline is the
   * p99 of its idle probes), so it follows the application's own load through the day.
   */
  get baselineP99Ms(): number {
    if (this.idle.length < IDLE_FOR_BASELINE) return this.firstBaselineP99;
    const last = this.idle[this.idle.length - 1]!.at;
    if (this.cachedBaseline?.n !== this.idle.length || this.cachedBaseline.at !== last) {
      this.cachedBaseline = { n: this.idle.length, at: last, p99: percentile(this.idle.map((x) => x.ms).sort((a, b) => a - b), 99) };
    }
    return this.cachedBaseline.p99;
  }

  /** Sets the baseline by hand (a rebaseline): the idle record starts afresh and replaces it again once enough is in. */
  set baselineP99Ms(ms: number) {
    this.firstBaselineP99 = ms;
    this.idle = [];
    this.cachedBaseline = null;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const busyAtStart = this.busy();
      const ms = await this.probe();
      const at = Date.now();
      this.window.push({ at, ms });
      while (this.window.length > 0 && this.window[0]!.at < at - this.opts.windowMs) this.window.shift();
      // Frozen only once the rolling baseline stands: a first baseline caught in a quiet moment must be able to rise
      // to the application's real load, or every window would stay over it and the breach would never close.
      if (!busyAtStart && !this.busy() && !(this.frozen && this.idle.length >= IDLE_FOR_BASELINE)) {
        this.idle.push({ at, ms });
        while (this.idle.length > 0 && this.idle[0]!.at < at - BASELINE_SPAN_MS) this.idle.shift();
        if (this.firstBaselineP99 === 0 && this.idle.length >= this.opts.baselineSamples) {
          const first = this.idle.map((x) => x.ms).sort((a, b) => a - b);
          this.firstBaselineP99 = Math.max(percentile(first, 99), 0.001);
          this.baselineP50Ms = percentile(first, 50);
          this.onBaseline?.(this.firstBaselineP99);
        }
      }
      this.onSample?.(ms);
      await sleep(this.opts.intervalMs);
    }
  }

  /** p50 and p99 of the recent window; null while it holds too few probes to say (fewer than 10). */
  recent(): { p50Ms: number; p99Ms: number; samples: number } | null {
    const now = Date.now();
    const ms = this.window.filter((s) => s.at >= now - this.opts.windowMs).map((s) => s.ms);
    // A probe still waiting (behind a lock, say) is already at least this slow: it must not go unseen until it ends.
    if (this.inFlightSince !== null && this.running) ms.push(now - this.inFlightSince);
    if (ms.length < 10) return null;
    ms.sort((a, b) => a - b);
    return { p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99), samples: ms.length };
  }

  get windowMs(): number {
    return this.opts.windowMs;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    if (this.conn) {
      const client = this.knex.client as unknown as RawConnectionClient;
      await client.destroyRawConnection(this.conn).catch(() => undefined);
      this.conn = null;
    }
  }
}

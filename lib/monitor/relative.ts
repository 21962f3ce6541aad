import type { Db } from '../db/db.js';
import { loadSqlParser } from '../postgres/sql-ast.js';
import { OWN_STATEMENT_MARKER, ownDb, pgStatStatements, type Pgss } from '../postgres/stat-statements.js';
import { isApplicationDataStatement } from '../postgres/statement-kind.js';
import {
  checkErrorRatio,
  checkQueryLatency,
  errorRatio,
  queryLatencies,
  queryLatencyLimitMs,
  type Finding,
  type QueryLatency,
  type ResolvedThresholds,
  type StatementCounters,
  type XactCounters,
} from './thresholds.js';

export interface RelativeSettings {
  /** Each judgement covers the deltas of this last stretch. */
  readonly windowMs: number;
  /** How many of the application's queries are watched: the most called before the phase. */
  readonly top: number;
  /** Still over with the backfill paused this long: the application is slow for reasons of its own, the window becomes the baseline. */
  readonly rebaselineAfterMs: number;
  /** The application's own error ratio (0..1) now, used instead of pg_stat_database. */
  readonly errorRate?: () => Promise<number>;
}

/** What one window showed, for the thresholds, the state schema and the report. */
export interface RelativeWindow {
  readonly latencies: readonly QueryLatency[];
  readonly latency: Finding | null;
  readonly error: { readonly ratio: number; readonly baseline: number; readonly xacts: number | null; readonly finding: Finding | null } | null;
}

const MARK = `/* ${OWN_STATEMENT_MARKER} monitor */`;

/**
 * The last note each database's watches told (null: none, the trigger was on). A migration of five changes starts
 * five watches, and `up` over several migrations more: the same "pg_stat_statements is not installed" each time is
 * noise in the log, so a watch tells its note only when it differs from the last one told.
 */
const told = new WeakMap<Db, string | null>();

/**
 * The relative triggers of one phase (a backfill the monitor watches). At the start, a baseline of what the
 * application does before the phase:
 * - its top queries by calls in pg_stat_statements (this database, top level, not ours: `_zd_` names, the
 *   `umzug-zero-downtime` marker, the state schema's statements, nothing but data statements), each with its mean
 *   execution time per call so far: pg_stat_statements keeps no history, and the backfill does not wait for a
 *   baseline window, so the baseline is the mean over everything since its counters were last reset;
 * - the database's share of rolled-back transactions so far (pg_stat_database), or the application's own figure
 *   (`monitor.errorRate`) at the start.
 * Then every window: the deltas of the same counters over the window, against those baselines.
 */
export class RelativeWatch {
  private pgss: Extract<Pgss, { ok: true }> | null = null;
  /** Why the query-latency trigger is off (or has nothing to watch), when it is. */
  reason: string | null = null;
  /**
   * The reason, when it is news: the monitor logs it (`relative-note`). null when the trigger is on, or when the last
   * watch of this database already told the same (see `told`).
   */
  note: string | null = null;
  private baseline = new Map<string, { meanMs: number; calls: number }>();
  private before = new Map<string, StatementCounters>();
  private xactsBefore: XactCounters | null = null;
  private ownBefore: XactCounters = { commits: 0, rollbacks: 0 };
  errorBaseline = 0;
  private errorSource = '';
  private reads = 0;
  last: RelativeWindow | null = null;

  constructor(
    private readonly db: Db,
    readonly settings: RelativeSettings,
    private readonly stateSchema: string,
    /** Our own transactions so far (batches, probes; retried batches, failed probes), left out of the error ratio. */
    private readonly own: () => XactCounters,
  ) {}

  async start(): Promise<void> {
    const p = await pgStatStatements(this.db).catch((e: unknown) => ({ ok: false as const, problem: (e as Error).message }));
    if (p.ok) {
      this.pgss = p;
      await loadSqlParser();
      const all = await this.statements(null);
      const top = [...all.values()].sort((a, b) => b.calls - a.calls).slice(0, this.settings.top);
      for (const s of top) this.baseline.set(s.queryid, { meanMs: s.calls > 0 ? s.totalMs / s.calls : 0, calls: s.calls });
      this.before = new Map(top.map((s) => [s.queryid, s]));
      if (top.length === 0) this.reason = 'the query-latency trigger has nothing to watch: pg_stat_statements showed no statement of the application before the phase';
    } else {
      this.reason = `the query-latency trigger is off: ${p.problem}`;
    }
    this.note = told.has(this.db) && told.get(this.db) === this.reason ? null : this.reason;
    told.set(this.db, this.reason);
    if (this.settings.errorRate) {
      this.errorBaseline = clampRatio(await this.settings.errorRate());
      this.errorSource = 'the application\'s own figure, monitor.errorRate';
    } else {
      const x = await this.xacts();
      this.xactsBefore = x;
      this.ownBefore = this.own();
      this.errorBaseline = x.commits + x.rollbacks > 0 ? x.rollbacks / (x.commits + x.rollbacks) : 0;
      this.errorSource = "pg_stat_database's rolled-back transactions of this database, without the backfill's own retries";
    }
  }

  /** Reads the counters again and judges the window since the last reading. */
  async tick(t: ResolvedThresholds): Promise<RelativeWindow> {
    let latencies: QueryLatency[] = [];
    if (this.pgss && this.baseline.size > 0) {
      const now = await this.statements([...this.baseline.keys()]);
      latencies = queryLatencies(this.baseline, this.before, now);
      this.before = now;
    }
    let error: RelativeWindow['error'] = null;
    if (this.settings.errorRate) {
      const ratio = clampRatio(await this.settings.errorRate());
      error = { ratio, baseline: this.errorBaseline, xacts: null, finding: checkErrorRatio({ ratio, baseline: this.errorBaseline, windowMs: this.settings.windowMs, xacts: null, source: this.errorSource }, t) };
    } else if (this.xactsBefore) {
      const x = await this.xacts();
      const own = this.own();
      const ownDelta = { commits: own.commits - this.ownBefore.commits, rollbacks: own.rollbacks - this.ownBefore.rollbacks };
      const r = errorRatio(this.xactsBefore, x, ownDelta, t.minCallsPerWindow);
      this.xactsBefore = x;
      this.ownBefore = own;
      if (r) {
        error = {
          ratio: r.ratio,
          baseline: this.errorBaseline,
          xacts: r.xacts,
          finding: checkErrorRatio({ ratio: r.ratio, baseline: this.errorBaseline, windowMs: this.settings.windowMs, xacts: r.xacts, source: this.errorSource }, t),
        };
      }
    }
    this.last = { latencies, latency: checkQueryLatency(latencies, t, this.settings.windowMs), error };
    return this.last;
  }

  /**
   * The last window becomes the baseline (the queries over their limit, and the error ratio): they stayed over with
   * the backfill paused, so the backfill is not their cause.
   */
  rebaseline(t: ResolvedThresholds): string {
    const parts: string[] = [];
    for (const q of this.last?.latencies ?? []) {
      if (q.meanMs > queryLatencyLimitMs(q.baselineMeanMs, t)) {
        this.baseline.set(q.queryid, { meanMs: q.meanMs, calls: q.calls });
        parts.push(`queryid ${q.queryid} ${q.baselineMeanMs.toFixed(2)} → ${q.meanMs.toFixed(2)} ms`);
      }
    }
    const e = this.last?.error;
    if (e?.finding) {
      this.errorBaseline = e.ratio;
      parts.push(`error ratio ${(e.baseline * 100).toFixed(2)} → ${(e.ratio * 100).toFixed(2)} %`);
    }
    return parts.join(', ');
  }

  /** Transactions of our own readings, for the monitor to leave out of the error ratio. */
  get ownReads(): number {
    return this.reads;
  }

  /** The application's statements' cumulative counters (summed over roles), all of them or those of `ids`. */
  private async statements(ids: string[] | null): Promise<Map<string, StatementCounters>> {
    const p = this.pgss!;
    this.reads++;
    const r = await this.db.query<{ queryid: string; query: string; calls: number; total_ms: number }>(
      `${MARK} SELECT s.queryid::text AS queryid, min(s.query) AS query, sum(s.calls)::float8 AS calls, sum(s.total_exec_time)::float8 AS total_ms
         FROM ${p.view} s WHERE ${ownDb(p)} AND ($1::bigint[] IS NULL OR s.queryid = ANY($1::bigint[]))
        GROUP BY s.queryid ORDER BY sum(s.calls) DESC LIMIT $2`,
      [ids, ids ? ids.length : Math.max(200, this.settings.top * 10)],
    );
    const out = new Map<string, StatementCounters>();
    for (const x of r.rows) {
      const q = x.query;
      // The same classifier as the contract's query gate: ours, the state schema's, utility statements and catalog
      // lookups are not the application's queries.
      if (ids === null && !isApplicationDataStatement(q, { stateSchema: this.stateSchema })) continue;
      out.set(x.queryid, { queryid: x.queryid, query: q, calls: Number(x.calls), totalMs: Number(x.total_ms) });
    }
    return out;
  }

  private async xacts(): Promise<XactCounters> {
    this.reads++;
    const r = await this.db.query<{ commits: string; rollbacks: string }>(
      `${MARK} SELECT xact_commit::text AS commits, xact_rollback::text AS rollbacks FROM pg_stat_database WHERE datname = current_database()`,
    );
    return { commits: Number(r.rows[0]?.commits ?? 0), rollbacks: Number(r.rows[0]?.rollbacks ?? 0) };
  }
}

function clampRatio(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}

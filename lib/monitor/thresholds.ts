import { DEFAULT_CANARY } from '../backfill/keyset.js';
import { formatDuration } from '../db/duration.js';

/** The monitor's defaults (the canary window's is the pacer's tail window): the code's, which the schema's descriptions show. */
export const MONITOR_DEFAULTS = Object.freeze({ intervalMs: 50, baselineSamples: 30, timeoutMs: 2000, rebaselineAfterMs: 120_000, sampleEveryMs: 5000, relativeWindowMs: 10_000, relativeTop: 20 });

export interface ResolvedThresholds {
  readonly mismatchRatio: number;
  readonly canaryFactor: number;
  readonly canaryMinIncreaseMs: number;
  readonly canarySustainedWindows: number;
  readonly maxErrors: number;
  readonly errorWindowMs: number;
  readonly noProgressMs: number;
  /** More than this many disagreeing rows is a breach, whatever their share (thresholds.maxMismatches). */
  readonly maxMismatches: number;
  /** An application query whose mean per call over a window exceeds baseline × this is slower than tolerated (1 + queryLatencyIncreasePercent / 100). */
  readonly queryLatencyFactor: number;
  /** ... and at least baseline + this (a query of 20 µs at 40 µs is noise, not a slowdown). */
  readonly queryLatencyMinIncreaseMs: number;
  /** The application's error ratio may rise this much over its baseline (errorRateIncreasePercent / 100, in points). */
  readonly errorRateIncrease: number;
  /** Fewer calls of a query (or transactions) than this in a window say nothing: no judgement. */
  readonly minCallsPerWindow: number;
}

/** The pacer's budget line, which the monitor's canary threshold defaults to. */
export interface CanaryBudget {
  readonly budget: number;
  readonly slackMs: number;
  /** The stretch over which the pacer keeps at most 1 % of probes over budget: the monitor's default canary window. */
  readonly tailWindowMs?: number;
}

/**
 * The defaults, with the canary line taken from the pacer's budget: the pacer keeps the p99 under baseline × budget,
 * so the monitor calls a breach only when that line is crossed and stays crossed. A stricter line (the old 2× of a
 * baseline of 30 quick probes) was crossed by every backfill under steady traffic, while the pacer was on budget.
 */
export function defaultThresholds(pacer: CanaryBudget = DEFAULT_CANARY): ResolvedThresholds {
  return Object.freeze({
    mismatchRatio: 0.01,
    canaryFactor: pacer.budget,
    canaryMinIncreaseMs: pacer.slackMs,
    canarySustainedWindows: 2,
    maxErrors: 20,
    errorWindowMs: 60_000,
    noProgressMs: 3_600_000,
    maxMismatches: 100,
    queryLatencyFactor: 1.5,
    queryLatencyMinIncreaseMs: 1,
    errorRateIncrease: 0.05,
    minCallsPerWindow: 20,
  });
}

export const DEFAULT_THRESHOLDS: ResolvedThresholds = defaultThresholds();

export type ThresholdName = 'mismatch' | 'canary' | 'error-rate' | 'no-progress' | 'query-latency' | 'error-ratio';

/** A threshold crossed: the numbers, and what they mean in plain words. */
export interface Finding {
  readonly threshold: ThresholdName;
  readonly value: number;
  readonly limit: number;
  readonly message: string;
}

const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
const ms = (x: number) => `${x < 10 ? x.toFixed(2) : x.toFixed(0)} ms`;

export function checkMismatch(r: { rowsChecked: number; mismatches: number }, t: ResolvedThresholds, what: string): Finding | null {
  if (r.rowsChecked <= 0) return null;
  const ratio = r.mismatches / r.rowsChecked;
  const overShare = ratio > t.mismatchRatio;
  const overCount = r.mismatches > t.maxMismatches;
  if (!overShare && !overCount) return null;
  return {
    threshold: 'mismatch',
    // The share, as before, when it is what is crossed; the count when only the count is.
    value: overShare ? ratio : r.mismatches,
    limit: overShare ? t.mismatchRatio : t.maxMismatches,
    message:
      `verify of ${what} found ${r.mismatches} of ${r.rowsChecked} rows (${pct(ratio)}) where the old and the new structure disagree; ` +
      `at most ${pct(t.mismatchRatio)} and at most ${t.maxMismatches} rows are tolerated. Something writes around the sync trigger (a session with ` +
      'session_replication_role = replica, a disabled trigger, a bulk load) or the change\'s expressions do not map old to new.',
  };
}

/** The p99 limit for a baseline: factor × baseline, and at least baseline + the minimum increase. */
export function canaryLimitMs(baselineMs: number, t: ResolvedThresholds): number {
  return Math.max(baselineMs * t.canaryFactor, baselineMs + t.canaryMinIncreaseMs);
}

/**
 * Whether the canary is over its limit now. Only over for `canarySustainedWindows` windows running (the monitor
 * keeps that count) is it a breach: checkCanary says so in words.
 */
export function canaryOver(s: { p99Ms: number; baselineMs: number }, t: ResolvedThresholds): boolean {
  return s.p99Ms > canaryLimitMs(s.baselineMs, t);
}

export function checkCanary(s: { p99Ms: number; p50Ms: number; baselineMs: number; windowMs: number; probe: string; overForMs?: number }, t: ResolvedThresholds): Finding | null {
  const limit = canaryLimitMs(s.baselineMs, t);
  if (s.p99Ms <= limit) return null;
  const sustained = s.overForMs !== undefined ? `, and has been over it for ${formatDuration(s.overForMs)}` : '';
  return {
    threshold: 'canary',
    value: s.p99Ms,
    limit,
    message:
      `the application's reads got slow: ${s.probe} took ${ms(s.p99Ms)} at the 99th percentile (median ${ms(s.p50Ms)}) over the last ` +
      `${formatDuration(s.windowMs)}, against a baseline of ${ms(s.baselineMs)} (the p99 of the application's own load between batches); the limit is ${ms(limit)} ` +
      `(${t.canaryFactor}× the baseline)${sustained}. A lock held on the table, a long transaction or the backfill's own load can cause it.`,
  };
}

export function checkErrors(byKind: ReadonlyMap<string, number>, t: ResolvedThresholds): Finding | null {
  const total = [...byKind.values()].reduce((a, b) => a + b, 0);
  if (total <= t.maxErrors) return null;
  const parts = [...byKind.entries()].filter(([, n]) => n > 0).map(([k, n]) => `${k} ×${n}`);
  return {
    threshold: 'error-rate',
    value: total,
    limit: t.maxErrors,
    message: `${total} errors in the last ${formatDuration(t.errorWindowMs)} (${parts.join(', ')}); at most ${t.maxErrors} are tolerated. The database is refusing or timing out work.`,
  };
}

export function checkStall(s: { lastProgressAt: number; now: number; rowsDone: number; totalEstimate: number; what: string }, t: ResolvedThresholds): Finding | null {
  const idle = s.now - s.lastProgressAt;
  if (idle <= t.noProgressMs) return null;
  const share = s.totalEstimate > 0 ? ` (${Math.min(100, (100 * s.rowsDone) / s.totalEstimate).toFixed(1)} % done)` : '';
  return {
    threshold: 'no-progress',
    value: idle,
    limit: t.noProgressMs,
    message:
      `the backfill of ${s.what} has not advanced for ${formatDuration(idle)}, since ${new Date(s.lastProgressAt).toISOString()}${share}; ` +
      `the limit is ${formatDuration(t.noProgressMs)}. Its process may be gone or blocked: \`umzug backfill\` resumes it where it stopped.`,
  };
}

// ---- relative triggers: the application's own queries and error ratio against a baseline taken before the phase ----

/** pg_stat_statements' cumulative counters of one statement (summed over roles), or of a baseline. */
export interface StatementCounters {
  readonly queryid: string;
  readonly query: string;
  readonly calls: number;
  readonly totalMs: number;
}

/** One application query over one window, against its baseline. */
export interface QueryLatency {
  readonly queryid: string;
  readonly query: string;
  /** Mean execution time per call before the phase. */
  readonly baselineMeanMs: number;
  readonly baselineCalls: number;
  /** Mean execution time per call over the window: Δ total_exec_time / Δ calls. */
  readonly meanMs: number;
  readonly calls: number;
  /** meanMs / baselineMeanMs. */
  readonly ratio: number;
}

/**
 * Each baseline query's mean over the window between two readings of the counters. pg_stat_statements has no
 * percentiles (and its stddev is cumulative, not per window): the mean per call stands in for the p99. A query
 * missing from either reading, or whose calls went down (evicted, or pg_stat_statements_reset()), says nothing.
 */
export function queryLatencies(
  baseline: ReadonlyMap<string, { readonly meanMs: number; readonly calls: number }>,
  before: ReadonlyMap<string, StatementCounters>,
  now: ReadonlyMap<string, StatementCounters>,
): QueryLatency[] {
  const out: QueryLatency[] = [];
  for (const [id, b] of baseline) {
    const a = before.get(id);
    const z = now.get(id);
    if (!a || !z) continue;
    const calls = z.calls - a.calls;
    const ms = z.totalMs - a.totalMs;
    if (calls <= 0 || ms < 0) continue;
    const meanMs = ms / calls;
    out.push({ queryid: id, query: z.query, baselineMeanMs: b.meanMs, baselineCalls: b.calls, meanMs, calls, ratio: b.meanMs > 0 ? meanMs / b.meanMs : Infinity });
  }
  return out;
}

/** The mean a query may reach: baseline × factor, and at least baseline + the minimum increase. */
export function queryLatencyLimitMs(baselineMeanMs: number, t: ResolvedThresholds): number {
  return Math.max(baselineMeanMs * t.queryLatencyFactor, baselineMeanMs + t.queryLatencyMinIncreaseMs);
}

/** The queries over their limit in a window with enough calls to say so (baseline and window alike), slowest first. */
export function slowQueries(lat: readonly QueryLatency[], t: ResolvedThresholds): QueryLatency[] {
  return lat
    .filter((q) => q.calls >= t.minCallsPerWindow && q.baselineCalls >= t.minCallsPerWindow && q.meanMs > queryLatencyLimitMs(q.baselineMeanMs, t))
    .sort((a, b) => b.ratio - a.ratio);
}

const oneLine = (q: string, max = 100) => {
  const s = q.replace(/\s+/g, ' ').trim();
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
};

/**
 * One query over its limit is a breach: a calls-weighted aggregate would let a hot fast query (the most calls) hide a
 * slower one the application waits on, and the breach should name the query that got slow.
 */
export function checkQueryLatency(lat: readonly QueryLatency[], t: ResolvedThresholds, windowMs: number): Finding | null {
  const slow = slowQueries(lat, t);
  const worst = slow[0];
  if (!worst) return null;
  const more = slow.length > 1 ? ` ${slow.length - 1} more of its top queries are over their limit too (${slow.slice(1, 4).map((q) => `"${oneLine(q.query, 60)}" ${q.ratio.toFixed(1)}×`).join(', ')}).` : '';
  return {
    threshold: 'query-latency',
    value: worst.ratio,
    limit: t.queryLatencyFactor,
    message:
      `the application's own query "${oneLine(worst.query)}" (pg_stat_statements queryid ${worst.queryid}) took ${ms(worst.meanMs)} per call on average over the last ` +
      `${formatDuration(windowMs)} (${worst.calls} calls), against ${ms(worst.baselineMeanMs)} before the phase: ${worst.ratio.toFixed(1)}× its baseline; ` +
      `the limit is ${ms(queryLatencyLimitMs(worst.baselineMeanMs, t))} (${Math.round((t.queryLatencyFactor - 1) * 100)} % slower, and at least ${ms(t.queryLatencyMinIncreaseMs)} more). ` +
      `pg_stat_statements keeps no percentiles, so the mean per call stands in for the p99.${more} ` +
      'A lock held on a table it reads, the backfill\'s own load on the disks or a changed plan can cause it.',
  };
}

/** Transactions counted by pg_stat_database (or our own of them). */
export interface XactCounters {
  readonly commits: number;
  readonly rollbacks: number;
}

/**
 * The application's share of rolled-back transactions between two readings of pg_stat_database, without our own:
 * the rollbacks we know we caused (retried batches, lock retries, failed probes) and the commits we know we made
 * (batches, probes, our own readings). null when fewer than `minXacts` application transactions ran.
 */
export function errorRatio(before: XactCounters, now: XactCounters, own: XactCounters, minXacts: number): { ratio: number; xacts: number; rollbacks: number } | null {
  const rollbacks = Math.max(0, now.rollbacks - before.rollbacks - own.rollbacks);
  const commits = Math.max(0, now.commits - before.commits - own.commits);
  const xacts = commits + rollbacks;
  if (xacts < minXacts || xacts <= 0) return null;
  return { ratio: rollbacks / xacts, xacts, rollbacks };
}

export function checkErrorRatio(s: { ratio: number; baseline: number; windowMs: number; xacts: number | null; source: string }, t: ResolvedThresholds): Finding | null {
  const limit = s.baseline + t.errorRateIncrease;
  if (!(s.ratio > limit)) return null;
  const n = s.xacts === null ? '' : ` (${s.xacts} transactions)`;
  return {
    threshold: 'error-ratio',
    value: s.ratio,
    limit,
    message:
      `the application's error rate rose: ${pct(s.ratio)} of its transactions failed over the last ${formatDuration(s.windowMs)}${n}, against ${pct(s.baseline)} before the phase ` +
      `(${s.source}); at most ${Math.round(t.errorRateIncrease * 10000) / 100} percentage points more is tolerated (limit ${pct(limit)}). ` +
      'Lock timeouts, deadlocks or statement timeouts caused by the change, or the application failing on the new structure, can cause it.',
  };
}

import { DEFAULT_CANARY } from '../backfill/keyset.js';
import { formatDuration } from '../engine/runner.js';

export interface ResolvedThresholds {
  readonly mismatchRatio: number;
  readonly canaryFactor: number;
  readonly canaryMinIncreaseMs: number;
  readonly canarySustainedWindows: number;
  readonly maxErrors: number;
  readonly errorWindowMs: number;
  readonly noProgressMs: number;
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
  });
}

export const DEFAULT_THRESHOLDS: ResolvedThresholds = defaultThresholds();

export type ThresholdName = 'mismatch' | 'canary' | 'error-rate' | 'no-progress';

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
  if (ratio <= t.mismatchRatio) return null;
  return {
    threshold: 'mismatch',
    value: ratio,
    limit: t.mismatchRatio,
    message:
      `verify of ${what} found ${r.mismatches} of ${r.rowsChecked} rows (${pct(ratio)}) where the old and the new structure disagree; ` +
      `at most ${pct(t.mismatchRatio)} is tolerated. Something writes around the sync trigger (a session with ` +
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

import { DEFAULT_CANARY } from '../backfill/keyset.js';
import { parseDuration } from '../db/duration.js';
import type { MonitorSettings } from './monitor.js';
import { resolveThresholds, type CanaryBudget, type ThresholdsConfig } from './thresholds.js';

/** `monitor` in the config: the canary and how often figures are recorded. */
export interface MonitorConfig {
  /** The monitor's canary: a read by key of the table being backfilled, unless `sql` gives another. false = none. */
  readonly canary?:
    | false
    | {
        /** A query the application runs often, without parameters (e.g. `SELECT * FROM users WHERE id = 42`). */
        readonly sql?: string;
        /** Time between probes. Default `50ms`. */
        readonly interval?: string | number;
        /**
         * p50/p99 are taken over this last stretch; a breach needs thresholds.canarySustainedWindows of them running.
         * Default: the pacer's tail window (20s), over which it keeps the p99 within budget, so both judge the same figure.
         */
        readonly window?: string | number;
        /** Probes for the first baseline, taken before the first batch, `interval` apart; the rolling baseline of probes between batches replaces it. Default 30. */
        readonly baselineSamples?: number;
        /** A probe stuck longer than this is cancelled and counts this slow. Default `2s`. */
        readonly timeout?: string | number;
        /**
         * Reads still over the limit after the backfill has been paused this long are slow for reasons of their own:
         * the baseline moves to them and the backfill goes on (the breach is closed saying so). Default `2m`.
         */
        readonly rebaselineAfter?: string | number;
      };
  /** How often a running backfill's figures are written for status and the report. Default `5s`. */
  readonly sampleEvery?: string | number;
}

const CANARY_KEYS = ['sql', 'interval', 'window', 'baselineSamples', 'timeout', 'rebaselineAfter'];

/** Validates `thresholds`, `autoRollback` and `monitor`; throws a TypeError naming the field. */
export function resolveMonitorSettings(thresholds: ThresholdsConfig | undefined, autoRollback: unknown, monitor: MonitorConfig | undefined, pacer?: CanaryBudget): MonitorSettings {
  if (autoRollback !== undefined && typeof autoRollback !== 'boolean') throw new TypeError(`autoRollback must be true or false, got ${JSON.stringify(autoRollback)}`);
  if (monitor !== undefined && (!monitor || typeof monitor !== 'object')) throw new TypeError('monitor must be an object');
  for (const k of Object.keys(monitor ?? {})) if (k !== 'canary' && k !== 'sampleEvery') throw new TypeError(`unknown key monitor.${k} (known: canary, sampleEvery)`);
  const c = monitor?.canary;
  let canary: MonitorSettings['canary'];
  if (c === false) canary = false;
  else if (c === undefined || (c && typeof c === 'object')) {
    for (const k of Object.keys(c ?? {})) if (!CANARY_KEYS.includes(k)) throw new TypeError(`unknown key monitor.canary.${k} (known: ${CANARY_KEYS.join(', ')})`);
    if (c?.sql !== undefined && (typeof c.sql !== 'string' || c.sql.trim() === '')) throw new TypeError('monitor.canary.sql must be a non-empty SQL string');
    const samples = c?.baselineSamples ?? 30;
    if (!Number.isInteger(samples) || samples < 1) throw new TypeError(`monitor.canary.baselineSamples must be a positive integer, got ${JSON.stringify(samples)}`);
    canary = {
      intervalMs: parseDuration(c?.interval ?? 50, 'monitor.canary.interval'),
      windowMs: parseDuration(c?.window ?? pacer?.tailWindowMs ?? DEFAULT_CANARY.tailWindowMs, 'monitor.canary.window'),
      baselineSamples: samples,
      timeoutMs: parseDuration(c?.timeout ?? 2000, 'monitor.canary.timeout'),
      rebaselineAfterMs: parseDuration(c?.rebaselineAfter ?? 120_000, 'monitor.canary.rebaselineAfter'),
      ...(c?.sql ? { sql: c.sql } : {}),
    };
    if (canary.windowMs <= 0 || canary.timeoutMs <= 0) throw new TypeError('monitor.canary.window and timeout must be longer than 0');
  } else throw new TypeError('monitor.canary must be false or an object');
  const sampleEveryMs = parseDuration(monitor?.sampleEvery ?? 5000, 'monitor.sampleEvery');
  if (sampleEveryMs <= 0) throw new TypeError('monitor.sampleEvery must be longer than 0');
  return {
    thresholds: resolveThresholds(thresholds, pacer),
    autoRollback: autoRollback ?? false,
    canary,
    sampleEveryMs,
    evaluateEveryMs: Math.min(1000, sampleEveryMs),
  };
}

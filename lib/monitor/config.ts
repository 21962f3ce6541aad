import { DEFAULT_CANARY } from '../backfill/keyset.js';
import type { ConfigFromSchema } from '../config-schema.js';
import { parseDuration } from '../db/duration.js';
import type { MonitorSettings } from './monitor.js';
import { DEFAULT_THRESHOLDS, defaultThresholds, type CanaryBudget, type ResolvedThresholds } from './thresholds.js';

/** `monitor` in the config (the canary and how often figures are recorded): its type, derived from CONFIG_SCHEMA. */
export type MonitorConfig = NonNullable<ConfigFromSchema['monitor']>;
/** `thresholds` in the config, derived from CONFIG_SCHEMA. */
export type ThresholdsConfig = NonNullable<ConfigFromSchema['thresholds']>;

/** The monitor's defaults (the canary window's is the pacer's tail window): the code's, which the schema's descriptions show. */
export const MONITOR_DEFAULTS = Object.freeze({ intervalMs: 50, baselineSamples: 30, timeoutMs: 2000, rebaselineAfterMs: 120_000, sampleEveryMs: 5000 });

/**
 * `thresholds`, `autoRollback` and `monitor`, as CONFIG_SCHEMA validated them (keys, types, bounds, durations longer
 * than 0), with the defaults filled in and durations in milliseconds.
 */
export function resolveMonitorSettings(thresholds: ThresholdsConfig | undefined, autoRollback: boolean | undefined, monitor: MonitorConfig | undefined, pacer?: CanaryBudget): MonitorSettings {
  const c = monitor?.canary;
  const sampleEveryMs = parseDuration(monitor?.sampleEvery ?? MONITOR_DEFAULTS.sampleEveryMs, 'monitor.sampleEvery');
  return {
    thresholds: resolveThresholds(thresholds, pacer),
    autoRollback: autoRollback ?? false,
    canary:
      c === false
        ? false
        : {
            intervalMs: parseDuration(c?.interval ?? MONITOR_DEFAULTS.intervalMs, 'monitor.canary.interval'),
            windowMs: parseDuration(c?.window ?? pacer?.tailWindowMs ?? DEFAULT_CANARY.tailWindowMs, 'monitor.canary.window'),
            baselineSamples: c?.baselineSamples ?? MONITOR_DEFAULTS.baselineSamples,
            timeoutMs: parseDuration(c?.timeout ?? MONITOR_DEFAULTS.timeoutMs, 'monitor.canary.timeout'),
            rebaselineAfterMs: parseDuration(c?.rebaselineAfter ?? MONITOR_DEFAULTS.rebaselineAfterMs, 'monitor.canary.rebaselineAfter'),
            ...(c?.sql ? { sql: c.sql } : {}),
          },
    sampleEveryMs,
    evaluateEveryMs: Math.min(1000, sampleEveryMs),
  };
}

/** `thresholds` as CONFIG_SCHEMA validated them (keys, types, ranges), with the defaults filled in and durations in milliseconds. */
export function resolveThresholds(input: ThresholdsConfig | undefined, pacer?: CanaryBudget): ResolvedThresholds {
  const d = pacer ? defaultThresholds(pacer) : DEFAULT_THRESHOLDS;
  if (input === undefined) return d;
  return {
    mismatchRatio: input.mismatchPercent === undefined ? d.mismatchRatio : input.mismatchPercent / 100,
    canaryFactor: input.canaryP99Factor ?? d.canaryFactor,
    canaryMinIncreaseMs: parseDuration(input.canaryMinIncrease ?? d.canaryMinIncreaseMs, 'thresholds.canaryMinIncrease'),
    canarySustainedWindows: input.canarySustainedWindows ?? d.canarySustainedWindows,
    maxErrors: input.maxErrors ?? d.maxErrors,
    errorWindowMs: parseDuration(input.errorWindow ?? d.errorWindowMs, 'thresholds.errorWindow'),
    noProgressMs: parseDuration(input.noProgressFor ?? d.noProgressMs, 'thresholds.noProgressFor'),
  };
}

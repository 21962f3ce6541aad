import { DEFAULT_CANARY } from '../backfill/keyset.js';
import type { ConfigFromSchema } from './schema.js';
import { parseDuration } from '../db/duration.js';
import type { MonitorSettings } from '../monitor/monitor.js';
import { DEFAULT_THRESHOLDS, defaultThresholds, MONITOR_DEFAULTS, type CanaryBudget, type ResolvedThresholds } from '../monitor/thresholds.js';

/** `monitor` in the config (the canary and how often figures are recorded): its type, derived from CONFIG_SCHEMA. */
export type MonitorConfig = NonNullable<ConfigFromSchema['monitor']>;
/** `thresholds` in the config, derived from CONFIG_SCHEMA. */
export type ThresholdsConfig = NonNullable<ConfigFromSchema['thresholds']>;


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
    relative:
      monitor?.relative === false
        ? false
        : {
            windowMs: parseDuration(monitor?.relative?.window ?? MONITOR_DEFAULTS.relativeWindowMs, 'monitor.relative.window'),
            top: monitor?.relative?.top ?? MONITOR_DEFAULTS.relativeTop,
            rebaselineAfterMs: parseDuration((c === false ? undefined : c?.rebaselineAfter) ?? MONITOR_DEFAULTS.rebaselineAfterMs, 'monitor.canary.rebaselineAfter'),
            ...(monitor?.errorRate ? { errorRate: monitor.errorRate } : {}),
          },
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
    maxMismatches: input.maxMismatches ?? d.maxMismatches,
    queryLatencyFactor: input.queryLatencyIncreasePercent === undefined ? d.queryLatencyFactor : 1 + input.queryLatencyIncreasePercent / 100,
    queryLatencyMinIncreaseMs: parseDuration(input.queryLatencyMinIncrease ?? d.queryLatencyMinIncreaseMs, 'thresholds.queryLatencyMinIncrease'),
    errorRateIncrease: input.errorRateIncreasePercent === undefined ? d.errorRateIncrease : input.errorRateIncreasePercent / 100,
    minCallsPerWindow: input.minCallsPerWindow ?? d.minCallsPerWindow,
  };
}

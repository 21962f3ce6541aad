import { parseDuration } from '../db/duration.js';
import type { BackfillOptions, CanarySettings } from './keyset.js';
import type { HealthCheck } from './throttle.js';

type Duration = string | number;

/** The `backfill` keys of the config beyond batchSize and pause; every one optional, every one validated. */
export interface BackfillTuning {
  /** Batch duration the adaptive sizer aims at. Default `200ms`. */
  readonly targetBatchDuration?: Duration;
  /** Bounds of the adaptive batch size (rows). Defaults 100 and 50 000. */
  readonly minBatchSize?: number;
  readonly maxBatchSize?: number;
  /** false keeps every batch at batchSize. Default true. */
  readonly adaptive?: boolean;
  /** statement_timeout of one batch; a batch past it is split in two and retried. Default `10s`. */
  readonly batchTimeout?: Duration;
  /** Workers per process (`umzug backfill --workers N` overrides). Default 1. */
  readonly workers?: number;
  /** Rows per chunk, the unit workers claim. Default 100 000. */
  readonly chunkRows?: number;
  /** Pause while a standby lags more than this (pg_stat_replication); null = ignore lag. Default `10s`. */
  readonly maxReplicationLag?: Duration | null;
  /** Your own check (error rate, queue depth…): the backfill pauses while it returns false or { ok: false }. */
  readonly healthCheck?: HealthCheck;
  /** Primary-key read timed before and during the backfill; false turns it off. */
  readonly canary?:
    | false
    | {
        /** The p99 may reach baseline × budget. Default 1.5. */
        readonly budget?: number;
        /** …and at least baseline + slack. Default `2ms`. */
        readonly slack?: Duration;
      };
}

const KNOWN = new Set(['batchSize', 'pause', 'targetBatchDuration', 'minBatchSize', 'maxBatchSize', 'adaptive', 'batchTimeout', 'workers', 'chunkRows', 'maxReplicationLag', 'healthCheck', 'canary']);

/** Validates the tuning keys; throws a TypeError naming the key. Returns only the keys that were given. */
export function resolveBackfillTuning(input: BackfillTuning | undefined): Partial<BackfillOptions> {
  if (input === undefined) return {};
  if (!input || typeof input !== 'object') throw new TypeError('backfill must be an object');
  for (const k of Object.keys(input)) if (!KNOWN.has(k)) throw new TypeError(`unknown key backfill.${k} (known: ${[...KNOWN].join(', ')})`);
  const int = (v: unknown, field: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new TypeError(`backfill.${field} must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const out: { -readonly [K in keyof BackfillOptions]?: BackfillOptions[K] } = {};
  if (input.targetBatchDuration !== undefined) {
    out.targetBatchMs = parseDuration(input.targetBatchDuration, 'backfill.targetBatchDuration');
    if (out.targetBatchMs <= 0) throw new TypeError('backfill.targetBatchDuration must be more than 0');
  }
  if (input.minBatchSize !== undefined) out.minBatchSize = int(input.minBatchSize, 'minBatchSize');
  if (input.maxBatchSize !== undefined) out.maxBatchSize = int(input.maxBatchSize, 'maxBatchSize');
  if ((out.minBatchSize ?? 100) > (out.maxBatchSize ?? 50_000)) throw new TypeError(`backfill.minBatchSize (${out.minBatchSize ?? 100}) is above maxBatchSize (${out.maxBatchSize ?? 50_000})`);
  if (input.adaptive !== undefined) {
    if (typeof input.adaptive !== 'boolean') throw new TypeError('backfill.adaptive must be true or false');
    out.adaptive = input.adaptive;
  }
  if (input.batchTimeout !== undefined) out.batchTimeoutMs = parseDuration(input.batchTimeout, 'backfill.batchTimeout');
  if (input.workers !== undefined) out.workers = int(input.workers, 'workers');
  if (input.chunkRows !== undefined) out.chunkRows = int(input.chunkRows, 'chunkRows');
  if (input.maxReplicationLag !== undefined) out.maxReplicationLagMs = input.maxReplicationLag === null ? null : parseDuration(input.maxReplicationLag, 'backfill.maxReplicationLag');
  if (input.healthCheck !== undefined) {
    if (typeof input.healthCheck !== 'function') throw new TypeError('backfill.healthCheck must be a function returning a promise of a boolean or { ok, reason }');
    out.healthCheck = input.healthCheck;
  }
  if (input.canary !== undefined) {
    if (input.canary === false) out.canary = false;
    else if (input.canary && typeof input.canary === 'object') {
      const c: { -readonly [K in keyof CanarySettings]?: CanarySettings[K] } = {};
      for (const k of Object.keys(input.canary)) if (k !== 'budget' && k !== 'slack') throw new TypeError(`unknown key backfill.canary.${k} (known: budget, slack)`);
      if (input.canary.budget !== undefined) {
        if (typeof input.canary.budget !== 'number' || !(input.canary.budget >= 1)) throw new TypeError(`backfill.canary.budget must be a number ≥ 1, got ${JSON.stringify(input.canary.budget)}`);
        c.budget = input.canary.budget;
      }
      if (input.canary.slack !== undefined) c.slackMs = parseDuration(input.canary.slack, 'backfill.canary.slack');
      out.canary = c;
    } else throw new TypeError('backfill.canary must be false or { budget?, slack? }');
  }
  return out;
}

/** What `--canary` and `--pace` say, as given on the command line (undefined: not given). */
export interface EmergencyFlags {
  readonly canary?: string | undefined;
  readonly pace?: string | undefined;
}

/**
 * `--canary off` (no canary probe: nothing paces or holds the backfill but replication lag and the health check) and
 * `--pace <fraction|off>` (batches a fixed share of the time; off = back to back), for a rollback that must not wait
 * on the application's read latency. `--canary on` and `--pace auto` are the configured behaviour.
 */
export function parseEmergencyFlags(flags: EmergencyFlags): Partial<BackfillOptions> {
  const out: { -readonly [K in keyof BackfillOptions]?: BackfillOptions[K] } = {};
  if (flags.canary !== undefined) {
    const v = flags.canary.trim().toLowerCase();
    if (v === 'off' || v === 'false') out.canary = false;
    else if (v !== 'on' && v !== 'true') throw new TypeError(`--canary must be on or off, got ${JSON.stringify(flags.canary)}. Nothing was run.`);
  }
  if (flags.pace !== undefined) {
    const v = flags.pace.trim().toLowerCase();
    if (v === 'off' || v === 'none') out.pace = 1;
    else if (v !== 'auto') {
      const f = v.endsWith('%') ? Number(v.slice(0, -1)) / 100 : Number(v);
      if (!Number.isFinite(f) || f <= 0 || f > 1) {
        throw new TypeError(`--pace must be a fraction in (0, 1] (0.5, 50%), off (batches back to back) or auto (the canary paces), got ${JSON.stringify(flags.pace)}. Nothing was run.`);
      }
      out.pace = f;
    }
  }
  return out;
}

export const CANARY_FLAG_HELP =
  'on (default) or off. off: no canary read is timed, so nothing paces or holds the backfill but replication lag and your health check (for an emergency rollback)';
export const PACE_FLAG_HELP =
  'auto (default: the canary paces), off (batches back to back), or a fraction of the time batches may run, e.g. 0.5 for half the time';

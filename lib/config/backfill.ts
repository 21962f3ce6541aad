import type { ConfigFromSchema } from './schema.js';
import { parseDuration } from '../db/duration.js';
import { DEFAULT_BACKFILL, type BackfillOptions } from '../backfill/keyset.js';

/** The `backfill` keys of the config (batchSize, pause and the tuning of the adaptive sizer, workers, throttle and canary): derived from CONFIG_SCHEMA. */
export type BackfillTuning = NonNullable<ConfigFromSchema['backfill']>;

/**
 * The `backfill` keys, as CONFIG_SCHEMA validated them (keys, types, bounds), in the engine's terms: durations in
 * milliseconds. Checks what the schema cannot (minBatchSize ≤ maxBatchSize, defaults counted); throws a TypeError naming
 * the key. Returns only the keys that were given.
 */
export function resolveBackfillTuning(input: BackfillTuning | undefined): Partial<BackfillOptions> {
  if (input === undefined) return {};
  const out: { -readonly [K in keyof BackfillOptions]?: BackfillOptions[K] } = {};
  const ms = (v: string | number, key: keyof BackfillTuning) => parseDuration(v, `backfill.${key}`);
  if (input.batchSize !== undefined) out.batchSize = input.batchSize;
  if (input.pause !== undefined) out.pauseMs = ms(input.pause, 'pause');
  if (input.targetBatchDuration !== undefined) out.targetBatchMs = ms(input.targetBatchDuration, 'targetBatchDuration');
  if (input.minBatchSize !== undefined) out.minBatchSize = input.minBatchSize;
  if (input.maxBatchSize !== undefined) out.maxBatchSize = input.maxBatchSize;
  const [min, max] = [out.minBatchSize ?? DEFAULT_BACKFILL.minBatchSize, out.maxBatchSize ?? DEFAULT_BACKFILL.maxBatchSize];
  if (min !== undefined && max !== undefined && min > max) throw new TypeError(`backfill.minBatchSize (${min}) is above maxBatchSize (${max})`);
  if (input.adaptive !== undefined) out.adaptive = input.adaptive;
  if (input.batchTimeout !== undefined) out.batchTimeoutMs = ms(input.batchTimeout, 'batchTimeout');
  if (input.workers !== undefined) out.workers = input.workers;
  if (input.idleWorkers !== undefined) out.idleWorkers = input.idleWorkers;
  if (input.chunkRows !== undefined) out.chunkRows = input.chunkRows;
  if (input.partitionWalk !== undefined) out.partitionWalk = input.partitionWalk;
  if (input.maxReplicationLag !== undefined) out.maxReplicationLagMs = input.maxReplicationLag === null ? null : ms(input.maxReplicationLag, 'maxReplicationLag');
  if (input.healthCheck !== undefined) out.healthCheck = input.healthCheck;
  if (input.canary === false) out.canary = false;
  else if (input.canary !== undefined) {
    const { budget, slack } = input.canary;
    out.canary = { ...(budget !== undefined ? { budget } : {}), ...(slack !== undefined ? { slackMs: parseDuration(slack, 'backfill.canary.slack') } : {}) };
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

import { RULE_IDS } from './lint/rules.js';
import type { BackfillOptions } from './backfill/keyset.js';
import { DEFAULT_BACKFILL, DEFAULT_CANARY } from './backfill/keyset.js';
import { resolveBackfillTuning } from './config/backfill.js';
import { parseDuration } from './db/duration.js';
import { DEFAULT_LOCK_SAFETY, type LockSafetyOptions } from './engine/executor.js';
import { DEFAULT_LEASE_TIMING, type LeaseTiming } from './engine/lease.js';
import type { PoolingMode } from './db/db.js';
import { resolveMonitorSettings } from './config/monitor.js';
import type { MonitorSettings } from './monitor/monitor.js';
import { CONFIG_DEFAULTS, validateConfig, type ConfigFromSchema } from './config/schema.js';
import { knexConnectionProblem } from './db/connection-check.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from './db/errors.js';
import type { KnexHistoryTable } from './postgres/knex-history.js';

export type { LogFn, ZeroDowntimeLogger } from './config/schema.js';

/** A duration option: "7d", "12h", "1h30m", "30s", "500ms", or a number of milliseconds. */
export type Duration = string | number;

/**
 * `zeroDowntime(config)` / umzug.config.*: the type of CONFIG_SCHEMA (lib/config/schema.ts), derived from it with
 * json-schema-to-ts, so an option is written once, there: its description, its default, what validates it.
 */
export type ZeroDowntimeConfig = ConfigFromSchema;

export interface ResolvedConfig {
  readonly migrations: readonly string[];
  readonly cwd: string;
  readonly schema: string;
  readonly stateSchema: string;
  readonly contractAfterMs: number;
  /** contract.requireNoRefs: a contract waits while the source mentions what it removes (see `umzug refs`). */
  readonly requireNoRefs: boolean;
  /**
   * contract.requireNoQueries: a contract waits while pg_stat_statements shows statements that used what it removes
   * since the cutover (lib/ops/queries.ts). 'auto': where pg_stat_statements is installed.
   */
  readonly requireNoQueries: boolean | 'auto';
  /** Where `umzug refs` looks: folders/files/globs (empty: cwd), globs left out, ORM property names per column. */
  readonly refs: { readonly src: readonly string[]; readonly ignore: readonly string[]; readonly fields: Readonly<Record<string, readonly string[]>> };
  readonly lock: LockSafetyOptions;
  readonly lockWaitMs: number;
  readonly leaseTiming: LeaseTiming;
  readonly pooling: 'auto' | PoolingMode;
  readonly backfill: BackfillOptions;
  readonly plainMigrations: 'umzug' | 'knex';
  readonly lint: { readonly level: 'error' | 'warn' | 'off'; readonly rules: Readonly<Record<string, 'error' | 'warn' | 'off'>> };
  readonly knexHistory: KnexHistoryTable | null;
  readonly createFolder: string;
  readonly monitor: MonitorSettings;
}

/** The folder part of a glob before its first wildcard (`db/migrations/*.ts` → `db/migrations`): where `create` writes. */
export function globBase(glob: string): string | null {
  const parts = glob.split('/');
  const fixed: string[] = [];
  for (const p of parts.slice(0, -1)) {
    if (/[*?{}[\]!]/.test(p)) break;
    fixed.push(p);
  }
  return fixed.length > 0 ? fixed.join('/') : null;
}

export class ConfigError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'config';
  override name = 'ConfigError';
}

/**
 * Throws a ConfigError when a Knex config (not an instance: that one is the caller's, already built) has a
 * connection that cannot work, naming the setting, rather than leaving pg's startup-packet error or Knex's
 * `Unable to acquire a connection` for the first query. Called where the Knex instance is made, after resolveConfig,
 * so a wrong option is reported first and resolveConfig stays a check of the options alone.
 */
export function checkKnexConnection(knex: ZeroDowntimeConfig['knex']): void {
  if (typeof knex === 'function') return;
  const problem = knexConnectionProblem(knex);
  if (problem) throw new ConfigError(`zeroDowntime(config): ${problem}`);
}

/**
 * Validates (the JSON Schema, once: unknown keys, types and bounds, every problem named by its path) and fills in
 * defaults.
 */
export function resolveConfig(config: ZeroDowntimeConfig): ResolvedConfig {
  // Every option against the JSON Schema in config/schema.ts (ajv): unknown keys, types and bounds, named by their path.
  validateConfig(config, (message) => new ConfigError(message));
  // What the schema cannot say (minBatchSize ≤ maxBatchSize, a lint rule's name) throws with the key's name.
  const wrap = <T>(field: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      const message = (e as Error).message;
      throw new ConfigError(`zeroDowntime(config): ${message.startsWith(field) ? message : `${field}: ${message}`}`);
    }
  };
  const ms = (value: Duration, field: string) => wrap(field, () => parseDuration(value, field));
  const migrations = config.migrations ?? CONFIG_DEFAULTS.migrations;
  const list = typeof migrations === 'string' ? [migrations] : [...migrations];
  const backfill: BackfillOptions = { ...DEFAULT_BACKFILL, ...wrap('backfill', () => resolveBackfillTuning(config.backfill)) };
  // The monitor's canary line defaults to the pacer's budget line, as configured: one fact, written once.
  const pacerBudget = { ...DEFAULT_CANARY, ...(backfill.canary || {}) };
  const resolved: ResolvedConfig = {
    migrations: list,
    cwd: config.cwd ?? process.cwd(),
    schema: config.schema ?? CONFIG_DEFAULTS.schema,
    stateSchema: config.stateSchema ?? CONFIG_DEFAULTS.stateSchema,
    contractAfterMs: ms(config.contract?.after ?? CONFIG_DEFAULTS.contractAfter, 'contract.after'),
    requireNoRefs: config.contract?.requireNoRefs ?? false,
    requireNoQueries: config.contract?.requireNoQueries ?? 'auto',
    refs: {
      src: typeof config.refs?.src === 'string' ? [config.refs.src] : [...(config.refs?.src ?? [])],
      ignore: [...(config.refs?.ignore ?? [])],
      fields: config.refs?.fields ?? {},
    },
    lock: {
      ...DEFAULT_LOCK_SAFETY,
      lockTimeoutMs: ms(config.lock?.timeout ?? DEFAULT_LOCK_SAFETY.lockTimeoutMs, 'lock.timeout'),
      statementTimeoutMs: ms(config.lock?.statementTimeout ?? DEFAULT_LOCK_SAFETY.statementTimeoutMs, 'lock.statementTimeout'),
      maxAttempts: config.lock?.maxAttempts ?? DEFAULT_LOCK_SAFETY.maxAttempts,
    },
    lockWaitMs: ms(config.lock?.waitForMigrationLock ?? CONFIG_DEFAULTS.waitForMigrationLock, 'lock.waitForMigrationLock'),
    leaseTiming: { ...DEFAULT_LEASE_TIMING, ttlMs: ms(config.lock?.leaseTimeout ?? DEFAULT_LEASE_TIMING.ttlMs, 'lock.leaseTimeout') },
    pooling: config.pooling ?? CONFIG_DEFAULTS.pooling,
    backfill,
    plainMigrations: config.plainMigrations ?? CONFIG_DEFAULTS.plainMigrations,
    lint: wrap('lint', () => resolveLint(config.lint)),
    knexHistory: config.knexHistory ? { table: config.knexHistory.tableName ?? 'knex_migrations', schema: config.knexHistory.schemaName ?? null } : null,
    createFolder: config.createFolder ?? globBase(list[0]!) ?? CONFIG_DEFAULTS.createFolder,
    monitor: wrap('monitoring options', () => resolveMonitorSettings(config.thresholds, config.autoRollback, config.monitor, pacerBudget)),
  };
  return resolved;
}

function resolveLint(lint: ZeroDowntimeConfig['lint']): ResolvedConfig['lint'] {
  if (typeof lint !== 'object') return { level: lint ?? CONFIG_DEFAULTS.lint, rules: {} };
  const unknown = Object.keys(lint.rules ?? {}).filter((r) => !RULE_IDS.includes(r));
  if (unknown.length > 0) throw new Error(`unknown rule${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (the rules: ${RULE_IDS.join(', ')})`);
  return { level: lint.level ?? CONFIG_DEFAULTS.lint, rules: lint.rules ?? {} };
}

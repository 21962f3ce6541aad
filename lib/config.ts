import type { Knex } from 'knex';
import type { BackfillOptions } from './backfill/keyset.js';
import { DEFAULT_BACKFILL, DEFAULT_CANARY } from './backfill/keyset.js';
import { resolveBackfillTuning, type BackfillTuning } from './backfill/options.js';
import { parseDuration } from './db/duration.js';
import { DEFAULT_LOCK_SAFETY, type LockSafetyOptions } from './engine/executor.js';
import { DEFAULT_LEASE_TIMING, type LeaseTiming } from './engine/lease.js';
import type { PoolingMode } from './db/db.js';
import type { EngineEvent } from './engine/runner.js';
import { resolveMonitorSettings, type MonitorConfig } from './monitor/config.js';
import type { MonitorSettings } from './monitor/monitor.js';
import type { ThresholdsConfig } from './monitor/thresholds.js';
import type { MongoConnectionConfig } from './mongo/driver.js';
import { validateConfig } from './config-schema.js';
import { knexConnectionProblem } from './db/connection-check.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from './db/errors.js';

export type Duration = string | number;

export interface LogFn {
  (message: Record<string, unknown>): void;
}

export interface ZeroDowntimeLogger {
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  debug: LogFn;
}

export interface ZeroDowntimeConfig {
  /** A Knex instance (yours; you close it) or a Knex config (we create the instance; `close()` destroys it). */
  readonly knex: Knex | Knex.Config;
  /** Glob(s) of migration files, relative to `cwd`. Default `migrations/*.{ts,mts,cts,js,mjs,cjs}`. */
  readonly migrations?: string | readonly string[];
  readonly cwd?: string;
  /** Schema that bare table names belong to. Default `public`. */
  readonly schema?: string;
  /** Schema holding the state tables (executed migrations, steps, backfill progress). Default `zero_downtime`. */
  readonly stateSchema?: string;
  readonly contract?: {
    /** Safety window between the end of an expand and its contract. Default `24h`. */
    readonly after?: Duration;
  };
  readonly lock?: {
    /** lock_timeout of every lock-taking statement. Default `1s`. */
    readonly timeout?: Duration;
    /** statement_timeout of each DDL statement and backfill batch. Default `60s`. */
    readonly statementTimeout?: Duration;
    /** Attempts per step on lock timeout or deadlock. Default 8. */
    readonly maxAttempts?: number;
    /** How long a second `umzug up` waits for the first to finish. Default `10m`. */
    readonly waitForMigrationLock?: Duration;
    /**
     * Behind a transaction pooler, how long the migration lock outlives its holder's last heartbeat (sent every second)
     * before another run may take it. On a direct connection the lock ends with its holder's session. Default `15s`.
     */
    readonly leaseTimeout?: Duration;
  };
  /**
   * What is between us and PostgreSQL: `session` (a direct connection, or PgBouncer in session mode), `transaction`
   * (PgBouncer `pool_mode = transaction`: no session state is relied on), or `auto` (default): told apart at the
   * first command that takes the migration lock.
   */
  readonly pooling?: 'auto' | PoolingMode;
  readonly backfill?: BackfillTuning & {
    readonly batchSize?: number;
    /** Pause between batches. Default 0. */
    readonly pause?: Duration;
  };
  /**
   * How plain (untyped) migration files are called: `umzug` (default) passes Umzug's `{ name, path, context }`,
   * `knex` passes the Knex instance, as knex's own migrator does.
   */
  readonly plainMigrations?: 'umzug' | 'knex';
  /** Umzug-style logger; default console. Pass null for silence. */
  readonly logger?: ZeroDowntimeLogger | null;
  /** Folder `create` writes to when no migration exists yet. Default `migrations`. */
  readonly createFolder?: string;
  readonly onEvent?: (e: EngineEvent) => void;
  /**
   * When the monitor calls a breach (defaults: mismatch > 1 %; canary p99 over the pacer's budget line, baseline ×
   * backfill.canary.budget, for 2 windows (of the pacer's 20 s) running; 20 errors a minute; 1 h without progress).
   */
  readonly thresholds?: ThresholdsConfig;
  /** On a breach during `up`, revert the in-flight change with its generated down instead of pausing. Default false. */
  readonly autoRollback?: boolean;
  /** The monitor's canary probe and sampling. */
  readonly monitor?: MonitorConfig;
  /** Where mongoToPostgres() changes read their collections (the `mongodb` driver is loaded only when one runs). */
  readonly mongo?: MongoConnectionConfig;
}

export interface ResolvedConfig {
  readonly migrations: readonly string[];
  readonly cwd: string;
  readonly schema: string;
  readonly stateSchema: string;
  readonly contractAfterMs: number;
  readonly lock: LockSafetyOptions;
  readonly lockWaitMs: number;
  readonly leaseTiming: LeaseTiming;
  readonly pooling: 'auto' | PoolingMode;
  readonly backfill: BackfillOptions;
  readonly plainMigrations: 'umzug' | 'knex';
  readonly createFolder: string;
  readonly monitor: MonitorSettings;
}

const KNOWN_KEYS = new Set([
  'knex',
  'migrations',
  'cwd',
  'schema',
  'stateSchema',
  'contract',
  'lock',
  'backfill',
  'plainMigrations',
  'logger',
  'createFolder',
  'onEvent',
  'thresholds',
  'autoRollback',
  'monitor',
  'mongo',
  'pooling',
]);

/** The folder part of a glob before its first wildcard (`db/migrations/*.ts` → `db/migrations`): where `create` writes. */
function globBase(glob: string): string | null {
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

/** Validates and fills in defaults; an unknown key or a wrong type is an error that names the key. */
export function resolveConfig(config: ZeroDowntimeConfig): ResolvedConfig {
  if (!config || typeof config !== 'object') throw new ConfigError('zeroDowntime(config): config must be an object');
  // Every option against the JSON Schema in config-schema.ts (ajv): unknown keys and wrong types, named by their path.
  validateConfig(config, KNOWN_KEYS, (message) => new ConfigError(message));
  for (const key of Object.keys(config)) {
    if (!KNOWN_KEYS.has(key)) throw new ConfigError(`zeroDowntime(config): unknown option "${key}" (known: ${[...KNOWN_KEYS].join(', ')})`);
  }
  if (!config.knex) throw new ConfigError('zeroDowntime(config): `knex` is required (a Knex instance or a Knex config)');
  const wrap = <T>(field: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw new ConfigError(`zeroDowntime(config): ${field}: ${(e as Error).message}`);
    }
  };
  const migrations = config.migrations ?? 'migrations/*.{ts,mts,cts,js,mjs,cjs}';
  const list = typeof migrations === 'string' ? [migrations] : [...migrations];
  if (list.length === 0 || list.some((g) => typeof g !== 'string' || g.length === 0)) {
    throw new ConfigError('zeroDowntime(config): migrations must be a glob string or a non-empty list of them');
  }
  const positiveInt = (v: unknown, field: string, dflt: number): number => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ConfigError(`zeroDowntime(config): ${field} must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const str = (v: unknown, field: string, dflt: string): string => {
    if (v === undefined) return dflt;
    if (typeof v !== 'string' || v.length === 0) throw new ConfigError(`zeroDowntime(config): ${field} must be a non-empty string`);
    return v;
  };
  if (config.plainMigrations !== undefined && !['umzug', 'knex'].includes(config.plainMigrations)) {
    throw new ConfigError(`zeroDowntime(config): plainMigrations must be "umzug" or "knex", got ${JSON.stringify(config.plainMigrations)}`);
  }
  const backfill: BackfillOptions = {
    ...DEFAULT_BACKFILL,
    batchSize: positiveInt(config.backfill?.batchSize, 'backfill.batchSize', DEFAULT_BACKFILL.batchSize),
    pauseMs: wrap('backfill.pause', () => parseDuration(config.backfill?.pause ?? 0, 'backfill.pause')),
    ...wrap('backfill', () => resolveBackfillTuning(config.backfill)),
  };
  // The monitor's canary line defaults to the pacer's budget line, as configured: one fact, written once.
  const pacerBudget = { ...DEFAULT_CANARY, ...(backfill.canary || {}) };
  const resolved: ResolvedConfig = {
    migrations: list,
    cwd: str(config.cwd, 'cwd', process.cwd()),
    schema: str(config.schema, 'schema', 'public'),
    stateSchema: str(config.stateSchema, 'stateSchema', 'zero_downtime'),
    contractAfterMs: wrap('contract.after', () => parseDuration(config.contract?.after ?? '24h', 'contract.after')),
    lock: {
      ...DEFAULT_LOCK_SAFETY,
      lockTimeoutMs: wrap('lock.timeout', () => parseDuration(config.lock?.timeout ?? DEFAULT_LOCK_SAFETY.lockTimeoutMs, 'lock.timeout')),
      statementTimeoutMs: wrap('lock.statementTimeout', () =>
        parseDuration(config.lock?.statementTimeout ?? DEFAULT_LOCK_SAFETY.statementTimeoutMs, 'lock.statementTimeout'),
      ),
      maxAttempts: positiveInt(config.lock?.maxAttempts, 'lock.maxAttempts', DEFAULT_LOCK_SAFETY.maxAttempts),
    },
    lockWaitMs: wrap('lock.waitForMigrationLock', () => parseDuration(config.lock?.waitForMigrationLock ?? '10m', 'lock.waitForMigrationLock')),
    leaseTiming: {
      ...DEFAULT_LEASE_TIMING,
      ttlMs: wrap('lock.leaseTimeout', () => parseDuration(config.lock?.leaseTimeout ?? DEFAULT_LEASE_TIMING.ttlMs, 'lock.leaseTimeout')),
    },
    pooling: config.pooling ?? 'auto',
    backfill,
    plainMigrations: config.plainMigrations ?? 'umzug',
    createFolder: str(config.createFolder, 'createFolder', globBase(list[0]!) ?? 'migrations'),
    monitor: wrap('monitoring options', () => resolveMonitorSettings(config.thresholds, config.autoRollback, config.monitor, pacerBudget)),
  };
  return resolved;
}

import { RULE_IDS } from './lint/rules.js';
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
import type { MongoConnectionConfig } from './mongo/connection.js';
import { CONFIG_SCHEMA, validateConfig } from './config-schema.js';
import { knexConnectionProblem } from './db/connection-check.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from './db/errors.js';
import type { KnexHistoryTable } from './postgres/knex-history.js';

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
  /**
   * The unsafe-DDL linter before `up` runs plain migrations (`umzug lint` reads it too): `error` stops `up` on an
   * error-level finding, nothing run; `warn` (default) prints the findings and goes on; `off`. Per rule:
   * `{ level, rules: { 'renaming-column': 'off' } }`.
   */
  readonly lint?: 'error' | 'warn' | 'off' | { readonly level?: 'error' | 'warn' | 'off'; readonly rules?: Readonly<Record<string, 'error' | 'warn' | 'off'>> };
  /**
   * Keep a Knex project's own history (`knex_migrations`) as part of ours: files it records count as executed, and
   * every plain file `up` runs (and each typed file's expand) is recorded there too, in one batch per command, so
   * `knex migrate:*` and `umzug` agree at every point. Set from the knexfile when the bin finds one; `false` (default
   * otherwise) ignores it.
   */
  readonly knexHistory?: false | { readonly tableName?: string; readonly schemaName?: string };
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
  readonly lint: { readonly level: 'error' | 'warn' | 'off'; readonly rules: Readonly<Record<string, 'error' | 'warn' | 'off'>> };
  readonly knexHistory: KnexHistoryTable | null;
  readonly createFolder: string;
  readonly monitor: MonitorSettings;
}

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

// The schema (config-schema.ts) and this type describe the same options: a key in one and not in the other fails
// to compile. The schema is what validates; the type is what editors show.
type SameKeys<A, B> = [Exclude<keyof A, keyof B>, Exclude<keyof B, keyof A>] extends [never, never] ? true : false;
const schemaMatchesType: SameKeys<typeof CONFIG_SCHEMA.properties, ZeroDowntimeConfig> = true;
void schemaMatchesType;

/**
 * Validates (the JSON Schema, once: unknown keys, types and bounds, every problem named by its path) and fills in
 * defaults.
 */
export function resolveConfig(config: ZeroDowntimeConfig): ResolvedConfig {
  if (!config || typeof config !== 'object') throw new ConfigError('zeroDowntime(config): config must be an object');
  // Every option against the JSON Schema in config-schema.ts (ajv): unknown keys and wrong types, named by their path.
  validateConfig(config, (message) => new ConfigError(message));
  const wrap = <T>(field: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw new ConfigError(`zeroDowntime(config): ${field}: ${(e as Error).message}`);
    }
  };
  const migrations = config.migrations ?? 'migrations/*.{ts,mts,cts,js,mjs,cjs}';
  const list = typeof migrations === 'string' ? [migrations] : [...migrations];
  const backfill: BackfillOptions = {
    ...DEFAULT_BACKFILL,
    batchSize: config.backfill?.batchSize ?? DEFAULT_BACKFILL.batchSize,
    pauseMs: wrap('backfill.pause', () => parseDuration(config.backfill?.pause ?? 0, 'backfill.pause')),
    ...wrap('backfill', () => resolveBackfillTuning(config.backfill)),
  };
  // The monitor's canary line defaults to the pacer's budget line, as configured: one fact, written once.
  const pacerBudget = { ...DEFAULT_CANARY, ...(backfill.canary || {}) };
  const resolved: ResolvedConfig = {
    migrations: list,
    cwd: config.cwd ?? process.cwd(),
    schema: config.schema ?? 'public',
    stateSchema: config.stateSchema ?? 'zero_downtime',
    contractAfterMs: wrap('contract.after', () => parseDuration(config.contract?.after ?? '24h', 'contract.after')),
    lock: {
      ...DEFAULT_LOCK_SAFETY,
      lockTimeoutMs: wrap('lock.timeout', () => parseDuration(config.lock?.timeout ?? DEFAULT_LOCK_SAFETY.lockTimeoutMs, 'lock.timeout')),
      statementTimeoutMs: wrap('lock.statementTimeout', () =>
        parseDuration(config.lock?.statementTimeout ?? DEFAULT_LOCK_SAFETY.statementTimeoutMs, 'lock.statementTimeout'),
      ),
      maxAttempts: config.lock?.maxAttempts ?? DEFAULT_LOCK_SAFETY.maxAttempts,
    },
    lockWaitMs: wrap('lock.waitForMigrationLock', () => parseDuration(config.lock?.waitForMigrationLock ?? '10m', 'lock.waitForMigrationLock')),
    leaseTiming: {
      ...DEFAULT_LEASE_TIMING,
      ttlMs: wrap('lock.leaseTimeout', () => parseDuration(config.lock?.leaseTimeout ?? DEFAULT_LEASE_TIMING.ttlMs, 'lock.leaseTimeout')),
    },
    pooling: config.pooling ?? 'auto',
    backfill,
    plainMigrations: config.plainMigrations ?? 'umzug',
    lint: wrap('lint', () => resolveLint(config.lint)),
    knexHistory: config.knexHistory ? { table: config.knexHistory.tableName ?? 'knex_migrations', schema: config.knexHistory.schemaName ?? null } : null,
    createFolder: config.createFolder ?? globBase(list[0]!) ?? 'migrations',
    monitor: wrap('monitoring options', () => resolveMonitorSettings(config.thresholds, config.autoRollback, config.monitor, pacerBudget)),
  };
  return resolved;
}

function resolveLint(lint: ZeroDowntimeConfig['lint']): ResolvedConfig['lint'] {
  if (typeof lint !== 'object') return { level: lint ?? 'warn', rules: {} };
  const unknown = Object.keys(lint.rules ?? {}).filter((r) => !RULE_IDS.includes(r));
  if (unknown.length > 0) throw new Error(`unknown rule${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (the rules: ${RULE_IDS.join(', ')})`);
  return { level: lint.level ?? 'warn', rules: lint.rules ?? {} };
}

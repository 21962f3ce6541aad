import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { FromSchema } from 'json-schema-to-ts';
import type { Knex } from 'knex';
import { DEFAULT_BACKFILL, DEFAULT_CANARY } from '../backfill/keyset.js';
import type { HealthCheck } from '../backfill/throttle.js';
import type { DeepReadonly } from '../changes/options.js';
import { DEFAULT_LOCK_SAFETY } from '../engine/executor.js';
import { DEFAULT_LEASE_TIMING } from '../engine/lease.js';
import type { EngineEvent } from '../runner.js';
import { DEFAULT_THRESHOLDS, MONITOR_DEFAULTS } from '../monitor/thresholds.js';

/**
 * The JSON Schema of `zeroDowntime(config)` / umzug.config.{ts,js,mjs}: the one description of every option. Its
 * TypeScript type (`ConfigFromSchema`, which config.ts exports as ZeroDowntimeConfig) is derived from it, and it is
 * what validates at start-up (ajv, once), before anything connects. Keys beyond JSON Schema:
 * - `isFunction: true`: the value must be a function (a Knex instance, logger methods, onEvent, healthCheck), which
 *   JSON has no type for; checked by ajv (a keyword of our own, below);
 * - `tsType`: the TypeScript type of a value the schema can only check the outline of (a function's signature, a
 *   Knex config); an annotation, no check. FunctionTypes (below) maps each name to its type.
 * Defaults shown in descriptions are read from the constants the code uses, so they are written once.
 */

/** The defaults of options whose code lives in resolveConfig (config.ts), here so the descriptions can show them. */
export const CONFIG_DEFAULTS = Object.freeze({
  migrations: 'migrations/*.{ts,mts,cts,js,mjs,cjs}',
  schema: 'public',
  stateSchema: 'zero_downtime',
  contractAfter: '24h',
  waitForMigrationLock: '10m',
  pooling: 'auto',
  plainMigrations: 'umzug',
  createFolder: 'migrations',
  lint: 'warn',
} as const);

const UNITS: readonly [string, number][] = [['w', 604_800_000], ['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]];
/** A default in milliseconds as a config value is written: 200 → 200ms, 10000 → 10s, 86400000 → 1d; null stays null. */
function ms(n: number | null | undefined): string {
  if (n === null || n === undefined) return String(n);
  const unit = UNITS.find(([, size]) => n >= size && n % size === 0);
  return unit ? `${n / unit[1]}${unit[0]}` : `${n}ms`;
}

const DURATION_PATTERN = '^\\s*(\\d+(\\.\\d+)?\\s*(ms|s|m|h|d|w)\\s*)+$';
const duration = {
  anyOf: [
    { type: 'number', minimum: 0 },
    { type: 'string', pattern: DURATION_PATTERN },
  ],
  description: 'a duration: "7d", "12h", "1h30m", "30s", "500ms", or a number of milliseconds',
} as const;
/** Longer than 0: a number above 0, or a string with a digit other than 0 (a string of zeros is the only way to write 0). */
const positiveDuration = {
  anyOf: [
    { type: 'number', exclusiveMinimum: 0 },
    { type: 'string', pattern: `(?=.*[1-9])${DURATION_PATTERN}` },
  ],
  description: 'a duration longer than 0: "12h", "1h30m", "30s", "500ms", or a number of milliseconds above 0',
} as const;

const positiveInt = { type: 'integer', minimum: 1 } as const;
/** Not empty and not only blanks. */
const nonBlank = { type: 'string', pattern: '\\S' } as const;
const lintLevel = { enum: ['error', 'warn', 'off'] } as const;

export const CONFIG_SCHEMA = {
  $id: 'umzug-zero-downtime/config',
  type: 'object',
  additionalProperties: false,
  required: ['knex'],
  properties: {
    knex: {
      description: 'a Knex instance (yours; you close it) or a Knex config ({ client: "pg", connection }); with a config, close() destroys the instance',
      anyOf: [
        { isFunction: true, tsType: 'Knex', description: 'a Knex instance' },
        {
          type: 'object',
          tsType: 'Knex.Config',
          description: 'a Knex config ({ client: "pg", connection })',
          required: ['client'],
          properties: { client: { anyOf: [{ type: 'string' }, { isFunction: true, description: 'a Knex client class' }] } },
        },
      ],
    },
    migrations: {
      description: `glob(s) of migration files relative to cwd; default ${CONFIG_DEFAULTS.migrations}`,
      anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } }],
    },
    cwd: { type: 'string', minLength: 1, description: 'project folder; default process.cwd()' },
    schema: { type: 'string', minLength: 1, maxLength: 63, description: `schema bare table names belong to; default ${CONFIG_DEFAULTS.schema}` },
    stateSchema: { type: 'string', minLength: 1, maxLength: 63, description: `schema of the state tables; default ${CONFIG_DEFAULTS.stateSchema}` },
    contract: {
      type: 'object',
      additionalProperties: false,
      properties: {
        after: { ...duration, description: `safety window between the end of an expand and its contract; default ${CONFIG_DEFAULTS.contractAfter}` },
        requireNoRefs: {
          type: 'boolean',
          description:
            'keep a contract waiting while the application source (config `refs`) still mentions a column or table it removes, as `umzug refs` lists them; default false',
        },
        requireNoQueries: {
          anyOf: [{ type: 'boolean' }, { const: 'auto' }],
          description:
            "keep a contract waiting while pg_stat_statements shows statements (not ours) that used a column or table it removes since the cutover, until none was called for the safety window (contract.after). 'auto' (default): where pg_stat_statements is installed; true: also where it is not (the gate then stays closed and says how to install it); false: never",
        },
      },
    },
    refs: {
      type: 'object',
      additionalProperties: false,
      description: "where `umzug refs` (and contract.requireNoRefs) looks for the application's references to what a pending contract removes",
      properties: {
        src: {
          description: 'folders, files or globs of the application source, relative to cwd; default cwd (node_modules, dist, .git and the migrations folder are never read)',
          anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 } }],
        },
        ignore: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'globs (relative to cwd) left out besides those; e.g. ["**/*.test.ts"]' },
        fields: {
          type: 'object',
          description:
            "the property names an ORM gives a column: { 'users.name': ['userName'] } (or 'schema.table.column'); a property access, object key or class property with such a name is a reference",
          propertyNames: { pattern: '^[^.]+(\\.[^.]+){1,2}$' },
          additionalProperties: { type: 'array', items: { type: 'string', minLength: 1 } },
        },
      },
    },
    lock: {
      type: 'object',
      additionalProperties: false,
      properties: {
        timeout: { ...duration, description: `lock_timeout of every lock-taking statement; default ${ms(DEFAULT_LOCK_SAFETY.lockTimeoutMs)}` },
        statementTimeout: { ...duration, description: `statement_timeout of each DDL statement and backfill batch; default ${ms(DEFAULT_LOCK_SAFETY.statementTimeoutMs)}` },
        maxAttempts: { ...positiveInt, description: `attempts per step on lock timeout or deadlock; default ${DEFAULT_LOCK_SAFETY.maxAttempts}` },
        waitForMigrationLock: { ...duration, description: `how long a second \`umzug up\` waits for the first; default ${CONFIG_DEFAULTS.waitForMigrationLock}` },
        leaseTimeout: {
          ...duration,
          description: `behind a transaction pooler: how long the migration lock and a backfill worker's lease outlive their holder's last heartbeat (a dead worker's chunks are free after it); default ${ms(DEFAULT_LEASE_TIMING.ttlMs)}`,
        },
      },
    },
    backfill: {
      type: 'object',
      additionalProperties: false,
      properties: {
        batchSize: { ...positiveInt, description: `rows per batch (the adaptive sizer starts here); default ${DEFAULT_BACKFILL.batchSize}` },
        pause: { ...duration, description: `pause between batches; default ${DEFAULT_BACKFILL.pauseMs}` },
        targetBatchDuration: { ...positiveDuration, description: `batch duration the adaptive sizer aims at; default ${ms(DEFAULT_BACKFILL.targetBatchMs)}` },
        minBatchSize: { ...positiveInt, description: `lower bound of the adaptive batch size; default ${DEFAULT_BACKFILL.minBatchSize}` },
        maxBatchSize: { ...positiveInt, description: `upper bound of the adaptive batch size; default ${DEFAULT_BACKFILL.maxBatchSize}` },
        adaptive: { type: 'boolean', description: `false keeps every batch at batchSize; default ${DEFAULT_BACKFILL.adaptive}` },
        batchTimeout: { ...duration, description: `statement_timeout of one batch (split and retried past it); default ${ms(DEFAULT_BACKFILL.batchTimeoutMs)}` },
        workers: { ...positiveInt, description: `workers per process (\`umzug backfill --workers N\` overrides); default ${DEFAULT_BACKFILL.workers}` },
        idleWorkers: { type: 'integer', minimum: 0, description: `workers added while no other client uses the server (with the canary on); 0 turns them off; default ${DEFAULT_BACKFILL.idleWorkers}` },
        chunkRows: { ...positiveInt, description: `rows per chunk, the unit workers claim; default ${DEFAULT_BACKFILL.chunkRows}` },
        partitionWalk: {
          type: 'string',
          enum: ['pages', 'key'],
          description: `how a partitioned table is walked: each partition's heap pages (PostgreSQL 14+, backfills a sync trigger keeps in step) or the table's key; default ${DEFAULT_BACKFILL.partitionWalk}`,
        },
        maxReplicationLag: {
          anyOf: [{ type: 'null' }, duration],
          description: `pause while a standby lags more than this; null ignores lag; default ${ms(DEFAULT_BACKFILL.maxReplicationLagMs)}`,
        },
        healthCheck: {
          isFunction: true,
          tsType: 'HealthCheck',
          description: 'your own check (error rate, queue depth…): the backfill pauses while it resolves to false or { ok: false, reason }',
        },
        canary: {
          description: 'primary-key read timed during the backfill; false turns it off',
          anyOf: [
            { const: false },
            {
              type: 'object',
              additionalProperties: false,
              properties: {
                budget: { type: 'number', minimum: 1, description: `p99 may reach baseline × budget; default ${DEFAULT_CANARY.budget}` },
                slack: { ...duration, description: `and at least baseline + slack; default ${ms(DEFAULT_CANARY.slackMs)}` },
              },
            },
          ],
        },
      },
    },
    pooling: {
      enum: ['auto', 'session', 'transaction'],
      description: `what is between us and PostgreSQL: session (direct, or PgBouncer session mode), transaction (PgBouncer pool_mode = transaction), auto (detected); default ${CONFIG_DEFAULTS.pooling}`,
    },
    mongo: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      description: 'where mongoToPostgres() changes read their collections: { url, database?, clientOptions? } (the mongodb driver loads only when a move runs)',
      properties: {
        url: { type: 'string', minLength: 1, description: 'a mongodb:// URL' },
        database: { type: 'string', minLength: 1, description: 'database of collections named without one; default the one in the URL' },
        clientOptions: { type: 'object', description: 'extra MongoClient options (useBigInt64 is always on)' },
      },
    },
    knexHistory: {
      description: "a Knex project's migrations table, read and kept as part of the history: { tableName?, schemaName? } (default knex_migrations), or false",
      anyOf: [
        { const: false },
        {
          type: 'object',
          additionalProperties: false,
          properties: { tableName: { type: 'string', minLength: 1, maxLength: 63 }, schemaName: { type: 'string', minLength: 1, maxLength: 63 } },
        },
      ],
    },
    lint: {
      description: `the unsafe-DDL linter before \`up\` runs plain migrations: 'error' (an error-level finding stops up, nothing run), 'warn' (printed), 'off', or { level?, rules?: { <rule>: 'error' | 'warn' | 'off' } }; default '${CONFIG_DEFAULTS.lint}'`,
      anyOf: [
        lintLevel,
        {
          type: 'object',
          additionalProperties: false,
          properties: { level: lintLevel, rules: { type: 'object', additionalProperties: lintLevel } },
        },
      ],
    },
    plainMigrations: {
      enum: ['umzug', 'knex'],
      description: `how plain migration files are called: umzug ({ name, path, context }) or knex (the Knex instance); default ${CONFIG_DEFAULTS.plainMigrations}`,
    },
    logger: {
      description: 'Umzug-style logger with info, warn, error, debug; null for silence; default console',
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          tsType: 'ZeroDowntimeLogger',
          required: ['info', 'warn', 'error', 'debug'],
          properties: {
            info: { isFunction: true, tsType: 'LogFn', description: 'a logger method' },
            warn: { isFunction: true, tsType: 'LogFn', description: 'a logger method' },
            error: { isFunction: true, tsType: 'LogFn', description: 'a logger method' },
            debug: { isFunction: true, tsType: 'LogFn', description: 'a logger method' },
          },
        },
      ],
    },
    createFolder: { type: 'string', minLength: 1, description: `folder \`create\` writes to when no migration exists yet; default ${CONFIG_DEFAULTS.createFolder}` },
    onEvent: { isFunction: true, tsType: 'OnEvent', description: 'called with every engine event (step, retry, backfill batch, verify)' },
    thresholds: {
      type: 'object',
      additionalProperties: false,
      description: 'when the monitor calls a breach',
      properties: {
        mismatchPercent: {
          type: 'number',
          minimum: 0,
          maximum: 100,
          description: `share of rows verify may find disagreeing, in percent; default ${DEFAULT_THRESHOLDS.mismatchRatio * 100}`,
        },
        canaryP99Factor: {
          type: 'number',
          minimum: 1,
          maximum: 1000,
          description: `canary p99 may reach this multiple of its baseline; default the pacer's budget, backfill.canary.budget (${DEFAULT_CANARY.budget})`,
        },
        canaryMinIncrease: { ...duration, description: `and at least baseline + this; default the pacer's slack, backfill.canary.slack (${ms(DEFAULT_CANARY.slackMs)})` },
        canarySustainedWindows: {
          type: 'integer',
          minimum: 1,
          maximum: 1000,
          description: `windows running the p99 must stay over the limit to be a breach; default ${DEFAULT_THRESHOLDS.canarySustainedWindows}`,
        },
        maxErrors: { ...positiveInt, description: `errors allowed per errorWindow; default ${DEFAULT_THRESHOLDS.maxErrors}` },
        errorWindow: { ...positiveDuration, description: `the window maxErrors counts over; default ${ms(DEFAULT_THRESHOLDS.errorWindowMs)}` },
        noProgressFor: { ...positiveDuration, description: `a running backfill that has not advanced for this long is a breach; default ${ms(DEFAULT_THRESHOLDS.noProgressMs)}` },
        maxMismatches: {
          type: 'integer',
          minimum: 0,
          description: `rows verify may find disagreeing, whatever their share; default ${DEFAULT_THRESHOLDS.maxMismatches}`,
        },
        queryLatencyIncreasePercent: {
          type: 'number',
          minimum: 0,
          maximum: 100_000,
          description: `an application query (pg_stat_statements) may get this much slower per call than before the phase, in percent; default ${Math.round((DEFAULT_THRESHOLDS.queryLatencyFactor - 1) * 100)}`,
        },
        queryLatencyMinIncrease: { ...duration, description: `and at least its baseline + this; default ${ms(DEFAULT_THRESHOLDS.queryLatencyMinIncreaseMs)}` },
        errorRateIncreasePercent: {
          type: 'number',
          minimum: 0,
          maximum: 100,
          description: `the application's error rate may rise this many percentage points over its baseline; default ${DEFAULT_THRESHOLDS.errorRateIncrease * 100}`,
        },
        minCallsPerWindow: {
          ...positiveInt,
          description: `calls of a query (or transactions) a window needs before the relative triggers judge it; default ${DEFAULT_THRESHOLDS.minCallsPerWindow}`,
        },
      },
    },
    autoRollback: { type: 'boolean', description: 'on a breach during up, revert the in-flight change instead of pausing; default false' },
    monitor: {
      type: 'object',
      additionalProperties: false,
      properties: {
        canary: {
          description: "the monitor's canary probe (default: a read by key of the table being backfilled); false for none",
          anyOf: [
            { const: false },
            {
              type: 'object',
              additionalProperties: false,
              properties: {
                sql: { ...nonBlank, description: 'a query the application runs often, without parameters' },
                interval: { ...duration, description: `time between probes; default ${ms(MONITOR_DEFAULTS.intervalMs)}` },
                window: { ...positiveDuration, description: `p50/p99 window; default the pacer's tail window (${ms(DEFAULT_CANARY.tailWindowMs)})` },
                baselineSamples: { ...positiveInt, description: `probes for the first baseline; default ${MONITOR_DEFAULTS.baselineSamples}` },
                timeout: { ...positiveDuration, description: `a probe stuck longer is cancelled; default ${ms(MONITOR_DEFAULTS.timeoutMs)}` },
                rebaselineAfter: {
                  ...duration,
                  description: `reads still over the limit after the backfill has been paused this long become the new baseline; default ${ms(MONITOR_DEFAULTS.rebaselineAfterMs)}`,
                },
              },
            },
          ],
        },
        sampleEvery: { ...positiveDuration, description: `how often a running backfill's figures are recorded; default ${ms(MONITOR_DEFAULTS.sampleEveryMs)}` },
        relative: {
          description: "the relative triggers: the application's top queries (pg_stat_statements) and error rate against a baseline taken before the phase; false for none",
          anyOf: [
            { const: false },
            {
              type: 'object',
              additionalProperties: false,
              properties: {
                window: { ...positiveDuration, description: `the window each judgement covers; default ${ms(MONITOR_DEFAULTS.relativeWindowMs)}` },
                top: { ...positiveInt, description: `the application's queries watched, the most called before the phase; default ${MONITOR_DEFAULTS.relativeTop}` },
              },
            },
          ],
        },
        errorRate: {
          isFunction: true,
          tsType: 'ErrorRateFn',
          description: "the application's own error ratio now (0..1), used instead of pg_stat_database's rolled-back transactions",
        },
      },
    },
  },
} as const;

export type LogFn = (message: Record<string, unknown>) => void;

/** Umzug-style logger; console is one. */
export interface ZeroDowntimeLogger {
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  debug: LogFn;
}

/**
 * The TypeScript type of each `tsType` name, through json-schema-to-ts's `deserialize` option (a node whose schema has
 * that `tsType` gets that type). Chosen over a hand-written override of the derived type because the type stays next
 * to the node it belongs to, at any depth (backfill.healthCheck, the logger's methods), and a new function-valued
 * option needs one schema line, not an Omit<> & {…} patch to keep in step. The names are only the functions' signatures
 * and the two outside types (Knex's config, the logger: the schema checks their outline, the type says all of it).
 * Plain FromSchema, not FromExtendedSchema: the latter gives `never` for a custom keyword inside an `anyOf` of an
 * `as const` schema (json-schema-to-ts 3.1); FromSchema takes the extra keys as long as a node also has a standard one,
 * which is why every `isFunction` node carries a description.
 */
type FunctionTypes = [
  { pattern: { tsType: 'Knex' }; output: Knex },
  { pattern: { tsType: 'Knex.Config' }; output: Knex.Config },
  { pattern: { tsType: 'HealthCheck' }; output: HealthCheck },
  { pattern: { tsType: 'ErrorRateFn' }; output: () => Promise<number> },
  { pattern: { tsType: 'OnEvent' }; output: (e: EngineEvent) => void },
  { pattern: { tsType: 'LogFn' }; output: LogFn },
  { pattern: { tsType: 'ZeroDowntimeLogger' }; output: ZeroDowntimeLogger },
];

/**
 * Readonly all the way down (as DeepReadonly in changes/options.ts), except inside Knex's config: an outside type the
 * schema only outlines stays as Knex declares it, so `config.knex` can be passed to `knex()` and reads as `Knex.Config`.
 */
type ReadonlyConfig<T> = T extends (...args: never[]) => unknown
  ? T
  : [T] extends [Knex.Config]
    ? [Knex.Config] extends [T]
      ? T
      : DeepReadonly<T>
    : T extends readonly (infer U)[]
      ? readonly ReadonlyConfig<U>[]
      : T extends object
        ? { readonly [K in keyof T]: ReadonlyConfig<T[K]> }
        : T;

/** The config's type, derived from CONFIG_SCHEMA: optional keys optional, readonly all the way down. */
export type ConfigFromSchema = ReadonlyConfig<FromSchema<typeof CONFIG_SCHEMA, { keepDefaultedPropertiesOptional: true; deserialize: FunctionTypes }>>;

let validate: ValidateFunction | null = null;

function validator(): ValidateFunction {
  if (validate) return validate;
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true });
  ajv.addKeyword({
    keyword: 'isFunction',
    schemaType: 'boolean',
    errors: false,
    validate: (expected: boolean, data: unknown) => (typeof data === 'function') === expected,
  });
  ajv.addKeyword({ keyword: 'tsType', schemaType: 'string' }); // an annotation for the derived type; checks nothing
  validate = ajv.compile(CONFIG_SCHEMA);
  return validate;
}

/** Plain words for ajv's errors, naming the option by its path (`lock.timeout`, `backfill.canary.budget`). */
export function describeConfigErrors(errors: readonly ErrorObject[]): string[] {
  const out: string[] = [];
  const fieldOf = (p: string) => p.split('/').filter(Boolean).map((k, i) => (/^\d+$/.test(k) ? `[${k}]` : i ? `.${k}` : k)).join('') || 'config';
  const keyIn = (field: string, key: string) => (field === 'config' ? key : `${field}.${key}`);
  // anyOf reports each branch's failure too; keep one line per alternative option, unless a deeper error says more.
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const hasDeeper = (p: string) => errors.some((e) => e.instancePath.startsWith(p + '/'));
  // Errors of the branch that fits the value's kind (an object's unknown or missing keys) say more than "wrong type".
  const specific = (e: ErrorObject) => ['additionalProperties', 'required'].includes(e.keyword);
  const hasSpecific = (p: string) => errors.some((e) => e.instancePath === p && specific(e));
  for (const e of errors) {
    const field = fieldOf(e.instancePath);
    if (e.keyword === 'anyOf') {
      if (!hasDeeper(e.instancePath) && !hasSpecific(e.instancePath)) out.push(`${field} must be ${describeAt(e.instancePath)}, got ${show(e.data)}`);
      continue;
    }
    if (anyOfPaths.has(e.instancePath) && !specific(e)) continue;
    switch (e.keyword) {
      case 'additionalProperties': {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = Object.keys(schemaAt(e.schemaPath) ?? {});
        out.push(`unknown key ${keyIn(field, extra)}${allowed.length ? ` (known: ${allowed.join(', ')})` : ''}`);
        break;
      }
      case 'required':
        out.push(`${keyIn(field, (e.params as { missingProperty: string }).missingProperty)} is required`);
        break;
      case 'isFunction':
        out.push(`${field} must be a function, got ${show(e.data)}`);
        break;
      case 'enum':
        out.push(`${field} must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}, got ${show(e.data)}`);
        break;
      default:
        out.push(`${field} ${expectation(e)}, got ${show(e.data)}`);
    }
  }
  return [...new Set(out)];
}

/** A value as the user wrote it, as far as JSON can say (a function or undefined has no JSON). */
function show(v: unknown): string {
  if (typeof v === 'function') return 'a function';
  return v === undefined || (typeof v === 'number' && !Number.isFinite(v)) ? String(v) : JSON.stringify(v);
}

/** What a failed type or bound check expected, in the words the rest of the config errors use. */
function expectation(e: ErrorObject): string {
  const node = (e.parentSchema ?? {}) as { type?: string; minimum?: number; maximum?: number; exclusiveMinimum?: number; minLength?: number; maxLength?: number; minItems?: number };
  const a = node.type === 'integer' ? 'an integer' : 'a number';
  switch (node.type) {
    case 'boolean':
      return 'must be true or false';
    case 'object':
      return 'must be an object';
    case 'array':
      return e.keyword === 'minItems' ? `must list at least ${node.minItems}` : 'must be a list';
    case 'string':
      if (e.keyword === 'pattern') return 'must not be blank'; // nonBlank's; a duration's pattern is reported by its anyOf
      if (e.keyword === 'maxLength') return `must be at most ${node.maxLength} characters (PostgreSQL keeps 63 bytes of a name)`;
      return node.minLength ? 'must be a non-empty string' : 'must be a string';
    case 'integer':
    case 'number':
      if (node.minimum !== undefined && node.maximum !== undefined) return `must be ${a} from ${node.minimum} to ${node.maximum}`;
      if (node.type === 'integer' && node.minimum === 1) return 'must be a positive integer';
      if (node.minimum !== undefined) return `must be ${a} ≥ ${node.minimum}`;
      if (node.exclusiveMinimum !== undefined) return `must be ${a} > ${node.exclusiveMinimum}`;
      return `must be ${a}`;
  }
  return e.message ?? 'is invalid';
}

function schemaAt(schemaPath: string): Record<string, unknown> | undefined {
  let node: unknown = CONFIG_SCHEMA;
  for (const part of schemaPath.replace(/^#\//, '').split('/').slice(0, -1)) node = (node as Record<string, unknown> | undefined)?.[part];
  return (node as { properties?: Record<string, unknown> } | undefined)?.properties;
}

type Node = {
  description?: string;
  type?: string;
  const?: unknown;
  enum?: readonly unknown[];
  isFunction?: boolean;
  minLength?: number;
  minItems?: number;
  properties?: Record<string, Node>;
  anyOf?: readonly Node[];
};

/** What an option that takes one of several kinds of value expects, e.g. `false or { budget?, slack? }`. */
function describeAt(instancePath: string): string {
  let node: Node | undefined = CONFIG_SCHEMA as unknown as Node;
  for (const part of instancePath.split('/').filter(Boolean)) {
    // Down through an option that is false or an object (backfill.canary, monitor.canary) to the object's keys.
    node = node?.properties?.[part] ?? node?.anyOf?.find((b) => b.properties?.[part])?.properties?.[part];
  }
  return node?.anyOf ? describeKinds(node.anyOf) : (node?.description ?? 'see the README');
}

function describeKinds(kinds: readonly Node[]): string {
  const words = kinds.map((k): string => {
    if (k === duration.anyOf[1] || k === duration) return duration.description;
    if (k === positiveDuration.anyOf[1] || k === positiveDuration) return positiveDuration.description;
    if (k === duration.anyOf[0] || k === positiveDuration.anyOf[0]) return '';
    if (k.anyOf) return describeKinds(k.anyOf);
    if (k.description && (k.isFunction || k.type === 'object')) return k.description;
    if (k.const !== undefined) return JSON.stringify(k.const);
    if (k.enum) return k.enum.map((v) => JSON.stringify(v)).join(', ');
    if (k.type === 'null') return 'null';
    if (k.type === 'string') return k.minLength ? 'a non-empty string' : 'a string';
    if (k.type === 'array') return k.minItems ? 'a non-empty list of them' : 'a list of them';
    if (k.type === 'object') return `{ ${Object.keys(k.properties ?? {}).map((p) => `${p}?`).join(', ')} }`;
    return k.description ?? 'a value';
  });
  return words.filter(Boolean).join(' or ');
}

/** Throws `makeError(message)` naming every bad option; returns quietly when the config is valid. */
export function validateConfig(config: unknown, makeError: (message: string) => Error): void {
  const v = validator();
  if (v(config)) return;
  throw makeError(`zeroDowntime(config): ${describeConfigErrors(v.errors ?? []).join('; ')}`);
}

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

/**
 * The JSON Schema of `zeroDowntime(config)` / umzug.config.{ts,js,mjs}: the documentation of every option and what
 * validates it at start-up (ajv), before anything connects. Functions (a Knex instance, logger methods, onEvent,
 * healthCheck) are checked with the `isFunction` keyword, which JSON has no type for.
 */
const duration = {
  anyOf: [
    { type: 'number', minimum: 0 },
    { type: 'string', pattern: '^\\s*(\\d+(\\.\\d+)?\\s*(ms|s|m|h|d|w)\\s*)+$' },
  ],
  description: 'a duration: "7d", "12h", "1h30m", "30s", "500ms", or a number of milliseconds',
} as const;

const positiveInt = { type: 'integer', minimum: 1 } as const;

export const CONFIG_SCHEMA = {
  $id: 'umzug-zero-downtime/config',
  type: 'object',
  additionalProperties: false,
  required: ['knex'],
  properties: {
    knex: {
      description: 'a Knex instance (yours; you close it) or a Knex config ({ client: "pg", connection }); with a config, close() destroys the instance',
      anyOf: [{ isFunction: true }, { type: 'object', required: ['client'], properties: { client: { anyOf: [{ type: 'string' }, { isFunction: true }] } } }],
    },
    migrations: {
      description: 'glob(s) of migration files relative to cwd; default migrations/*.{ts,mts,cts,js,mjs,cjs}',
      anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } }],
    },
    cwd: { type: 'string', minLength: 1, description: 'project folder; default process.cwd()' },
    schema: { type: 'string', minLength: 1, maxLength: 63, description: 'schema bare table names belong to; default public' },
    stateSchema: { type: 'string', minLength: 1, maxLength: 63, description: 'schema of the state tables; default zero_downtime' },
    contract: {
      type: 'object',
      additionalProperties: false,
      properties: { after: { ...duration, description: 'safety window between the end of an expand and its contract; default 24h' } },
    },
    lock: {
      type: 'object',
      additionalProperties: false,
      properties: {
        timeout: { ...duration, description: 'lock_timeout of every lock-taking statement; default 1s' },
        statementTimeout: { ...duration, description: 'statement_timeout of each DDL statement and backfill batch; default 60s' },
        maxAttempts: { ...positiveInt, description: 'attempts per step on lock timeout or deadlock; default 8' },
        waitForMigrationLock: { ...duration, description: 'how long a second `umzug up` waits for the first; default 10m' },
        leaseTimeout: { ...duration, description: 'behind a transaction pooler: how long the migration lock outlives its holder\'s last heartbeat; default 15s' },
      },
    },
    backfill: {
      type: 'object',
      additionalProperties: false,
      properties: {
        batchSize: { ...positiveInt, description: 'rows per batch (the adaptive sizer starts here); default 1000' },
        pause: { ...duration, description: 'pause between batches; default 0' },
        targetBatchDuration: { ...duration, description: 'batch duration the adaptive sizer aims at; default 200ms' },
        minBatchSize: { ...positiveInt, description: 'lower bound of the adaptive batch size; default 100' },
        maxBatchSize: { ...positiveInt, description: 'upper bound of the adaptive batch size; default 50000' },
        adaptive: { type: 'boolean', description: 'false keeps every batch at batchSize; default true' },
        batchTimeout: { ...duration, description: 'statement_timeout of one batch (split and retried past it); default 10s' },
        workers: { ...positiveInt, description: 'workers per process; default 1' },
        chunkRows: { ...positiveInt, description: 'rows per chunk, the unit workers claim; default 250000' },
        maxReplicationLag: { anyOf: [{ type: 'null' }, duration], description: 'pause while a standby lags more than this; null ignores lag; default 10s' },
        healthCheck: { isFunction: true, description: 'your own check: the backfill pauses while it returns false or { ok: false }' },
        canary: {
          description: 'primary-key read timed during the backfill; false turns it off',
          anyOf: [
            { const: false },
            {
              type: 'object',
              additionalProperties: false,
              properties: { budget: { type: 'number', minimum: 1, description: 'p99 may reach baseline × budget; default 1.5' }, slack: { ...duration, description: 'and at least baseline + slack; default 2ms' } },
            },
          ],
        },
      },
    },
    pooling: {
      enum: ['auto', 'session', 'transaction'],
      description: 'what is between us and PostgreSQL: session (direct, or PgBouncer session mode), transaction (PgBouncer pool_mode = transaction), auto (default: detected)',
    },
    mongo: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      description: 'where mongoToPostgres() changes read their collections: { url, database?, clientOptions? } (the mongodb driver loads only when a move runs)',
      properties: {
        url: { type: 'string', minLength: 1, description: 'a mongodb:// URL' },
        database: { type: 'string', minLength: 1, description: 'database of collections named without one; default the one in the URL' },
        clientOptions: { type: 'object', description: 'extra MongoClient options' },
      },
    },
    knexHistory: {
      description: 'a Knex project\'s migrations table, read and kept as part of the history: { tableName?, schemaName? } (default knex_migrations), or false',
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
      description: "the unsafe-DDL linter before `up` runs plain migrations: 'error' (an error-level finding stops up, nothing run), 'warn' (default: printed), 'off', or { level?, rules?: { <rule>: 'error' | 'warn' | 'off' } }",
      anyOf: [
        { enum: ['error', 'warn', 'off'] },
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            level: { enum: ['error', 'warn', 'off'] },
            rules: { type: 'object', additionalProperties: { enum: ['error', 'warn', 'off'] } },
          },
        },
      ],
    },
    plainMigrations: { enum: ['umzug', 'knex'], description: 'how plain migration files are called: umzug ({ name, path, context }) or knex (the Knex instance); default umzug' },
    logger: {
      description: 'Umzug-style logger with info, warn, error, debug; null for silence; default console',
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          required: ['info', 'warn', 'error', 'debug'],
          properties: { info: { isFunction: true }, warn: { isFunction: true }, error: { isFunction: true }, debug: { isFunction: true } },
        },
      ],
    },
    createFolder: { type: 'string', minLength: 1, description: 'folder `create` writes to when no migration exists yet; default migrations' },
    onEvent: { isFunction: true, description: 'called with every engine event (step, retry, backfill batch, verify)' },
    thresholds: {
      type: 'object',
      additionalProperties: false,
      description: 'when the monitor calls a breach',
      properties: {
        mismatchPercent: { type: 'number', minimum: 0, maximum: 100, description: 'share of rows verify may find disagreeing, in percent; default 1' },
        canaryP99Factor: { type: 'number', exclusiveMinimum: 0, description: "canary p99 may reach this multiple of its baseline; default the pacer's budget, backfill.canary.budget (1.5)" },
        canaryMinIncrease: { ...duration, description: "and at least baseline + this; default the pacer's slack, backfill.canary.slack (2ms)" },
        canarySustainedWindows: { type: 'integer', minimum: 1, description: 'windows running the p99 must stay over the limit to be a breach; default 2' },
        maxErrors: { type: 'integer', minimum: 0, description: 'errors allowed per errorWindow; default 20' },
        errorWindow: { ...duration, description: 'default 1m' },
        noProgressFor: { ...duration, description: 'a running backfill that has not advanced for this long is a breach; default 1h' },
      },
    },
    autoRollback: { type: 'boolean', description: 'on a breach during up, revert the in-flight change instead of pausing; default false' },
    monitor: {
      type: 'object',
      additionalProperties: false,
      properties: {
        canary: {
          description: "the monitor's canary probe; false for none",
          anyOf: [
            { const: false },
            {
              type: 'object',
              additionalProperties: false,
              properties: {
                sql: { type: 'string', minLength: 1, description: 'a query the application runs often, without parameters' },
                interval: { ...duration, description: 'time between probes; default 50ms' },
                window: { ...duration, description: 'p50/p99 window; default 10s' },
                baselineSamples: { ...positiveInt, description: 'probes for the baseline; default 30' },
                timeout: { ...duration, description: 'a probe stuck longer is cancelled; default 2s' },
              },
            },
          ],
        },
        sampleEvery: { ...duration, description: "how often a running backfill's figures are recorded; default 5s" },
      },
    },
  },
} as const;

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
  validate = ajv.compile(CONFIG_SCHEMA);
  return validate;
}

/** Plain words for ajv's errors, naming the option by its path (`lock.timeout`, `backfill.canary.budget`). */
export function describeConfigErrors(errors: readonly ErrorObject[]): string[] {
  const out: string[] = [];
  const fieldOf = (p: string) => p.split('/').filter(Boolean).join('.') || '(config)';
  // anyOf reports each branch's failure too; keep one line per alternative option, unless a deeper error says more.
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const hasDeeper = (p: string) => errors.some((e) => e.instancePath.startsWith(p + '/'));
  // Errors of the branch that fits the value's kind (an object's unknown or missing keys) say more than "wrong type".
  const specific = (e: ErrorObject) => ['additionalProperties', 'required'].includes(e.keyword);
  const hasSpecific = (p: string) => errors.some((e) => e.instancePath === p && specific(e));
  for (const e of errors) {
    const field = fieldOf(e.instancePath);
    if (e.keyword === 'anyOf') {
      if (!hasDeeper(e.instancePath) && !hasSpecific(e.instancePath)) out.push(`${field} must be ${describeAt(e.instancePath)}, got ${JSON.stringify(e.data)}`);
      continue;
    }
    if (anyOfPaths.has(e.instancePath) && !specific(e)) continue;
    switch (e.keyword) {
      case 'additionalProperties': {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = Object.keys(schemaAt(e.schemaPath) ?? {});
        out.push(`unknown key ${field === '(config)' ? '' : field + '.'}${extra}${allowed.length ? ` (known: ${allowed.join(', ')})` : ''}`);
        break;
      }
      case 'required':
        out.push(`${field === '(config)' ? '' : field + '.'}${(e.params as { missingProperty: string }).missingProperty} is required`);
        break;
      case 'isFunction':
        out.push(`${field} must be a function`);
        break;
      case 'enum':
        out.push(`${field} must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(e.data)}`);
        break;
      default:
        out.push(`${field} ${expectation(e)}, got ${JSON.stringify(e.data)}`);
    }
  }
  return [...new Set(out)];
}

/** What a failed type or bound check expected, in the words the rest of the config errors use. */
function expectation(e: ErrorObject): string {
  const node = (e.parentSchema ?? {}) as { type?: string; minimum?: number; maximum?: number; exclusiveMinimum?: number };
  if (node.type === 'boolean') return 'must be true or false';
  if (node.type === 'integer' && node.minimum === 1) return 'must be a positive integer';
  if (node.minimum !== undefined && node.maximum !== undefined) return `must be a number from ${node.minimum} to ${node.maximum}`;
  if (e.keyword === 'minimum' || (e.keyword === 'type' && node.minimum !== undefined)) return `must be a number ≥ ${node.minimum}`;
  if (e.keyword === 'exclusiveMinimum' || (e.keyword === 'type' && node.exclusiveMinimum !== undefined)) return `must be a number > ${node.exclusiveMinimum}`;
  return e.message ?? 'is invalid';
}

function schemaAt(schemaPath: string): Record<string, unknown> | undefined {
  let node: unknown = CONFIG_SCHEMA;
  for (const part of schemaPath.replace(/^#\//, '').split('/').slice(0, -1)) node = (node as Record<string, unknown> | undefined)?.[part];
  return (node as { properties?: Record<string, unknown> } | undefined)?.properties;
}

function describeAt(instancePath: string): string {
  let node: unknown = CONFIG_SCHEMA;
  for (const part of instancePath.split('/').filter(Boolean)) node = (node as { properties?: Record<string, unknown> } | undefined)?.properties?.[part];
  const n = node as { description?: string; anyOf?: readonly unknown[] } | undefined;
  if (n?.anyOf?.includes(duration.anyOf[1])) return duration.description;
  return n?.description ?? 'see the README';
}

/** Throws `makeError(message)` naming every bad option; returns quietly when the config is valid. */
export function validateConfig(config: unknown, makeError: (message: string) => Error): void {
  const v = validator();
  if (v(config)) return;
  throw makeError(`zeroDowntime(config): ${describeConfigErrors(v.errors ?? []).join('; ')}`);
}

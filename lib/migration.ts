import type { Statement } from './db/db.js';
import type { CatalogSnapshot } from './postgres/catalog.js';
import type { TableName } from './postgres/identifiers.js';

export type { Statement } from './db/db.js';

/**
 * One unit the engine runs and records. A transactional step runs all its statements in one transaction with
 * SET LOCAL lock_timeout; a non-transactional one (CREATE INDEX CONCURRENTLY…) must be idempotent, because a
 * crash can leave it done but unrecorded.
 */
export interface Step {
  /** Stable within its phase: the state table records steps by this id. */
  readonly id: string;
  readonly description: string;
  readonly statements: readonly Statement[];
  readonly transactional: boolean;
  /**
   * The index a non-transactional step builds with CREATE INDEX CONCURRENTLY. A failed or interrupted build leaves an
   * INVALID index behind, which IF NOT EXISTS would then take for done: the executor drops such a leftover (DROP INDEX
   * CONCURRENTLY) before each attempt and after a failed one.
   */
  readonly concurrentIndex?: { readonly schema: string; readonly name: string };
}

/**
 * `UPDATE table SET column = expression … WHERE column IS DISTINCT FROM expression`, batch by batch on the key.
 * Expressions are SQL written by the migration author over the table's columns.
 */
export interface BackfillSpec {
  readonly table: TableName;
  readonly set: readonly { readonly column: string; readonly expression: string }[];
  /**
   * Which rows a batch writes: 'distinct' (default) those whose value differs from the expression, 'null' only
   * those where the column is still NULL (for a value the application may have set itself meanwhile).
   */
  readonly only?: 'distinct' | 'null';
  /** Copy rows into another table instead of updating `table` (splitTable, mergeTables); `set` is then empty. */
  readonly copy?: CopySpec;
  /** Each batch makes these tables equal to the walked table over the batch's key range (the undo of a merge's contract). */
  readonly mirror?: readonly MirrorSpec[];
  /**
   * A table LEFT JOINed 1:0..1 on the key as `_zd_a`, which `set` expressions may read (a column archive, when down
   * restores from it): one merge of two key ranges per batch instead of a subquery per row.
   */
  readonly join?: BackfillJoin;
  /**
   * The key of every row a batch writes goes into `into` (its `columns`, in key order) in the batch's own statement,
   * so what the backfill changed is recorded exactly and without a scan of the table (setNotNull: the rows that were
   * NULL, which down makes NULL again).
   */
  readonly archiveKeys?: { readonly into: TableName; readonly columns: readonly string[] };
}

export interface BackfillJoin {
  readonly table: TableName;
  /** `table`'s key column → the joined table's column holding it, in key order. */
  readonly on: readonly { readonly column: string; readonly joined: string }[];
}

/**
 * A batch of a copy backfill walks `table` by its key and writes the rows into `into`. 'insert' adds the rows `into`
 * lacks and leaves the others to the sync triggers (which always write the current value, so an older snapshot never
 * overwrites them); 'update' rewrites existing rows of `into` that differ. Source rows are locked FOR SHARE for the
 * batch, so a row changed or deleted meanwhile is copied as it is now, or not at all.
 */
export interface CopySpec {
  readonly into: TableName;
  /** Key columns: the same names in `table`, `join` and `into` (unless `intoKey` names them in `into`). */
  readonly key: readonly string[];
  /** The key columns' names in `into`, in `key`'s order, where they differ (a column archive's _zd_k0, _zd_k1…). */
  readonly intoKey?: readonly string[];
  /** Columns of `into` (besides the key) ← SQL over the walked row `_zd_s` and the joined row `_zd_j`. */
  readonly columns: readonly { readonly column: string; readonly expression: string }[];
  /** A table joined 1:0..1 on the key (LEFT JOIN), for merges. */
  readonly join?: TableName;
  /** insert: new rows only (a row already there is left); upsert: also rewrites rows that differ (repair); update: existing rows of `into`. */
  readonly mode: 'insert' | 'upsert' | 'update';
  /** A setting turned on (transaction-local) for the batch, so the sync triggers do not echo its writes back. */
  readonly quietFlag?: string;
}

/**
 * A table a mirror backfill keeps equal to the walked table, batch by batch: rows that differ are upserted, rows
 * whose key the walked table lacks are deleted. Source rows are locked FOR SHARE for the batch, as for a copy.
 */
export interface MirrorSpec {
  readonly into: TableName;
  /** Key columns, the same names in the walked table and `into`; `into`'s primary key. */
  readonly key: readonly string[];
  /** Columns besides the key, the same names on both sides. */
  readonly columns: readonly string[];
  /**
   * A 1 : 0..1 side (a merge's `b`): a row it lacks is added only when one of `columns` has a value; a row it has
   * always follows the walked one.
   */
  readonly sparse?: boolean;
  /** A setting turned on (transaction-local) for the batch, so sync triggers do not echo its writes back. */
  readonly quietFlag?: string;
}

/** Every row must satisfy `column IS NOT DISTINCT FROM expression` for each pair. */
export interface VerifySpec {
  readonly table: TableName;
  readonly equal: readonly { readonly column: string; readonly expression: string }[];
}

/**
 * Work that is not SQL (moving a MongoDB collection), run by a runner registered with Engine.registerTaskRunner(kind).
 * Recorded in the steps table like a step (id `task:<id>`), so a finished task is skipped on resume; a runner must
 * resume from its own saved progress. `params` is plain data read by the runner; the description stays pure.
 */
export interface TaskSpec {
  readonly kind: string;
  /** Stable within its phase. */
  readonly id: string;
  readonly description: string;
  readonly params: Readonly<Record<string, unknown>>;
}

/**
 * A check the engine runs before a change installs anything: every row of `table` (matching `where`) must evaluate
 * `expression` without an error. A row that cannot (a cast of 'abc' to integer, a division by zero) makes the engine
 * refuse the change with the count and sample keys, having changed nothing.
 */
export interface PreflightCheck {
  readonly table: TableName;
  /** SQL over the table's columns, as the backfill will evaluate it. */
  readonly expression: string;
  /** Only these rows are evaluated (SQL over the table's columns), e.g. the NULL rows a backfill fills. */
  readonly where?: string;
  /** What is evaluated, in plain words, e.g. `CAST(code AS integer)`. */
  readonly what: string;
  /** How the author gets past it, e.g. give a `using`/`up` expression or clean the rows. */
  readonly fix: string;
}

/**
 * Rows a sync trigger could not convert are recorded in `<stateSchema>.conversion_errors` under this table and
 * target column (see lib/postgres/conversion-errors.ts) instead of failing the application's write. The engine's
 * verify reports them, drops the records of rows that convert now, and the contract gate stays closed while any remain.
 */
export interface ConversionLogSpec {
  readonly table: TableName;
  readonly target: string;
  /** The conversion as SQL over the table's row (raw, without the guard), to test whether a recorded row converts now. */
  readonly expression: string;
}

/** What one phase of a change does, in order: steps, backfill, steps after the backfill, tasks, verification. */
export interface PhasePlan {
  /** Checked before any step of the change runs (expand only); a failing row refuses the change. */
  readonly preflight?: readonly PreflightCheck[];
  /** Where the phase's sync trigger records the rows it could not convert (expand only). */
  readonly conversionLog?: ConversionLogSpec;
  readonly steps: readonly Step[];
  readonly backfill?: BackfillSpec;
  readonly afterBackfill?: readonly Step[];
  readonly verify?: VerifySpec;
  readonly tasks?: readonly TaskSpec[];
}

export type Precondition =
  | { readonly kind: 'table-exists'; readonly table: TableName }
  | { readonly kind: 'has-primary-key'; readonly table: TableName }
  | { readonly kind: 'column-exists'; readonly table: TableName; readonly column: string }
  | { readonly kind: 'column-absent'; readonly table: TableName; readonly column: string }
  /** No relation at all (table, view, index, sequence) by this schema-qualified name. */
  | { readonly kind: 'relation-absent'; readonly table: TableName }
  | { readonly kind: 'index-exists'; readonly table: TableName; readonly index: string }
  | { readonly kind: 'constraint-absent'; readonly table: TableName; readonly constraint: string };

/** The generated plan of a change: four phases, each the exact inverse of another. */
export interface ChangeDescription {
  readonly summary: string;
  readonly expand: PhasePlan;
  readonly contract: PhasePlan;
  readonly undoExpand: PhasePlan;
  readonly undoContract: PhasePlan;
  /** A read-cutover flag that must be at 100 % before the contract may run. */
  readonly readFlag?: string;
}

export interface ResolveContext {
  /** The schema a bare table name belongs to. */
  readonly defaultSchema: string;
  /** The engine's state schema, where dropped tables are archived until purge. Default `zero_downtime`. */
  readonly stateSchema?: string;
}

/**
 * A typed change, as written in a migration file. It is a pure description: the engine reads the catalog for the
 * tables it names, checks its preconditions, and asks it for its plan. A change never talks to the database.
 */
export interface Change {
  readonly kind: string;
  /** Tables to introspect, in the configured default schema when given bare. */
  tables(ctx: ResolveContext): readonly TableName[];
  preconditions(ctx: ResolveContext): readonly Precondition[];
  /** Called with the catalog as it was when the change first ran (stored in the state table). */
  describe(catalog: CatalogSnapshot, ctx: ResolveContext): ChangeDescription;
}

export interface MigrationDefinition {
  readonly changes: readonly Change[];
  /**
   * Set by `create --draft` on a file whose options are still TODO placeholders: `up` refuses to run it, saying
   * this text, until the line is deleted.
   */
  readonly draft?: string;
}

const MIGRATION_MARK = Symbol.for('umzug-zero-downtime.migration');

export interface DefinedMigration extends MigrationDefinition {
  readonly [MIGRATION_MARK]: true;
}

/** Marks a migration file's default export as a typed, phased migration. */
export function defineMigration(def: MigrationDefinition): DefinedMigration {
  if (!def || !Array.isArray(def.changes) || def.changes.length === 0) {
    throw new TypeError('defineMigration: `changes` must be a non-empty array of changes (addColumn(...), renameColumn(...), …)');
  }
  return Object.freeze({ ...def, changes: Object.freeze([...def.changes]), [MIGRATION_MARK]: true as const });
}

/** Checked by shape, not instanceof: a project may load two copies of this package. */
export function isDefinedMigration(value: unknown): value is DefinedMigration {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[MIGRATION_MARK] === true;
}

export const EMPTY_PHASE: PhasePlan = Object.freeze({ steps: [] });

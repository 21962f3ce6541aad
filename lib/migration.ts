import type { Statement } from './db/db.js';
import type { CatalogSnapshot } from './postgres/catalog.js';
import type { TableName } from './postgres/identifiers.js';
import type { PartitionIndexCatchUp, PartitionIndexLeftovers } from './postgres/partitions.js';
import type { BackfillSpec, PreflightCheck } from './postgres/specs.js';

export type { Statement } from './db/db.js';
export type { BackfillJoin, BackfillSpec, CopySpec, MirrorSpec, PreflightCheck } from './postgres/specs.js';

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
  /**
   * A step planned for one partition of a partitioned table: once that partition is no longer below `root` (detached
   * or dropped since the change read the catalog) it has nothing to do, and is recorded as done without running.
   */
  readonly partition?: { readonly root: TableName; readonly table: TableName };
  /**
   * Run before the step's statements: what partitions created or attached since the change read the catalog lack of
   * a partitioned index is built (CONCURRENTLY) and attached, and the index made valid again after a detach.
   */
  readonly partitionIndexCatchUp?: PartitionIndexCatchUp;
  /** Run before the step's statements: what a killed catch-up left on partitions the change did not read is dropped. */
  readonly partitionIndexLeftovers?: PartitionIndexLeftovers;
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

import type { TableName } from './identifiers.js';

/*
 * What the engine's SQL builders are given: the backfill's, copy's and mirror's batch writes and the preflight
 * checks. Changes describe them (lib/migration.ts re-exports them with the rest of a change's description); they live
 * here, beside the SQL built from them, so this folder never imports upward.
 */

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
  /**
   * The sync trigger (created by triggers.ts, named so) whose work this backfill's UPDATE does itself: skipped for the
   * batch's own rows, still fired by every other writer.
   */
  readonly quietTrigger?: string;
  /**
   * `set` without its per-row guard (the author's expression where `set` calls a try function that records a row
   * it cannot convert). A batch writes these first, under a savepoint, and only when one of its rows fails falls
   * back to `set`: the guard's subtransaction per row is paid by the batches that need it, not by all.
   */
  readonly tryFirst?: readonly { readonly column: string; readonly expression: string }[];
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

import type { Statement } from '../db/db.js';
import { ChangeInputError, ident, qualified, type TableName } from './identifiers.js';

/**
 * Index and constraint DDL. CONCURRENTLY statements cannot run inside a transaction block, so each one is a step of
 * its own; constraints go in NOT VALID (a brief lock, no scan) and are validated in a separate transaction
 * (SHARE UPDATE EXCLUSIVE: reads and writes go on during the scan).
 */
const st = (text: string): Statement => ({ text });

export interface IndexSpec {
  readonly name: string;
  readonly columns: readonly string[];
  readonly unique: boolean;
  /** An index access method (btree, gin, gist, hash, brin, spgist…), checked to be a plain word. */
  readonly using?: string;
  readonly include?: readonly string[];
  /** A SQL predicate over the table's columns, written by the migration author. */
  readonly where?: string;
}

export function checkAccessMethod(using: unknown): string {
  if (typeof using !== 'string' || !/^[a-z_][a-z0-9_]*$/i.test(using)) {
    throw new ChangeInputError(`addIndex: using must be an index access method such as "btree" or "gin", got ${JSON.stringify(using)}`);
  }
  return using.toLowerCase();
}

/** IF NOT EXISTS makes a re-run after a crash a no-op once the build finished; an INVALID leftover is dropped first by the executor. */
export function createIndexConcurrently(t: TableName, spec: IndexSpec): Statement {
  const using = spec.using ? ` USING ${checkAccessMethod(spec.using)}` : '';
  const include = spec.include && spec.include.length > 0 ? ` INCLUDE (${spec.include.map(ident).join(', ')})` : '';
  const where = spec.where ? ` WHERE (${spec.where})` : '';
  return st(
    `CREATE ${spec.unique ? 'UNIQUE ' : ''}INDEX CONCURRENTLY IF NOT EXISTS ${ident(spec.name)} ON ${qualified(t)}${using} (${spec.columns.map(ident).join(', ')})${include}${where}`,
  );
}

/**
 * The definition pg_get_indexdef() printed at first run, made concurrent and idempotent. PostgreSQL printed it, so
 * its identifiers are already quoted; only the leading keywords are rewritten.
 */
export function recreateIndexConcurrently(definition: string): Statement {
  const m = /^CREATE (UNIQUE )?INDEX /.exec(definition);
  if (!m) throw new Error(`unexpected index definition from pg_get_indexdef: ${definition}`);
  return st(`CREATE ${m[1] ?? ''}INDEX CONCURRENTLY IF NOT EXISTS ${definition.slice(m[0].length)}`);
}

export function dropIndexConcurrently(schema: string, name: string): Statement {
  return st(`DROP INDEX CONCURRENTLY IF EXISTS ${qualified({ schema, name })}`);
}

/** Promotes a finished unique index to a constraint: no scan, a brief ACCESS EXCLUSIVE lock. The index takes the constraint's name. */
export function addConstraintUsingIndex(t: TableName, constraint: string, index: string, kind: 'UNIQUE' | 'PRIMARY KEY' = 'UNIQUE'): Statement {
  return st(`ALTER TABLE ${qualified(t)} ADD CONSTRAINT ${ident(constraint)} ${kind} USING INDEX ${ident(index)}`);
}

export interface ForeignKeySpec {
  readonly name: string;
  readonly columns: readonly string[];
  readonly references: TableName;
  readonly referencedColumns: readonly string[];
  readonly onDelete?: ReferentialAction;
  readonly onUpdate?: ReferentialAction;
}

export const REFERENTIAL_ACTIONS = ['NO ACTION', 'RESTRICT', 'CASCADE', 'SET NULL', 'SET DEFAULT'] as const;
export type ReferentialAction = (typeof REFERENTIAL_ACTIONS)[number];

/** NOT VALID: SHARE ROW EXCLUSIVE on both tables for a moment, and no scan; only new and changed rows are checked. */
export function addForeignKeyNotValid(t: TableName, fk: ForeignKeySpec): Statement {
  const actions = `${fk.onDelete ? ` ON DELETE ${fk.onDelete}` : ''}${fk.onUpdate ? ` ON UPDATE ${fk.onUpdate}` : ''}`;
  return st(
    `ALTER TABLE ${qualified(t)} ADD CONSTRAINT ${ident(fk.name)} FOREIGN KEY (${fk.columns.map(ident).join(', ')}) ` +
      `REFERENCES ${qualified(fk.references)} (${fk.referencedColumns.map(ident).join(', ')})${actions} NOT VALID`,
  );
}

export function addCheckNotValid(t: TableName, name: string, check: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} ADD CONSTRAINT ${ident(name)} CHECK (${check}) NOT VALID`);
}

/**
 * A name in PostgreSQL's own style (`orders_user_id_fkey`) when it fits in 63 bytes; else a short hashed one, since a
 * name PostgreSQL truncates can collide with another object.
 */
export function defaultObjectName(table: string, columns: readonly string[], suffix: string, hashed: (...parts: string[]) => string): string {
  const plain = `${table}_${columns.join('_')}_${suffix}`;
  return Buffer.byteLength(plain, 'utf8') <= 63 ? plain : hashed(table, ...columns, suffix);
}

import type { Statement } from '../db/db.js';
import { ident, literal, qualified, type TableName } from './identifiers.js';

/**
 * Every DDL statement the changes use, built in one place. Identifiers go through ident(); types and default
 * expressions come from the catalog (format_type, pg_get_expr) or from the migration author's SQL; constant
 * defaults given as values become literals, since DDL takes no parameters.
 */
const st = (text: string): Statement => ({ text });

export function addColumn(t: TableName, column: string, type: string, opts: { defaultSql?: string | null; notNull?: boolean } = {}): Statement {
  const def = opts.defaultSql != null ? ` DEFAULT ${opts.defaultSql}` : '';
  return st(`ALTER TABLE ${qualified(t)} ADD COLUMN ${ident(column)} ${type}${def}${opts.notNull ? ' NOT NULL' : ''}`);
}

export function dropColumnIfExists(t: TableName, column: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} DROP COLUMN IF EXISTS ${ident(column)}`);
}

export function setDefault(t: TableName, column: string, defaultSql: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} ALTER COLUMN ${ident(column)} SET DEFAULT ${defaultSql}`);
}

export function dropDefault(t: TableName, column: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} ALTER COLUMN ${ident(column)} DROP DEFAULT`);
}

/** NOT VALID: only new and updated rows are checked, so adding it takes a brief lock and no table scan. */
export function addNotNullCheck(t: TableName, constraint: string, column: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} ADD CONSTRAINT ${ident(constraint)} CHECK (${ident(column)} IS NOT NULL) NOT VALID`);
}

/** VALIDATE takes SHARE UPDATE EXCLUSIVE: it scans, but reads and writes go on. */
export function validateConstraint(t: TableName, constraint: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} VALIDATE CONSTRAINT ${ident(constraint)}`);
}

/** With a validated CHECK (col IS NOT NULL) in place, PostgreSQL 12+ skips the full-table scan here. */
export function setNotNull(t: TableName, column: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} ALTER COLUMN ${ident(column)} SET NOT NULL`);
}

export function dropNotNull(t: TableName, column: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} ALTER COLUMN ${ident(column)} DROP NOT NULL`);
}

export function dropConstraintIfExists(t: TableName, constraint: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} DROP CONSTRAINT IF EXISTS ${ident(constraint)}`);
}

export function constantLiteral(value: string | number | boolean | null, type: string): string {
  if (value === null) return 'NULL';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`default ${value} is not a finite number`);
    return `CAST(${literal(String(value))} AS ${type})`;
  }
  return `CAST(${literal(String(value))} AS ${type})`;
}

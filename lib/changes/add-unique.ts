import type { Change } from '../migration.js';
import { ident, objectName, resolveTable, type TableInput } from '../postgres/identifiers.js';
import { defaultObjectName } from '../postgres/index-sql.js';
import { addIndex } from './add-index.js';
import { checkName, checkNames } from './common.js';

export interface AddUniqueOptions {
  readonly table: TableInput;
  readonly columns: readonly string[];
  /** The constraint's name; default `<table>_<columns>_key`, PostgreSQL's own style. */
  readonly name?: string;
}

/**
 * A UNIQUE constraint without the table-long ACCESS EXCLUSIVE lock of ADD CONSTRAINT … UNIQUE: a unique index built
 * CONCURRENTLY, then promoted with ADD CONSTRAINT … USING INDEX (a brief lock, no scan).
 */
export function addUnique(options: AddUniqueOptions): Change {
  const columns = checkNames(options?.columns, 'addUnique: columns');
  columns.forEach(ident);
  const explicit = options.name !== undefined ? checkName(options.name, 'addUnique: name') : undefined;
  if (explicit) ident(explicit);
  // The index gets a temporary name; USING INDEX renames it to the constraint's.
  const tableName = resolveTable(options.table, '_').name;
  const constraint = explicit ?? defaultObjectName(tableName, columns, 'key', (...p) => objectName('zd_uq', ...p));
  const change = addIndex({ table: options.table, columns, unique: true, name: objectName('zd_uqidx', tableName, ...columns), constraint });
  return { ...change, kind: 'addUnique' };
}

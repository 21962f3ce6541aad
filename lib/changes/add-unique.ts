import type { Change } from '../migration.js';
import { ident, objectName, resolveTable } from '../postgres/identifiers.js';
import { defaultObjectName } from '../postgres/index-sql.js';
import { addIndex } from './add-index.js';
import { checkOptions, NAME, NAMES, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const addUniqueSchema = {
  'x-change': 'addUnique',
  'x-template': 'add-unique',
  description: 'Adds a UNIQUE constraint without a long lock: a unique index built CONCURRENTLY, then promoted with ADD CONSTRAINT … USING INDEX (a brief lock, no scan).',
  type: 'object',
  additionalProperties: false,
  required: ['table', 'columns'],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table' },
    columns: { ...NAMES, default: ['my_column'], 'x-cli': '--columns', description: 'the columns that must be unique together' },
    name: { ...NAME, 'x-cli': '--constraint', description: "the constraint's name (default <table>_<columns>_key)" },
  },
} as const satisfies ChangeSchema;

export type AddUniqueOptions = OptionsOf<typeof addUniqueSchema>;

/**
 * A UNIQUE constraint without the table-long ACCESS EXCLUSIVE lock of ADD CONSTRAINT … UNIQUE: a unique index built
 * CONCURRENTLY, then promoted with ADD CONSTRAINT … USING INDEX (a brief lock, no scan).
 */
export function addUnique(options: AddUniqueOptions): Change {
  checkOptions(addUniqueSchema, options);
  const { columns } = options;
  columns.forEach(ident);
  const explicit = options.name;
  if (explicit) ident(explicit);
  // The index gets a temporary name; USING INDEX renames it to the constraint's.
  const tableName = resolveTable(options.table, '_').name;
  const constraint = explicit ?? defaultObjectName(tableName, columns, 'key', (...p) => objectName('zd_uq', ...p));
  const change = addIndex({ table: options.table, columns, unique: true, name: objectName('zd_uqidx', tableName, ...columns), constraint });
  return { ...change, kind: 'addUnique' };
}

import type { Change } from '../migration.js';
import type { ChangeSchema } from './options.js';
import { addCheck, addCheckSchema } from './add-check.js';
import { addColumn, addColumnSchema } from './add-column.js';
import { addForeignKey, addForeignKeySchema } from './add-foreign-key.js';
import { addIndex, addIndexSchema } from './add-index.js';
import { addUnique, addUniqueSchema } from './add-unique.js';
import { changeColumnType, changeColumnTypeSchema } from './change-column-type.js';
import { createTable, createTableSchema } from './create-table.js';
import { deriveColumn, deriveColumnSchema } from './derive-column.js';
import { dropColumn, dropColumnSchema } from './drop-column.js';
import { dropIndex, dropIndexSchema } from './drop-index.js';
import { dropTable, dropTableSchema } from './drop-table.js';
import { mergeTables, mergeTablesSchema } from './merge-tables.js';
import { mongoToPostgres } from './mongo-to-postgres.js';
import { renameColumn, renameColumnSchema } from './rename-column.js';
import { renameTable, renameTableSchema } from './rename-table.js';
import { setNotNull, setNotNullSchema } from './set-not-null.js';
import { splitTable, splitTableSchema } from './split-table.js';
import { sql, sqlSchema } from './sql.js';

/**
 * Every change constructor by its exported name: what a template's `x-change` names, so `create` can check a
 * template's parameters with the constructor `up` will call.
 */
export const CHANGE_CONSTRUCTORS: Readonly<Record<string, (options: never) => Change>> = {
  addCheck,
  addColumn,
  addForeignKey,
  addIndex,
  addUnique,
  changeColumnType,
  createTable,
  deriveColumn,
  dropColumn,
  dropIndex,
  dropTable,
  mergeTables,
  mongoToPostgres,
  renameColumn,
  renameTable,
  setNotNull,
  splitTable,
  sql,
};

/**
 * The options of every change written as a JSON Schema (changes/options.ts): its TypeScript type, its constructor's
 * validation and its `create` template come from it. mongoToPostgres is the exception: its options are a move's
 * mapping, checked by the mover (lib/mongo/move.ts).
 */
export const CHANGE_SCHEMAS: readonly ChangeSchema[] = [
  addCheckSchema,
  addColumnSchema,
  addForeignKeySchema,
  addIndexSchema,
  addUniqueSchema,
  changeColumnTypeSchema,
  createTableSchema,
  deriveColumnSchema,
  dropColumnSchema,
  dropIndexSchema,
  dropTableSchema,
  mergeTablesSchema,
  renameColumnSchema,
  renameTableSchema,
  setNotNullSchema,
  splitTableSchema,
  sqlSchema,
];

import type { Change } from '../migration.js';
import { addCheck } from './add-check.js';
import { addColumn } from './add-column.js';
import { addForeignKey } from './add-foreign-key.js';
import { addIndex } from './add-index.js';
import { addUnique } from './add-unique.js';
import { changeColumnType } from './change-column-type.js';
import { createTable } from './create-table.js';
import { deriveColumn } from './derive-column.js';
import { dropColumn } from './drop-column.js';
import { dropIndex } from './drop-index.js';
import { dropTable } from './drop-table.js';
import { mergeTables } from './merge-tables.js';
import { mongoToPostgres } from './mongo-to-postgres.js';
import { renameColumn } from './rename-column.js';
import { renameTable } from './rename-table.js';
import { setNotNull } from './set-not-null.js';
import { splitTable } from './split-table.js';
import { sql } from './sql.js';

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

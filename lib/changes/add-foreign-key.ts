import type { Change, ResolveContext } from '../migration.js';
import { dropConstraintIfExists, validateConstraint } from '../postgres/ddl.js';
import { ChangeInputError, ident, objectName, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { addForeignKeyNotValid, defaultObjectName, REFERENTIAL_ACTIONS, type ReferentialAction } from '../postgres/index-sql.js';
import { tableInfo } from '../postgres/catalog.js';
import { txStep } from './common.js';
import { FOREIGN_KEY_NOT_VALID_ON_PARTITIONED, refusePartitioned, refuseReferenceBefore12 } from './partitioned.js';
import { checkOptions, NAME, NAMES, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const addForeignKeySchema = {
  'x-change': 'addForeignKey',
  'x-template': 'add-foreign-key',
  description: "Adds a foreign key NOT VALID (a moment of SHARE ROW EXCLUSIVE, no scan), then VALIDATEs it while writes go on.",
  type: 'object',
  additionalProperties: false,
  required: ["table", "columns", "references"],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the referencing table' },
    columns: { ...NAMES, default: ["other_id"], 'x-cli': '--columns', description: 'its referencing columns' },
    references: { type: 'object', additionalProperties: false, required: ["table", "columns"], default: {}, properties: {
      table: { ...TABLE, default: 'other_table', 'x-cli': '--references-table', description: 'the referenced table' },
      columns: { ...NAMES, default: ["id"], 'x-cli': '--references-columns', description: 'the referenced columns (a primary key or unique constraint)' },
    } },
    name: { ...NAME, 'x-cli': '--constraint', description: "the constraint's name (default <table>_<columns>_fkey)" },
    onDelete: { type: 'string', enum: REFERENTIAL_ACTIONS, 'x-cli': '--on-delete', description: 'ON DELETE action' },
    onUpdate: { type: 'string', enum: REFERENTIAL_ACTIONS, 'x-cli': '--on-update', description: 'ON UPDATE action' },
  },
} as const satisfies ChangeSchema;

export type AddForeignKeyOptions = OptionsOf<typeof addForeignKeySchema>;

/** `on delete cascade` is written many ways; the schema lists PostgreSQL's own spelling. */
function actionCase(value: unknown): unknown {
  return typeof value === 'string' ? value.toUpperCase().trim().replace(/\s+/g, ' ') : value;
}

/**
 * Adds a foreign key in two transactions: ADD … NOT VALID (a moment of SHARE ROW EXCLUSIVE on both tables, no scan),
 * then VALIDATE (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the referenced one: writes go on during the scan).
 */
export function addForeignKey(options: AddForeignKeyOptions): Change {
  if (options && typeof options === 'object') {
    options = { ...options, ...(options.onDelete !== undefined ? { onDelete: actionCase(options.onDelete) as ReferentialAction } : {}), ...(options.onUpdate !== undefined ? { onUpdate: actionCase(options.onUpdate) as ReferentialAction } : {}) };
  }
  checkOptions(addForeignKeySchema, options);
  const { columns, onDelete, onUpdate } = options;
  const refColumns = options.references.columns;
  if (refColumns.length !== columns.length) {
    throw new ChangeInputError(`addForeignKey: ${columns.length} columns reference ${refColumns.length} columns; the counts must match`);
  }
  [...columns, ...refColumns].forEach(ident);
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  const refTable = (ctx: ResolveContext): TableName => resolveTable(options.references.table, ctx.defaultSchema);
  const explicit = options.name;
  if (explicit !== undefined) ident(explicit);
  const nameFor = (t: TableName) => explicit ?? defaultObjectName(t.name, columns, 'fkey', (...p) => objectName('zd_fk', ...p));
  return {
    kind: 'addForeignKey',
    tables: (ctx) => [table(ctx), refTable(ctx)],
    preconditions: (ctx) => {
      const t = table(ctx);
      const r = refTable(ctx);
      return [
        { kind: 'table-exists', table: t },
        { kind: 'table-exists', table: r },
        ...columns.map((column) => ({ kind: 'column-exists' as const, table: t, column })),
        ...refColumns.map((column) => ({ kind: 'column-exists' as const, table: r, column })),
        { kind: 'constraint-absent', table: t, constraint: nameFor(t) },
      ];
    },
    describe: (catalog, ctx) => {
      const t = table(ctx);
      const r = refTable(ctx);
      const name = nameFor(t);
      const info = tableInfo(catalog, t);
      if (info?.partitioning && info.partitioning.serverVersion < FOREIGN_KEY_NOT_VALID_ON_PARTITIONED) {
        refusePartitioned(
          info,
          'addForeignKey',
          `PostgreSQL ${Math.floor(info.partitioning.serverVersion / 10000)} cannot add a foreign key NOT VALID to a partitioned table (18 can), so it would be checked against every row under a lock that stops writes to all partitions`,
          'On PostgreSQL 18 this change runs as on a plain table. Before 18: add the foreign key NOT VALID and VALIDATE it on each partition (sql()), then on the table, which adopts them.',
        );
      }
      refuseReferenceBefore12(tableInfo(catalog, r), 'addForeignKey', `Upgrade to PostgreSQL 12 or later to reference ${tableLabel(r)}, or reference a table that is not partitioned.`);
      return {
        summary: `add foreign key ${name}: ${tableLabel(t)} (${columns.join(', ')}) → ${tableLabel(r)} (${refColumns.join(', ')})`,
        expand: {
          steps: [
            txStep('add-foreign-key', `add foreign key ${name} NOT VALID`, [
              addForeignKeyNotValid(t, { name, columns, references: r, referencedColumns: refColumns, ...(onDelete ? { onDelete } : {}), ...(onUpdate ? { onUpdate } : {}) }),
            ]),
            txStep('validate', `validate foreign key ${name}`, [validateConstraint(t, name)]),
          ],
        },
        contract: { steps: [] },
        undoContract: { steps: [] },
        undoExpand: { steps: [txStep('drop-foreign-key', `drop foreign key ${name}`, [dropConstraintIfExists(t, name)])] },
      };
    },
  };
}

import type { Change, ResolveContext } from '../migration.js';
import { dropConstraintIfExists, validateConstraint } from '../postgres/ddl.js';
import { ChangeInputError, ident, objectName, resolveTable, tableLabel, type TableInput, type TableName } from '../postgres/identifiers.js';
import { addForeignKeyNotValid, defaultObjectName, REFERENTIAL_ACTIONS, type ReferentialAction } from '../postgres/index-sql.js';
import { checkName, checkNames, txStep } from './common.js';

export interface AddForeignKeyOptions {
  readonly table: TableInput;
  readonly columns: readonly string[];
  readonly references: { readonly table: TableInput; readonly columns: readonly string[] };
  /** Default `<table>_<columns>_fkey`. */
  readonly name?: string;
  readonly onDelete?: ReferentialAction;
  readonly onUpdate?: ReferentialAction;
}

function checkAction(value: unknown, field: string): ReferentialAction | undefined {
  if (value === undefined) return undefined;
  const v = typeof value === 'string' ? value.toUpperCase().trim().replace(/\s+/g, ' ') : value;
  if (!REFERENTIAL_ACTIONS.includes(v as ReferentialAction)) {
    throw new ChangeInputError(`addForeignKey: ${field} must be one of ${REFERENTIAL_ACTIONS.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return v as ReferentialAction;
}

/**
 * Adds a foreign key in two transactions: ADD … NOT VALID (a moment of SHARE ROW EXCLUSIVE on both tables, no scan),
 * then VALIDATE (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the referenced one: writes go on during the scan).
 */
export function addForeignKey(options: AddForeignKeyOptions): Change {
  const columns = checkNames(options?.columns, 'addForeignKey: columns');
  if (!options.references || typeof options.references !== 'object') throw new ChangeInputError('addForeignKey: references must be { table, columns }');
  const refColumns = checkNames(options.references.columns, 'addForeignKey: references.columns');
  if (refColumns.length !== columns.length) {
    throw new ChangeInputError(`addForeignKey: ${columns.length} columns reference ${refColumns.length} columns; the counts must match`);
  }
  [...columns, ...refColumns].forEach(ident);
  const onDelete = checkAction(options.onDelete, 'onDelete');
  const onUpdate = checkAction(options.onUpdate, 'onUpdate');
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  const refTable = (ctx: ResolveContext): TableName => resolveTable(options.references.table, ctx.defaultSchema);
  const explicit = options.name !== undefined ? checkName(options.name, 'addForeignKey: name') : undefined;
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
    describe: (_catalog, ctx) => {
      const t = table(ctx);
      const r = refTable(ctx);
      const name = nameFor(t);
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

import type { Change, ChangeDescription, ResolveContext, Step } from '../migration.js';
import * as ddl from '../postgres/ddl.js';
import { ChangeInputError, ident, objectName, resolveTable, type TableName } from '../postgres/identifiers.js';
import { checkExpression, checkType, txStep } from './common.js';
import { checkFlagName } from '../flags/names.js';
import { checkOptions, CONSTANT, NAME, READ_FLAG, SQL, TABLE, TYPE, type ChangeSchema, type OptionsOf } from './options.js';

export const addColumnSchema = {
  'x-change': 'addColumn',
  'x-template': 'add-column',
  description: "Adds a column without a table rewrite or a long lock; a NOT NULL column gets there through CHECK … NOT VALID → VALIDATE → SET NOT NULL.",
  'x-notes': ["expand: ADD COLUMN (no volatile default, so no rewrite), backfill existing rows when `backfill` or `defaultSql` is given", "contract: nothing to remove; down drops the column"],
  type: 'object',
  additionalProperties: false,
  required: ["table", "column"],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table (bare name: the configured schema)' },
    column: { type: 'object', additionalProperties: false, required: ["name", "type"], default: {}, properties: {
      name: { ...NAME, default: 'my_column', 'x-cli': '--column', description: "the new column's name" },
      type: { ...TYPE, default: 'text', 'x-cli': '--type', description: 'a PostgreSQL type: text, integer, numeric(10,2)…' },
      nullable: { type: 'boolean', 'x-cli': '--not-null', 'x-negate': true, description: '--not-null makes it NOT NULL (then give --default or --default-sql)' },
      default: { ...CONSTANT, 'x-cli': '--default', description: 'a constant default (no rewrite on PostgreSQL 11+)' },
      defaultSql: { ...SQL, 'x-cli': '--default-sql', description: 'a default expression such as gen_random_uuid(), for new rows; existing rows are backfilled with it' },
    } },
    backfill: { ...SQL, 'x-cli': '--backfill', description: "SQL computing the value of existing rows, over the table's columns" },
    readFlag: READ_FLAG,
  },
} as const satisfies ChangeSchema;

export type AddColumnOptions = OptionsOf<typeof addColumnSchema>;

/**
 * Adds a column without a table rewrite or a long lock: a volatile default is never given to ADD COLUMN (that
 * rewrites the table); NOT NULL is reached through CHECK … NOT VALID → VALIDATE → SET NOT NULL.
 */
export function addColumn(options: AddColumnOptions): Change {
  checkOptions(addColumnSchema, options);
  const c = options.column;
  const name = c.name;
  ident(name);
  const type = checkType(c.type, 'addColumn: column.type');
  const notNull = c.nullable === false;
  if (c.default !== undefined && c.defaultSql !== undefined) throw new ChangeInputError('addColumn: give either column.default or column.defaultSql, not both');
  const defaultSql = c.defaultSql !== undefined ? checkExpression(c.defaultSql, 'addColumn: column.defaultSql') : undefined;
  const backfillExpr = options.backfill !== undefined ? checkExpression(options.backfill, 'addColumn: backfill') : undefined;
  if (notNull && c.default === undefined && defaultSql === undefined) {
    throw new ChangeInputError(
      `addColumn: ${name} is NOT NULL but has no default: rows inserted by the running (old) application version would fail. ` +
        'Give column.default or column.defaultSql (and backfill for existing rows if they need another value).',
    );
  }
  const readFlag = options.readFlag === undefined ? undefined : checkFlagName(options.readFlag, 'addColumn: readFlag');
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  const needsBackfill = backfillExpr !== undefined || defaultSql !== undefined;
  return {
    kind: 'addColumn',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: table(ctx) },
      { kind: 'column-absent', table: table(ctx), column: name },
      ...(needsBackfill ? [{ kind: 'has-primary-key' as const, table: table(ctx) }] : []),
    ],
    describe: (_catalog, ctx): ChangeDescription => {
      const t = table(ctx);
      const constant = c.default !== undefined ? ddl.constantLiteral(c.default, type) : undefined;
      const nn = objectName('zd_nn', t.name, name);
      const notNullSteps: Step[] = notNull
        ? [
            txStep('add-not-null-check', `add CHECK (${name} IS NOT NULL) NOT VALID`, [ddl.addNotNullCheck(t, nn, name)]),
            txStep('validate-not-null', `validate CHECK (${name} IS NOT NULL)`, [ddl.validateConstraint(t, nn)]),
            txStep('set-not-null', `set ${name} NOT NULL`, [ddl.setNotNull(t, name), ddl.dropConstraintIfExists(t, nn)]),
          ]
        : [];
      const backfillWith = backfillExpr ?? defaultSql;
      return {
        summary: `add column ${t.schema}.${t.name}.${name} ${type}${notNull ? ' NOT NULL' : ''}`,
        ...(readFlag ? { readFlag } : {}),
        expand: {
          ...(backfillWith !== undefined
            ? {
                preflight: [
                  {
                    table: t,
                    // As the backfill assigns it to the column: a value of the wrong shape fails there too.
                    expression: `CAST((${backfillWith}) AS ${type})`,
                    what: `addColumn ${t.schema}.${t.name}.${name}: ${backfillExpr !== undefined ? 'backfill' : 'defaultSql'} ${backfillWith}`,
                    fix: `make the ${backfillExpr !== undefined ? 'backfill expression' : 'defaultSql'} valid for every existing row (e.g. NULLIF, a CASE that tests the value first), or clean those rows, then run up again`,
                  },
                ],
              }
            : {}),
          steps: [
            txStep('add-column', `add column ${name}`, [
              // A constant default fills existing rows without a rewrite, unless they are to get a computed value.
              ddl.addColumn(t, name, type, { defaultSql: backfillExpr === undefined ? (constant ?? null) : null }),
              ...(backfillExpr !== undefined && constant !== undefined ? [ddl.setDefault(t, name, constant)] : []),
              ...(defaultSql !== undefined ? [ddl.setDefault(t, name, defaultSql)] : []),
            ]),
          ],
          ...(backfillWith !== undefined ? { backfill: { table: t, set: [{ column: name, expression: backfillWith }], only: 'null' as const } } : {}),
          afterBackfill: notNullSteps,
        },
        contract: { steps: [] },
        undoContract: { steps: [] },
        undoExpand: {
          steps: [txStep('drop-column', `drop column ${name}`, [ddl.dropConstraintIfExists(t, nn), ddl.dropColumnIfExists(t, name)])],
        },
      };
    },
  };
}

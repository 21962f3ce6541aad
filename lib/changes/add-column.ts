import type { Change, ChangeDescription, ResolveContext, Step } from '../migration.js';
import * as ddl from '../postgres/ddl.js';
import { ChangeInputError, ident, objectName, resolveTable, type TableInput, type TableName } from '../postgres/identifiers.js';
import { checkExpression, checkName, checkType, txStep } from './common.js';
import { checkFlagName } from '../flags/names.js';

export interface AddColumnOptions {
  readonly table: TableInput;
  readonly column: {
    readonly name: string;
    /** A PostgreSQL type, e.g. `text`, `integer`, `numeric(10,2)`. */
    readonly type: string;
    /** Default true. A NOT NULL column needs `default` or `defaultSql`, so rows the old version inserts get a value. */
    readonly nullable?: boolean;
    /** A constant default, passed as a literal: existing rows get it without a table rewrite (PostgreSQL 11+). */
    readonly default?: string | number | boolean;
    /** A default expression such as `gen_random_uuid()`: set for new rows only, existing rows are backfilled with it. */
    readonly defaultSql?: string;
  };
  /** SQL expression computing the value for existing rows (over the table's columns); rows already set are kept. */
  readonly backfill?: string;
  /** Read-cutover flag: the contract waits until it has been at 100 % for the safety window (see lib/flags). */
  readonly readFlag?: string;
}

/**
 * Adds a column without a table rewrite or a long lock: a volatile default is never given to ADD COLUMN (that
 * rewrites the table); NOT NULL is reached through CHECK … NOT VALID → VALIDATE → SET NOT NULL.
 */
export function addColumn(options: AddColumnOptions): Change {
  const c = options?.column;
  if (!c || typeof c !== 'object') throw new ChangeInputError('addColumn: `column` must be { name, type, … }');
  const name = checkName(c.name, 'addColumn: column.name');
  ident(name);
  const type = checkType(c.type, 'addColumn: column.type');
  const notNull = c.nullable === false;
  if (c.default !== undefined && c.defaultSql !== undefined) throw new ChangeInputError('addColumn: give either column.default or column.defaultSql, not both');
  if (c.default !== undefined && !['string', 'number', 'boolean'].includes(typeof c.default)) {
    throw new ChangeInputError(`addColumn: column.default must be a string, number or boolean, got ${JSON.stringify(c.default)}`);
  }
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

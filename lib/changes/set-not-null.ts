import type { Change, ChangeDescription, ResolveContext, Step } from '../migration.js';
import { columnInfo, tableInfo } from '../postgres/catalog.js';
import * as ddl from '../postgres/ddl.js';
import { analyzeArchive, archiveKeysInto, archiveName, archivedWhere, createKeyArchive, dropArchive, ensureArchive, finishArchiveFill, type ArchiveSpec } from '../postgres/archive.js';
import { doBlock } from '../postgres/column-attachments.js';
import { ChangeInputError, ident, literal, objectName, qualified, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { checkExpression } from './common.js';
import { lockStep } from './column-replacement.js';
import { checkOptions, CONSTANT, NAME, SQL, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const setNotNullSchema = {
  'x-change': 'setNotNull',
  'x-template': 'set-not-null',
  description: "Makes a column NOT NULL without a long ACCESS EXCLUSIVE scan: CHECK (col IS NOT NULL) NOT VALID, VALIDATE while writes go on, then SET NOT NULL uses the validated check and skips the scan.",
  'x-notes': ["default: a value for rows that are NULL today (backfilled in batches before VALIDATE)"],
  type: 'object',
  additionalProperties: false,
  required: ["table", "column"],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table' },
    column: { ...NAME, default: 'my_column', 'x-cli': '--column', description: 'the column' },
    default: { ...CONSTANT, 'x-cli': '--default', description: 'value given to rows that are NULL, and the column default from then on' },
    defaultSql: { ...SQL, 'x-cli': '--default-sql', description: 'the same as an expression, e.g. now()' },
  },
} as const satisfies ChangeSchema;

export type SetNotNullOptions = OptionsOf<typeof setNotNullSchema>;

/**
 * Makes a column NOT NULL without a full-table scan under ACCESS EXCLUSIVE: CHECK (col IS NOT NULL) NOT VALID
 * (a brief lock) → VALIDATE (a scan that lets reads and writes go on) → at contract SET NOT NULL (PostgreSQL 12+
 * uses the validated CHECK and skips the scan) → drop the CHECK. With a default, the column gets it as its default
 * first and NULL rows are backfilled in batches; their keys are archived, so down puts the NULLs back (on rows
 * still holding the default).
 */
export function setNotNull(options: SetNotNullOptions): Change {
  checkOptions(setNotNullSchema, options);
  const { column } = options;
  ident(column);
  if (options.default !== undefined && options.defaultSql !== undefined) throw new ChangeInputError('setNotNull: give either default or defaultSql, not both');
  const defaultSql = options.defaultSql !== undefined ? checkExpression(options.defaultSql, 'setNotNull: defaultSql') : undefined;
  const hasDefault = options.default !== undefined || defaultSql !== undefined;
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  return {
    kind: 'setNotNull',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: table(ctx) },
      { kind: 'column-exists', table: table(ctx), column },
      ...(hasDefault ? [{ kind: 'has-primary-key' as const, table: table(ctx) }] : []),
    ],
    describe: (catalog, ctx): ChangeDescription => {
      const t = table(ctx);
      const stateSchema = ctx.stateSchema ?? 'zero_downtime';
      const info = tableInfo(catalog, t);
      const col = columnInfo(catalog, t, column);
      if (!info || !col) throw new ChangeInputError(`setNotNull: column ${JSON.stringify(column)} does not exist in ${tableLabel(t)}`);
      if (col.notNull) throw new ChangeInputError(`setNotNull: ${tableLabel(t)}.${column} is already NOT NULL. Nothing was changed.`);
      const def = options.default !== undefined ? ddl.constantLiteral(options.default, col.type) : defaultSql;
      const check = objectName('zd_nn', t.name, column);
      const label = `${tableLabel(t)}.${column}`;
      const archive: ArchiveSpec | null = def
        ? {
            archive: archiveName(stateSchema, 'nulls', t, column),
            table: t,
            keys: info.primaryKey.map((k) => ({ name: k, type: info.columns.find((c) => c.name === k)!.type })),
            values: [],
            kind: 'set-not-null',
          }
        : null;
      const explainNulls = doBlock(`
DECLARE _zd_n bigint;
BEGIN
  SELECT count(*) INTO _zd_n FROM (SELECT 1 FROM ${qualified(t)} WHERE ${ident(column)} IS NULL LIMIT 1000) s;
  IF _zd_n > 0 THEN
    RAISE EXCEPTION 'setNotNull: % has % NULL values (counting up to 1000), so CHECK (% IS NOT NULL) cannot be validated. Fill those rows (or give setNotNull a default to backfill them) and run up again.',
      ${literal(label)}, _zd_n, ${literal(column)};
  END IF;
END`);
      const steps: Step[] = [];
      if (def && archive) {
        steps.push(
          // Only the empty archive here: this step holds SET DEFAULT's ACCESS EXCLUSIVE lock, under which a scan of the
          // table for its NULL rows would stop every query. The backfill records the key of each row it fills.
          lockStep('default-and-archive', `set the default of ${column}; create the archive of the keys of the rows the backfill fills`, [
            ddl.setDefault(t, column, def),
            ...createKeyArchive(archive, stateSchema),
          ]),
        );
      }
      const restoreDefault = col.default != null ? ddl.setDefault(t, column, col.default) : ddl.dropDefault(t, column);
      return {
        summary: `set ${label} NOT NULL${def ? ` (NULLs become ${def})` : ''}`,
        expand: {
          ...(defaultSql !== undefined
            ? {
                preflight: [
                  {
                    table: t,
                    expression: `CAST((${defaultSql}) AS ${col.type})`,
                    where: `${ident(column)} IS NULL`,
                    what: `setNotNull ${label}: defaultSql ${defaultSql} for the NULL rows`,
                    fix: 'make defaultSql valid for every row it fills, or fill those rows yourself, then run up again',
                  },
                ],
              }
            : {}),
          steps,
          ...(def && archive ? { backfill: { table: t, set: [{ column, expression: def }], only: 'null' as const, archiveKeys: archiveKeysInto(archive) } } : {}),
          afterBackfill: [
            ...(archive
              ? [lockStep('register-archive', `register the archive ${tableLabel(archive.archive)} (its row count for purge)`, [analyzeArchive(archive), ...finishArchiveFill(archive, stateSchema)])]
              : []),
            // Added after the backfill: a NOT VALID CHECK still rejects an old-version UPDATE of a row that is still NULL.
            lockStep('add-check', `add CHECK (${column} IS NOT NULL) NOT VALID`, [ddl.addNotNullCheck(t, check, column)]),
            lockStep('validate-check', `validate CHECK (${column} IS NOT NULL)`, [explainNulls, ddl.validateConstraint(t, check)]),
          ],
        },
        contract: { steps: [lockStep('set-not-null', `set ${column} NOT NULL (no scan: the CHECK is validated) and drop the CHECK`, [ddl.setNotNull(t, column), ddl.dropConstraintIfExists(t, check)])] },
        undoContract: {
          steps: [
            lockStep('add-check', `add CHECK (${column} IS NOT NULL) NOT VALID and drop NOT NULL`, [ddl.addNotNullCheck(t, check, column), ddl.dropNotNull(t, column)]),
            lockStep('validate-check', `validate CHECK (${column} IS NOT NULL)`, [ddl.validateConstraint(t, check)]),
          ],
        },
        undoExpand:
          def && archive
            ? {
                steps: [
                  lockStep('drop-check', `drop the CHECK and restore the default of ${column}`, [ddl.dropConstraintIfExists(t, check), restoreDefault, ...ensureArchive(archive, stateSchema)]),
                ],
                // Rows the backfill filled, and still holding that value, get their NULL back.
                backfill: { table: t, set: [{ column, expression: `CASE WHEN ${archivedWhere(archive, `${ident(column)} IS NOT DISTINCT FROM (${def})`)} THEN NULL ELSE ${ident(column)} END` }] },
                afterBackfill: [lockStep('drop-archive', `drop the archive ${tableLabel(archive.archive)}`, dropArchive(archive, stateSchema))],
              }
            : { steps: [lockStep('drop-check', `drop the CHECK`, [ddl.dropConstraintIfExists(t, check)])] },
      };
    },
  };
}

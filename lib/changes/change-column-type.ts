import type { Change, ResolveContext } from '../migration.js';
import { columnInfo, tableInfo } from '../postgres/catalog.js';
import { ChangeInputError, ident, objectName, resolveTable, tableLabel, type TableInput, type TableName } from '../postgres/identifiers.js';
import { checkFlagName } from '../flags/names.js';
import { checkExpression, checkName, checkType } from './common.js';
import { describeReplacement } from './column-replacement.js';

export interface ChangeColumnTypeOptions {
  readonly table: TableInput;
  readonly column: string;
  /** The new type, e.g. `bigint`, `numeric(12,2)`, `timestamptz`. */
  readonly type: string;
  /**
   * Old value → new value: a SQL expression in which the column's own name stands for the OLD value, e.g.
   * `round(price * 100)::bigint`. Default `CAST(<column> AS <type>)`. Only the column itself may be named.
   */
  readonly up?: string;
  /**
   * New value → old value, for rows the new application version writes while the old one still reads: a SQL
   * expression in which the column's own name stands for the NEW value, e.g. `price / 100.0`. Default
   * `CAST(<column> AS <old type>)`.
   */
  readonly down?: string;
  /** Read-cutover flag: the contract waits until it has been at 100 % for the safety window (see lib/flags). */
  readonly readFlag?: string;
}

/**
 * The column the new application version reads and writes while the change is expanded: `<column>__new`, or a
 * hashed name when that would be longer than 63 bytes. After the contract the column has its own name again.
 */
export function transitionColumnName(column: string): string {
  const plain = `${column}__new`;
  return Buffer.byteLength(plain, 'utf8') <= 63 ? plain : objectName('zd_new', column);
}

/**
 * Changes a column's type without a table rewrite under lock: expand adds `<column>__new` of the new type with a
 * two-way sync trigger (`up` one way, `down` the other), backfills it in batches, builds what is attached to the
 * column (NOT NULL, CHECKs, foreign keys both ways, indexes — partial and expression ones too — concurrently),
 * verifies; contract archives the old values and swaps the names in one short transaction, moving default,
 * identity and sequences. An int → bigint primary key referenced by other tables' foreign keys works this way: the
 * foreign keys are built again against the new column (NOT VALID, then VALIDATE) before the swap.
 */
export function changeColumnType(options: ChangeColumnTypeOptions): Change {
  const column = checkName(options?.column, 'changeColumnType: column');
  ident(column);
  const type = checkType(options.type, 'changeColumnType: type');
  const up = options.up === undefined ? undefined : checkExpression(options.up, 'changeColumnType: up');
  const down = options.down === undefined ? undefined : checkExpression(options.down, 'changeColumnType: down');
  const readFlag = options.readFlag === undefined ? undefined : checkFlagName(options.readFlag, 'changeColumnType: readFlag');
  const dst = transitionColumnName(column);
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  return {
    kind: 'changeColumnType',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: table(ctx) },
      { kind: 'has-primary-key', table: table(ctx) },
      { kind: 'column-exists', table: table(ctx), column },
      { kind: 'column-absent', table: table(ctx), column: dst },
    ],
    describe: (catalog, ctx) => {
      const t = table(ctx);
      const info = tableInfo(catalog, t);
      const col = columnInfo(catalog, t, column);
      if (!info || !col) throw new ChangeInputError(`changeColumnType: column ${JSON.stringify(column)} does not exist in ${tableLabel(t)}`);
      if (col.type === type) throw new ChangeInputError(`changeColumnType: ${tableLabel(t)}.${column} is already ${type}. Nothing was changed.`);
      return {
        ...describeReplacement({
          what: 'changeColumnType',
          t,
          info,
          col,
          dst,
          dstType: type,
          finalName: column,
          up: { sql: up ?? `CAST(${ident(column)} AS ${type})`, param: column },
          down: { sql: down ?? `CAST(${ident(column)} AS ${col.type})`, param: column },
          stateSchema: ctx.stateSchema ?? 'zero_downtime',
          archiveKind: 'type',
        }),
        ...(readFlag ? { readFlag } : {}),
      };
    },
  };
}

import type { Change, ResolveContext } from '../migration.js';
import { columnInfo, tableInfo } from '../postgres/catalog.js';
import { ChangeInputError, ident, objectName, resolveTable, tableLabel, type TableInput, type TableName } from '../postgres/identifiers.js';
import { checkFlagName } from '../flags/names.js';
import { checkExpression, checkName, checkOnConversionError, checkType } from './common.js';
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
  /**
   * What the sync trigger does with a value it cannot convert (the old version writes 'xyz' into a column on its way
   * to integer, or the new version a value `down` cannot take back). 'record' (default): the write goes through, the
   * converted column is left NULL (a failed `down` leaves the old column as written), and the row's key and error are
   * recorded in `<stateSchema>.conversion_errors`; verify reports those rows and the contract waits until they are
   * fixed. 'reject': the trigger raises, so the application's write fails, as an ALTER COLUMN TYPE would make it.
   * Either way the expand first checks every existing row (preflight) and refuses, changing nothing, if any fails.
   */
  readonly onConversionError?: 'record' | 'reject';
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
  const onConversionError = checkOnConversionError(options.onConversionError, 'changeColumnType');
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
          exactInverse: up === undefined && down === undefined && isWidening(col.type, type),
          onConversionError,
          preflightFix: up
            ? `fix \`up\` so that it converts them, or clean those rows, then run up again`
            : `give changeColumnType an \`up\` expression that converts them (e.g. \`CASE WHEN ${column} ~ '^-?[0-9]+$' THEN ${column}::${type} END\`), or clean those rows, then run up again`,
        }),
        ...(readFlag ? { readFlag } : {}),
      };
    },
  };
}

/** Types by the names the catalog and authors give them, where a cast to a wider one and back is exact. */
const CANONICAL: Readonly<Record<string, string>> = {
  int2: 'smallint', smallint: 'smallint', int: 'integer', int4: 'integer', integer: 'integer', int8: 'bigint', bigint: 'bigint',
  numeric: 'numeric', decimal: 'numeric', float4: 'real', real: 'real', float8: 'double precision', 'double precision': 'double precision',
  text: 'text', varchar: 'text', 'character varying': 'text',
};
const WIDER: Readonly<Record<string, readonly string[]>> = {
  smallint: ['integer', 'bigint', 'numeric'],
  integer: ['bigint', 'numeric'],
  bigint: ['numeric'],
  real: ['double precision'],
};

/**
 * Whether the default casts between two types give every value back exactly: integers to a wider integer or to
 * unconstrained numeric, real to double precision, a length-limited varchar to text or unlimited varchar. Anything
 * else (a typmod on the target, timestamps and time zones, text to a number) is treated as lossy.
 */
export function isWidening(from: string, to: string): boolean {
  const norm = (t: string) => t.trim().toLowerCase().replace(/\s+/g, ' ');
  const f = norm(from);
  const g = norm(to);
  const varchar = /^(character varying|varchar)( ?\(\d+\))?$/;
  if (varchar.test(f)) return CANONICAL[g] === 'text';
  const cf = CANONICAL[f];
  const cg = CANONICAL[g];
  return cf !== undefined && cg !== undefined && (WIDER[cf] ?? []).includes(cg);
}

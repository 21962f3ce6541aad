import type { Change, ResolveContext } from '../migration.js';
import { columnInfo, tableInfo } from '../postgres/catalog.js';
import { ChangeInputError, ident, objectName, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { checkFlagName } from '../flags/names.js';
import { checkExpression, checkType } from './common.js';
import { describeReplacement } from './column-replacement.js';
import { checkOptions, NAME, ON_CONVERSION_ERROR, READ_FLAG, SQL, TABLE, TYPE, type ChangeSchema, type OptionsOf } from './options.js';

export const changeColumnTypeSchema = {
  'x-change': 'changeColumnType',
  'x-template': 'change-type',
  description: "Changes a column's type without ALTER COLUMN TYPE (which rewrites the table under an ACCESS EXCLUSIVE lock): a new column of the new type is kept in sync both ways, backfilled, verified, and swapped in at contract.",
  'x-notes': ["up: SQL converting the old value (the column's own name) to the new type; default a plain cast", "down: SQL converting back, for writes the new version makes while the old one still reads", "expand first checks up on every existing row and refuses, changing nothing, if a row cannot be converted"],
  type: 'object',
  additionalProperties: false,
  required: ["table", "column", "type"],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table' },
    column: { ...NAME, default: 'my_column', 'x-cli': '--column', description: 'the column whose type changes' },
    type: { ...TYPE, default: 'bigint', 'x-cli': '--type', description: 'the new PostgreSQL type' },
    up: { ...SQL, 'x-cli': '--up', description: 'old → new conversion, SQL over the column (default: a cast)' },
    down: { ...SQL, 'x-cli': '--down', description: 'new → old conversion (default: a cast)' },
    onConversionError: { ...ON_CONVERSION_ERROR, description: 'a value the sync trigger cannot convert: record (default) lets the write through, leaves the new column NULL and records the row in zero_downtime.conversion_errors (verify reports it, the contract waits); reject fails the write' },
    readFlag: READ_FLAG,
  },
} as const satisfies ChangeSchema;

export type ChangeColumnTypeOptions = OptionsOf<typeof changeColumnTypeSchema>;

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
  checkOptions(changeColumnTypeSchema, options);
  const { column } = options;
  ident(column);
  const type = checkType(options.type, 'changeColumnType: type');
  const up = options.up === undefined ? undefined : checkExpression(options.up, 'changeColumnType: up');
  const down = options.down === undefined ? undefined : checkExpression(options.down, 'changeColumnType: down');
  const readFlag = options.readFlag === undefined ? undefined : checkFlagName(options.readFlag, 'changeColumnType: readFlag');
  const onConversionError = options.onConversionError ?? 'record';
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

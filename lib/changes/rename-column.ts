import type { Change, ChangeDescription, ResolveContext } from '../migration.js';
import { columnInfo, tableInfo, type CatalogSnapshot } from '../postgres/catalog.js';
import { ChangeInputError, ident, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { identityConversion } from '../postgres/triggers.js';
import { describeReplacement } from './column-replacement.js';
import { checkFlagName } from '../flags/names.js';
import { checkOptions, NAME, READ_FLAG, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const renameColumnSchema = {
  'x-change': 'renameColumn',
  'x-template': 'rename-column',
  description: 'Renames a column while the old and the new application version both run: the new column is kept equal to the old one by a trigger until contract drops the old one.',
  'x-notes': ['expand: ADD COLUMN <to>, a two-way sync trigger, backfill, verify', 'contract (after the old version is gone): drop the trigger and <from>; down restores it from the archive'],
  type: 'object',
  additionalProperties: false,
  required: ['table', 'from', 'to'],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table' },
    from: { ...NAME, default: 'old_name', 'x-cli': '--from', description: "the column's current name" },
    to: { ...NAME, default: 'new_name', 'x-cli': '--to', description: 'its new name' },
    readFlag: READ_FLAG,
  },
} as const satisfies ChangeSchema;

export type RenameColumnOptions = OptionsOf<typeof renameColumnSchema>;

/**
 * Renames a column without breaking the running application: expand adds `to` beside `from` and a trigger that
 * keeps both equal whichever one a writer uses; the backfill copies existing rows, and what is attached to `from`
 * (NOT NULL, CHECKs, foreign keys both ways, indexes) is built again on `to`; contract (after the old version is
 * gone) archives `from`'s values, drops it and gives `to` the original names of those objects, its default and
 * sequences. Down restores `from` from the archive and re-installs the sync (see column-replacement.ts).
 */
export function renameColumn(options: RenameColumnOptions): Change {
  checkOptions(renameColumnSchema, options);
  const { from, to } = options;
  if (from === to) throw new ChangeInputError(`renameColumn: from and to are both ${JSON.stringify(from)}`);
  ident(from);
  ident(to);
  const readFlag = options.readFlag === undefined ? undefined : checkFlagName(options.readFlag, 'renameColumn: readFlag');
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  return {
    kind: 'renameColumn',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: table(ctx) },
      { kind: 'has-primary-key', table: table(ctx) },
      { kind: 'column-exists', table: table(ctx), column: from },
      { kind: 'column-absent', table: table(ctx), column: to },
    ],
    describe: (catalog, ctx) => ({ ...describeRename(catalog, table(ctx), from, to, ctx.stateSchema ?? 'zero_downtime'), ...(readFlag ? { readFlag } : {}) }),
  };
}

function describeRename(catalog: CatalogSnapshot, t: TableName, from: string, to: string, stateSchema: string): ChangeDescription {
  const info = tableInfo(catalog, t);
  const col = columnInfo(catalog, t, from);
  if (!info || !col) throw new ChangeInputError(`column ${JSON.stringify(from)} does not exist in ${tableLabel(t)}`);
  return describeReplacement({
    what: 'renameColumn',
    t,
    info,
    col,
    dst: to,
    dstType: col.type,
    finalName: to,
    up: identityConversion(from),
    down: identityConversion(to),
    stateSchema,
    archiveKind: 'rename',
    onConversionError: 'none',
    exactInverse: true,
  });
}

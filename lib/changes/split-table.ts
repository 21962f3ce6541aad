import type { Change, ChangeDescription, ResolveContext, Step } from '../migration.js';
import { tableInfo, type CatalogSnapshot, type ColumnInfo } from '../postgres/catalog.js';
import { ChangeInputError, ident, objectName, qualified, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { copyTablePrivileges } from '../postgres/table-ddl.js';
import { dropSyncTrigger, lockInOrder, splitSyncTriggers, type SplitSync } from '../postgres/table-sync.js';
import { txStep } from './common.js';
import { refuseReferenceBefore12 } from './partitioned.js';
import { checkOptions, NAMES, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const splitTableSchema = {
  'x-change': 'splitTable',
  'x-template': 'split-table',
  description: "Moves columns into a table of their own, kept in sync both ways by triggers while both versions run; contract drops the moved columns from the source.",
  'x-notes': ["the new version writes the new table with INSERT … ON CONFLICT (key) DO UPDATE (the row already exists during the transition)"],
  type: 'object',
  additionalProperties: false,
  required: ["from", "to", "columns", "key"],
  properties: {
    from: { ...TABLE, default: 'my_table', 'x-cli': '--from', description: 'the table that loses the columns' },
    to: { ...TABLE, default: 'my_table_details', 'x-cli': '--to', description: 'the new table' },
    columns: { ...NAMES, default: ["my_column"], 'x-cli': '--columns', description: 'the columns that move' },
    key: { ...NAMES, default: ["id"], 'x-cli': '--key', description: "the source table's primary key" },
  },
} as const satisfies ChangeSchema;

export type SplitTableOptions = OptionsOf<typeof splitTableSchema>;

/**
 * Moves columns into a table of their own. Expand creates `to` (keyed like `from`, with a cascading foreign key to it)
 * and triggers that propagate INSERT, UPDATE and DELETE both ways; the backfill copies existing rows in keyset batches;
 * verify compares every row. Contract drops the triggers and the moved columns of `from`; `down` adds them back and
 * copies the values from `to`.
 * The new version writes `to` with INSERT … ON CONFLICT (key) DO UPDATE (during the transition the row already exists,
 * made by the trigger when `from` got its row).
 */
export function splitTable(options: SplitTableOptions): Change {
  checkOptions(splitTableSchema, options);
  const { columns, key } = options;
  [...columns, ...key].forEach(ident);
  for (const c of columns) if (key.includes(c)) throw new ChangeInputError(`splitTable: ${JSON.stringify(c)} is part of the key; the key is copied to the new table anyway`);
  const from = (ctx: ResolveContext): TableName => resolveTable(options.from, ctx.defaultSchema);
  const to = (ctx: ResolveContext): TableName => resolveTable(options.to, from(ctx).schema);
  return {
    kind: 'splitTable',
    tables: (ctx) => [from(ctx), to(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: from(ctx) },
      { kind: 'has-primary-key', table: from(ctx) },
      ...columns.map((column) => ({ kind: 'column-exists' as const, table: from(ctx), column })),
      { kind: 'relation-absent', table: to(ctx) },
    ],
    describe: (catalog, ctx) => describeSplit(catalog, from(ctx), to(ctx), key, columns),
  };
}

function refuseUnsupported(t: TableName, col: ColumnInfo): void {
  const attached = [
    ...col.indexes.map((i) => `index ${i}`),
    ...col.constraints.map((c) => `constraint ${c.name}`),
    ...col.referencedBy.map((c) => `foreign key ${c} of another table`),
  ];
  if (col.identity || col.generated) attached.push(col.identity ? 'an identity' : 'a generated expression');
  if (col.default?.includes('nextval(')) attached.push(`the sequence behind its default ${col.default}`);
  if (col.notNull) attached.push('NOT NULL (a missing row of the new table stands for NULLs)');
  if (attached.length > 0) {
    throw new ChangeInputError(
      `splitTable cannot yet move ${tableLabel(t)}.${col.name} with ${attached.join(', ')}: they would be lost at contract. ` +
        'Nothing was changed. Drop or relax them first (dropIndex, sql()), split, then add them to the new table.',
    );
  }
}

function describeSplit(catalog: CatalogSnapshot, from: TableName, to: TableName, key: readonly string[], columns: readonly string[]): ChangeDescription {
  const info = tableInfo(catalog, from);
  if (!info) throw new ChangeInputError(`splitTable: ${tableLabel(from)} does not exist. Nothing was changed.`);
  if (info.primaryKey.join('\u0000') !== key.join('\u0000')) {
    throw new ChangeInputError(
      `splitTable: key ${JSON.stringify(key)} must be the primary key of ${tableLabel(from)}, which is ${JSON.stringify(info.primaryKey)}. Nothing was changed.`,
    );
  }
  const col = (name: string): ColumnInfo => {
    const c = info.columns.find((x) => x.name === name);
    if (!c) throw new ChangeInputError(`splitTable: column ${JSON.stringify(name)} does not exist in ${tableLabel(from)}. Nothing was changed.`);
    return c;
  };
  const moved = columns.map(col);
  moved.forEach((c) => refuseUnsupported(from, c));
  // The new table's rows hang on `from`'s by a cascading foreign key: the DELETE of a row reaches them through it.
  refuseReferenceBefore12(info, 'splitTable', 'Upgrade to PostgreSQL 12 or later, or make the change with sql().');
  const keyCols = key.map(col);
  const h = objectName('split', from.schema, from.name, to.name);
  const sync: SplitSync = {
    from,
    to,
    key,
    columns,
    flag: `zd.${h}`,
    forward: { fn: objectName('zd_split_fwd', from.name, to.name), trigger: objectName('zd_split_fwd', from.name, to.name) },
    back: { fn: objectName('zd_split_back', from.name, to.name), trigger: objectName('zd_split_back', from.name, to.name) },
  };
  const keyList = key.map(ident).join(', ');
  const createTo = `CREATE TABLE ${qualified(to)} (${[
    ...keyCols.map((c) => `${ident(c.name)} ${c.type} NOT NULL`),
    ...moved.map((c) => `${ident(c.name)} ${c.type}${c.default != null ? ` DEFAULT ${c.default}` : ''}`),
    `PRIMARY KEY (${keyList})`,
    `FOREIGN KEY (${keyList}) REFERENCES ${qualified(from)} (${keyList}) ON DELETE CASCADE ON UPDATE CASCADE`,
  ].join(', ')})`;
  const triggers = (id: string): Step => txStep(id, `sync triggers between ${tableLabel(from)} and ${tableLabel(to)}`, splitSyncTriggers(sync));
  // At contract the new version writes both tables; at undo of expand only the old one writes, to `from`.
  const dropTriggers = (busiest: 'from' | 'to'): Step =>
    txStep('drop-sync', `drop the sync triggers of ${tableLabel(from)} and ${tableLabel(to)}`, [
      ...(busiest === 'to' ? lockInOrder(to, [from]) : lockInOrder(from, [to])),
      ...dropSyncTrigger(from, sync.forward),
      ...dropSyncTrigger(to, sync.back),
    ]);
  const outer = (k: string) => `${qualified(from)}.${ident(k)}`;
  const verify = {
    table: from,
    equal: columns.map((c) => ({
      column: c,
      expression: `SELECT _zd_t.${ident(c)} FROM ${qualified(to)} _zd_t WHERE ROW(${key.map((k) => `_zd_t.${ident(k)}`).join(', ')}) = ROW(${key.map(outer).join(', ')})`,
    })),
  };
  const copyColumns = columns.map((c) => ({ column: c, expression: `_zd_s.${ident(c)}` }));
  return {
    summary: `split ${tableLabel(from)} (${columns.join(', ')}) into ${tableLabel(to)}`,
    expand: {
      steps: [txStep('create-table', `create ${tableLabel(to)}`, [{ text: createTo }, copyTablePrivileges(from, to)]), triggers('sync')],
      backfill: { table: from, set: [], copy: { into: to, key, columns: copyColumns, mode: 'insert', quietFlag: sync.flag } },
      verify,
    },
    contract: {
      steps: [
        dropTriggers('to'),
        txStep('drop-columns', `drop ${columns.join(', ')} from ${tableLabel(from)}`, [
          { text: `ALTER TABLE ${qualified(from)} ${columns.map((c) => `DROP COLUMN IF EXISTS ${ident(c)}`).join(', ')}` },
        ]),
      ],
    },
    undoContract: {
      steps: [
        txStep('add-columns', `add ${columns.join(', ')} back to ${tableLabel(from)}`, [
          { text: `ALTER TABLE ${qualified(from)} ${moved.map((c) => `ADD COLUMN ${ident(c.name)} ${c.type}`).join(', ')}` },
          ...moved.filter((c) => c.default != null).map((c) => ({ text: `ALTER TABLE ${qualified(from)} ALTER COLUMN ${ident(c.name)} SET DEFAULT ${c.default}` })),
        ]),
        triggers('sync'),
      ],
      backfill: { table: to, set: [], copy: { into: from, key, columns: copyColumns, mode: 'update', quietFlag: sync.flag } },
      verify,
    },
    undoExpand: {
      steps: [dropTriggers('from'), txStep('drop-table', `drop ${tableLabel(to)} (its rows mirror ${tableLabel(from)})`, [{ text: `DROP TABLE IF EXISTS ${qualified(to)}` }])],
    },
  };
}

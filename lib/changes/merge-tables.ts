import type { Change, ChangeDescription, ResolveContext, Step } from '../migration.js';
import { tableInfo, type CatalogSnapshot, type ColumnInfo, type TableInfo } from '../postgres/catalog.js';
import { ChangeInputError, ident, objectName, qualified, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { copyTablePrivileges } from '../postgres/table-ddl.js';
import { dropSyncTrigger, lockInOrder, mergeSyncTriggers, moveSerialOwnership, type MergeSync } from '../postgres/table-sync.js';
import { archiveTableStep, restoreTableStep } from './drop-table.js';
import { txStep } from './common.js';
import { checkOptions, NAMES, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const mergeTablesSchema = {
  'x-change': 'mergeTables',
  'x-template': 'merge-tables',
  description: "Merges two tables sharing a primary key into a new one, kept in sync by triggers on all three while both versions run; contract archives the two sources.",
  'x-notes': ["from: [a, b]; every row of a becomes a row of into, b is joined 1 : 0..1 on the key"],
  type: 'object',
  additionalProperties: false,
  required: ["from", "into", "key"],
  properties: {
    from: { type: 'array', minItems: 2, additionalItems: false, items: [TABLE, TABLE], default: ["table_a", "table_b"], 'x-cli': '--from', description: 'the two tables, a then b' },
    into: { ...TABLE, default: 'merged_table', 'x-cli': '--into', description: 'the new table' },
    key: { ...NAMES, default: ["id"], 'x-cli': '--key', description: 'the shared primary key' },
    columns: { ...NAMES, 'x-cli': '--columns', description: 'non-key columns to carry (default: all of both)' },
  },
} as const satisfies ChangeSchema;

export type MergeTablesOptions = OptionsOf<typeof mergeTablesSchema>;

/**
 * Merges two tables that share a primary key into one. Expand creates `into` and triggers on all three tables that
 * propagate INSERT, UPDATE and DELETE (a quiet flag stops the echo); the backfill copies a LEFT JOIN b in keyset
 * batches; verify compares every row of `a`. Contract drops the triggers and archives `a` and `b` in the state schema
 * (until purge); `down` brings them back and re-syncs them from `into` in keyset batches.
 */
export function mergeTables(options: MergeTablesOptions): Change {
  checkOptions(mergeTablesSchema, options);
  const { key, columns } = options;
  key.forEach(ident);
  columns?.forEach(ident);
  const a = (ctx: ResolveContext): TableName => resolveTable(options.from[0], ctx.defaultSchema);
  const b = (ctx: ResolveContext): TableName => resolveTable(options.from[1], ctx.defaultSchema);
  const into = (ctx: ResolveContext): TableName => resolveTable(options.into, a(ctx).schema);
  return {
    kind: 'mergeTables',
    tables: (ctx) => [a(ctx), b(ctx), into(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: a(ctx) },
      { kind: 'table-exists', table: b(ctx) },
      { kind: 'has-primary-key', table: a(ctx) },
      { kind: 'has-primary-key', table: b(ctx) },
      { kind: 'relation-absent', table: into(ctx) },
    ],
    describe: (catalog, ctx) => describeMerge(catalog, a(ctx), b(ctx), into(ctx), key, columns, ctx.stateSchema ?? 'zero_downtime'),
  };
}

function requireTable(catalog: CatalogSnapshot, t: TableName, key: readonly string[]): TableInfo {
  const info = tableInfo(catalog, t);
  if (!info) throw new ChangeInputError(`mergeTables: ${tableLabel(t)} does not exist. Nothing was changed.`);
  if (info.primaryKey.join('\u0000') !== key.join('\u0000')) {
    throw new ChangeInputError(`mergeTables: key ${JSON.stringify(key)} must be the primary key of ${tableLabel(t)}, which is ${JSON.stringify(info.primaryKey)}. Nothing was changed.`);
  }
  return info;
}

function carried(info: TableInfo, key: readonly string[], wanted: readonly string[] | undefined): ColumnInfo[] {
  return info.columns.filter((c) => !key.includes(c.name) && (!wanted || wanted.includes(c.name)) && !c.generated);
}

function describeMerge(
  catalog: CatalogSnapshot,
  a: TableName,
  b: TableName,
  into: TableName,
  key: readonly string[],
  wanted: readonly string[] | undefined,
  stateSchema: string,
): ChangeDescription {
  const ai = requireTable(catalog, a, key);
  const bi = requireTable(catalog, b, key);
  const ac = carried(ai, key, wanted);
  const bc = carried(bi, key, wanted);
  const clash = ac.filter((c) => bc.some((x) => x.name === c.name)).map((c) => c.name);
  if (clash.length > 0) {
    throw new ChangeInputError(
      `mergeTables: ${JSON.stringify(clash)} exist in both ${tableLabel(a)} and ${tableLabel(b)}; rename one side first or list the columns to carry. Nothing was changed.`,
    );
  }
  if (wanted) {
    const missing = wanted.filter((w) => !ac.some((c) => c.name === w) && !bc.some((c) => c.name === w));
    if (missing.length > 0) throw new ChangeInputError(`mergeTables: ${JSON.stringify(missing)} are not non-key columns of either table. Nothing was changed.`);
  }
  if (ac.length === 0 || bc.length === 0) throw new ChangeInputError('mergeTables: each table must contribute at least one non-key column. Nothing was changed.');
  const keyCols = key.map((k) => ai.columns.find((c) => c.name === k)!);
  // Only the key may draw from a's sequence (handed over to `into` at contract); other sequence defaults are not copied.
  const plainDefault = (c: ColumnInfo) => (c.default != null && !c.default.includes('nextval(') ? ` DEFAULT ${c.default}` : '');
  const keyDefault = (c: ColumnInfo) => (key.length === 1 && c.default?.startsWith('nextval(') && !c.identity ? ` DEFAULT ${c.default}` : '');
  const createInto = `CREATE TABLE ${qualified(into)} (${[
    ...keyCols.map((c) => `${ident(c.name)} ${c.type} NOT NULL${keyDefault(c)}`),
    ...ac.map((c) => `${ident(c.name)} ${c.type}${c.notNull ? ' NOT NULL' : ''}${plainDefault(c)}`),
    ...bc.map((c) => `${ident(c.name)} ${c.type}${plainDefault(c)}`),
    `PRIMARY KEY (${key.map(ident).join(', ')})`,
  ].join(', ')})`;
  const names = (p: string) => ({ fn: objectName(p, a.name, b.name, into.name), trigger: objectName(p, a.name, b.name, into.name) });
  const sync: MergeSync = {
    a,
    b,
    into,
    key,
    aColumns: ac.map((c) => c.name),
    bColumns: bc.map((c) => c.name),
    flag: `zd.${objectName('merge', a.schema, a.name, b.name, into.name)}`,
    fromA: names('zd_merge_a'),
    fromB: names('zd_merge_b'),
    back: names('zd_merge_back'),
  };
  // The three triggers appear in one transaction: a window with only some of them would let a write slip through.
  const triggers = txStep('sync', `sync triggers on ${tableLabel(a)}, ${tableLabel(b)} and ${tableLabel(into)}`, mergeSyncTriggers(sync));
  // At contract only the new version writes (to `into`); at undo of expand only the old one (to `a` and `b`).
  const dropTriggers = (busiest: 'into' | 'a'): Step =>
    txStep('drop-sync', 'drop the sync triggers', [
      ...(busiest === 'into' ? lockInOrder(into, [a, b]) : lockInOrder(a, [b, into])),
      ...dropSyncTrigger(a, sync.fromA),
      ...dropSyncTrigger(b, sync.fromB),
      ...dropSyncTrigger(into, sync.back),
    ]);
  const k0 = key[0]!;
  const outer = (k: string) => `${qualified(a)}.${ident(k)}`;
  const keyRow = (p: string) => `ROW(${key.map((k) => `${p}${ident(k)}`).join(', ')})`;
  const cols = (p: string, cs: readonly ColumnInfo[]) => `ROW(${cs.map((c) => `${p}${ident(c.name)}`).join(', ')})`;
  const verify = {
    table: a,
    equal: [
      {
        column: k0,
        expression: `CASE WHEN EXISTS (SELECT 1 FROM ${qualified(into)} _zd_i LEFT JOIN ${qualified(b)} _zd_j ON ${keyRow('_zd_j.')} = ROW(${key.map(outer).join(', ')})
          WHERE ${keyRow('_zd_i.')} = ROW(${key.map(outer).join(', ')}) AND ${cols('_zd_i.', ac)} IS NOT DISTINCT FROM ${cols(`${qualified(a)}.`, ac)}
            AND ${cols('_zd_i.', bc)} IS NOT DISTINCT FROM ${cols('_zd_j.', bc)}) THEN ${outer(k0)} END`,
      },
    ],
  };
  const archiveStep = (t: TableName, info: TableInfo, id: string): Step => archiveTableStep(t, stateSchema, id, 'merge-tables', info);
  const restoreStep = (t: TableName, info: TableInfo, id: string): Step => restoreTableStep(t, stateSchema, id, `mergeTables into ${tableLabel(into)}`, info);
  return {
    summary: `merge ${tableLabel(a)} and ${tableLabel(b)} into ${tableLabel(into)}`,
    expand: {
      steps: [txStep('create-table', `create ${tableLabel(into)}`, [{ text: createInto }, copyTablePrivileges(a, into), copyTablePrivileges(b, into)]), triggers],
      backfill: {
        table: a,
        set: [],
        copy: {
          into,
          key,
          join: b,
          columns: [...ac.map((c) => ({ column: c.name, expression: `_zd_s.${ident(c.name)}` })), ...bc.map((c) => ({ column: c.name, expression: `_zd_j.${ident(c.name)}` }))],
          mode: 'insert',
          quietFlag: sync.flag,
        },
      },
      verify,
    },
    contract: {
      steps: [
        dropTriggers('into'),
        txStep('take-sequence', `let ${tableLabel(into)} own the sequence of ${tableLabel(a)}.${k0}`, [moveSerialOwnership(a, into, k0)]),
        archiveStep(b, bi, 'archive-b'),
        archiveStep(a, ai, 'archive-a'),
      ],
    },
    undoContract: {
      steps: [
        restoreStep(a, ai, 'restore-a'),
        restoreStep(b, bi, 'restore-b'),
        txStep('give-back-sequence', `give the sequence back to ${tableLabel(a)}.${k0}`, [moveSerialOwnership(into, a, k0)]),
        // Only the new version writes now (to `into`): its writes reach `a` and `b` through the trigger on `into` while
        // the batches put back what it wrote since the contract; the old version's triggers come once both agree.
        txStep('sync-back', `sync trigger on ${tableLabel(into)} towards ${tableLabel(a)} and ${tableLabel(b)}`, mergeSyncTriggers(sync, 'from-into')),
      ],
      backfill: {
        table: into,
        set: [],
        mirror: [
          { into: a, key, columns: sync.aColumns, quietFlag: sync.flag },
          // `b` is 1 : 0..1: a row it lacks is only added when it has a value, a row it has follows `into`.
          { into: b, key, columns: sync.bColumns, quietFlag: sync.flag, sparse: true },
        ],
      },
      afterBackfill: [txStep('sync', `sync triggers on ${tableLabel(a)} and ${tableLabel(b)} towards ${tableLabel(into)}`, mergeSyncTriggers(sync, 'to-into'))],
      verify,
    },
    undoExpand: { steps: [dropTriggers('a'), txStep('drop-table', `drop ${tableLabel(into)} (its rows mirror the two tables)`, [{ text: `DROP TABLE IF EXISTS ${qualified(into)}` }])] },
  };
}

import type { Change, ResolveContext, Step } from '../migration.js';
import { tableInfo, type TableInfo } from '../postgres/catalog.js';
import { archiveLatePartitions, lockPartitionTree, requirePartitionsStillThere, restoreLatePartitions } from '../postgres/partitions.js';
import { ChangeInputError, objectName, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { archivedRowsSql, forgetArchive, registerTableArchiveSql, registryTable, requireTableArchive, type TableArchiveKind } from '../postgres/archive.js';
import { renameTable, setSchema } from '../postgres/table-ddl.js';
import { txStep } from './common.js';
import { checkOptions, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const dropTableSchema = {
  'x-change': 'dropTable',
  'x-template': 'drop-table',
  description: 'Drops a table at contract, once the version that used it is gone, by moving it into the state schema (no copy); down moves it back with every row, purge drops it for good.',
  type: 'object',
  additionalProperties: false,
  required: ['table'],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table to drop' },
  },
} as const satisfies ChangeSchema;

export type DropTableOptions = OptionsOf<typeof dropTableSchema>;

/** Where dropTable keeps a table until purge: the state schema, under a name derived from the original. */
export function droppedTableArchive(t: TableName, stateSchema: string): TableName {
  return { schema: stateSchema, name: objectName('zd_dropped', t.schema, t.name) };
}

/**
 * The step that moves a table into the state schema under its archive name (a catalog-only change: no rewrite, no
 * copy) and registers it for `umzug purge`. Used by dropTable and mergeTables. A partitioned table's partitions are
 * separate tables that SET SCHEMA leaves where they are (still there to read and write): each goes too, under an
 * archive name of its own, and purge's DROP TABLE of the table drops them with it. Those the change read are moved by
 * name; one created or attached since (pg_partman's premake between expand and contract) is found below the archived
 * table and moved too, with its rows (archiveLatePartitions).
 */
export function archiveTableStep(t: TableName, stateSchema: string, id: string, kind: TableArchiveKind, info?: TableInfo): Step {
  const archive = droppedTableArchive(t, stateSchema);
  const partitions = info?.partitioning?.partitions.map((p) => p.table) ?? [];
  const what = `${kind === 'drop-table' ? 'dropTable' : 'mergeTables'} ${tableLabel(t)}`;
  return txStep(id, `move ${tableLabel(t)}${info?.partitioning ? ` and its ${partitions.length} partitions` : ''} into ${tableLabel(archive)}`, [
    ...(info?.partitioning ? [lockPartitionTree(t), requirePartitionsStillThere(t, partitions, what)] : []),
    renameTable(t, archive.name),
    setSchema({ schema: t.schema, name: archive.name }, archive.schema),
    { text: registerTableArchiveSql(archive.schema, archive.name, t, kind) },
    ...partitions.flatMap((p) => {
      const a = droppedTableArchive(p, stateSchema);
      return [renameTable(p, a.name), setSchema({ schema: p.schema, name: a.name }, a.schema)];
    }),
    ...(info?.partitioning ? [archiveLatePartitions(archive, registryTable(stateSchema), archivedRowsSql)] : []),
  ]);
}

/**
 * The step that moves an archived table (and its partitions, those created or attached since the change read the
 * catalog by the places the archive step recorded) back; it refuses, changing nothing, when purge deleted the archive.
 */
export function restoreTableStep(t: TableName, stateSchema: string, id: string, what: string, info?: TableInfo): Step {
  const archive = droppedTableArchive(t, stateSchema);
  const partitions = info?.partitioning?.partitions.map((p) => p.table) ?? [];
  return txStep(id, `move ${tableLabel(archive)}${info?.partitioning ? ` and its ${partitions.length} partitions` : ''} back to ${tableLabel(t)}`, [
    requireTableArchive(archive.schema, archive.name, t, what),
    setSchema(archive, t.schema),
    renameTable({ schema: t.schema, name: archive.name }, t.name),
    ...(info?.partitioning ? [restoreLatePartitions(t, stateSchema, registryTable(stateSchema), archive.name)] : []),
    forgetArchive(archive.schema, archive.name),
    ...partitions.flatMap((p) => {
      const a = droppedTableArchive(p, stateSchema);
      return [setSchema(a, p.schema), renameTable({ schema: p.schema, name: a.name }, p.name)];
    }),
  ]);
}

/**
 * Drops a table at contract, once the version that used it is gone, by moving it into the state schema under an
 * archive name (a catalog-only change: no rewrite, no copy). `down` moves it back with every row, index, constraint,
 * trigger and owned sequence; purge drops it for good.
 */
export function dropTable(options: DropTableOptions): Change {
  checkOptions(dropTableSchema, options);
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  return {
    kind: 'dropTable',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [{ kind: 'table-exists', table: table(ctx) }],
    describe: (catalog, ctx) => {
      const t = table(ctx);
      const info = tableInfo(catalog, t);
      const referencedBy = [...new Set((info?.columns ?? []).flatMap((c) => c.referencedBy))];
      if (referencedBy.length > 0) {
        throw new ChangeInputError(
          `dropTable: ${tableLabel(t)} is referenced by the foreign keys ${referencedBy.join(', ')} of other tables; archived, it would go on checking their rows. ` +
            'Nothing was changed. Drop those foreign keys first (sql(), in an earlier migration), then the table.',
        );
      }
      const stateSchema = ctx.stateSchema ?? 'zero_downtime';
      return {
        summary: `drop table ${tableLabel(t)} (archived as ${tableLabel(droppedTableArchive(t, stateSchema))} until purge)`,
        expand: { steps: [] },
        contract: { steps: [archiveTableStep(t, stateSchema, 'archive-table', 'drop-table', info)] },
        undoContract: { steps: [restoreTableStep(t, stateSchema, 'restore-table', `dropTable ${tableLabel(t)}`, info)] },
        undoExpand: { steps: [] },
      };
    },
  };
}

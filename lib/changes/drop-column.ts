import type { Change, ChangeDescription, ResolveContext, Step } from '../migration.js';
import { columnInfo, tableInfo } from '../postgres/catalog.js';
import * as ddl from '../postgres/ddl.js';
import {
  abandonArchiveFill,
  analyzeArchive,
  archiveFill,
  archiveJoin,
  archiveName,
  archivedValueJoined,
  archivedWhereJoined,
  dropArchive,
  finishArchiveFill,
  requireArchive,
  restoreColumnLike,
  startArchiveFill,
  type ArchiveSpec,
} from '../postgres/archive.js';
import { columnAttachments, lockTables, refuseUncarriedDependents } from '../postgres/column-attachments.js';
import { ChangeInputError, ident, objectName, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { lockStep, rebuildOriginals, refuseOnPartitioned } from './column-replacement.js';
import { checkOptions, NAME, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const dropColumnSchema = {
  'x-change': 'dropColumn',
  'x-template': 'drop-column',
  description: "Drops a column at contract, once the version that reads it is gone; its values are archived so down can restore them.",
  'x-notes': ["expand: nothing (the running version still reads the column); stop using it in the new version first", "contract: archive and drop; down adds it back with its values"],
  type: 'object',
  additionalProperties: false,
  required: ["table", "column"],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table' },
    column: { ...NAME, default: 'my_column', 'x-cli': '--column', description: 'the column to drop' },
  },
} as const satisfies ChangeSchema;

export type DropColumnOptions = OptionsOf<typeof dropColumnSchema>;

/**
 * Drops a column once no running version uses it. Expand does nothing harmful: it only drops a NOT NULL that has no
 * default, so the new version can insert rows without the column. Contract copies the column's values (primary key
 * + value) into an archive table in the state schema, with its comment, privileges and collation, then drops it and
 * with it its indexes and constraints. Down adds it back, fills it from the archive and rebuilds default, NOT NULL,
 * CHECKs, foreign keys and indexes from the catalog snapshot; `umzug purge` deletes archives older than a retention.
 */
export function dropColumn(options: DropColumnOptions): Change {
  checkOptions(dropColumnSchema, options);
  const { column } = options;
  ident(column);
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  return {
    kind: 'dropColumn',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: table(ctx) },
      { kind: 'has-primary-key', table: table(ctx) },
      { kind: 'column-exists', table: table(ctx), column },
    ],
    describe: (catalog, ctx): ChangeDescription => {
      const t = table(ctx);
      const stateSchema = ctx.stateSchema ?? 'zero_downtime';
      const info = tableInfo(catalog, t);
      const col = columnInfo(catalog, t, column);
      if (!info || !col) throw new ChangeInputError(`dropColumn: column ${JSON.stringify(column)} does not exist in ${tableLabel(t)}`);
      const label = `${tableLabel(t)}.${column}`;
      const refuse = (why: string) => {
        throw new ChangeInputError(`dropColumn: ${label} ${why}. Nothing was changed.`);
      };
      if (info.primaryKey.includes(column)) refuse('is part of the primary key; the archive is keyed by it. Give the table another primary key first');
      if (col.identity) refuse('is an identity column; its sequence would go with it and down could not continue it. Drop the identity (sql()) in an earlier migration');
      if (col.generated) refuse('is a generated column; adding it back would rewrite the table under lock. Drop it with sql()');
      if (col.default?.includes('nextval(')) refuse(`owns the sequence behind its default ${col.default}, which would be dropped with it. Detach it first (ALTER SEQUENCE … OWNED BY NONE) or drop the column with sql()`);
      const att = columnAttachments(info, col, 'dropColumn');
      refuseOnPartitioned('dropColumn', info, [column], att);
      if (att.incoming.length > 0) {
        refuse(`is referenced by the foreign keys ${att.incoming.map((f) => `${f.name} of ${tableLabel(f.table)}`).join(', ')}; drop them first (in an earlier migration)`);
      }
      const keyConstraints = att.indexes.flatMap((i) => (i.constraint ? [i.constraint.name] : []));
      const known = { indexes: att.indexes.map((i) => i.name), constraints: [...keyConstraints, ...att.constraints.map((c) => c.name)] };
      const archive: ArchiveSpec = {
        archive: archiveName(stateSchema, 'drop', t, column),
        table: t,
        keys: info.primaryKey.map((k) => ({ name: k, type: info.columns.find((c) => c.name === k)!.type })),
        values: [{ name: column, type: col.type }],
        kind: 'drop-column',
      };
      // Without a default, NOT NULL would reject the new version's inserts (it no longer writes the column).
      const relaxNotNull = col.notNull && col.default == null;
      const nn = objectName('zd_nn', t.name, column);
      const fallback = col.default != null ? `COALESCE(${ident(column)}, ${col.default})` : ident(column);
      const dropsToo = [...att.indexes.map((i) => `index ${i.name}`), ...att.constraints.map((c) => `constraint ${c.name}`)];
      const restoreNotNull: Step[] = relaxNotNull
        ? [
            lockStep('nn-add', `add CHECK (${column} IS NOT NULL) NOT VALID`, [ddl.addNotNullCheck(t, nn, column)]),
            lockStep('nn-validate', `validate CHECK (${column} IS NOT NULL): rows the new version inserted without ${column} must be filled first`, [
              ddl.validateConstraint(t, nn),
            ]),
            lockStep('nn-set', `set ${column} NOT NULL`, [ddl.setNotNull(t, column), ddl.dropConstraintIfExists(t, nn)]),
          ]
        : [];
      return {
        summary: `drop column ${label}${dropsToo.length ? ` (with ${dropsToo.join(', ')})` : ''}, archived in ${tableLabel(archive.archive)} until purge`,
        expand: {
          steps: [
            lockStep('check-and-relax', relaxNotNull ? `check what depends on ${column}; drop its NOT NULL (it has no default)` : `check what depends on ${column}`, [
              refuseUncarriedDependents(t, column, known, 'dropColumn', { allowSequences: false, requirePlainTable: false }),
              ...(relaxNotNull ? [ddl.dropNotNull(t, column)] : []),
            ]),
          ],
        },
        contract: {
          steps: [lockStep('archive-start', `create the archive ${tableLabel(archive.archive)} of ${label} and the trigger that keeps it current`, startArchiveFill(archive, stateSchema))],
          backfill: archiveFill(archive),
          afterBackfill: [
            lockStep('archive-analyze', `analyze ${tableLabel(archive.archive)} (its row count for purge)`, [analyzeArchive(archive)]),
            lockStep('drop-column', `drop ${label}, ending the archive's trigger under the same lock`, [
              lockTables([t]),
              ...finishArchiveFill(archive, stateSchema),
              refuseUncarriedDependents(t, column, known, 'dropColumn', { allowSequences: false, requirePlainTable: false }),
              ddl.dropColumnIfExists(t, column),
            ]),
          ],
        },
        undoContract: {
          steps: [
            lockStep('restore-column', `add ${column} ${col.type} back`, [
              requireArchive(archive, stateSchema, 'dropColumn'),
              restoreColumnLike(archive, stateSchema, 0),
              ...(col.default != null ? [ddl.setDefault(t, column, col.default)] : []),
            ]),
          ],
          backfill: {
            table: t,
            set: [{ column, expression: `CASE WHEN ${archivedWhereJoined()} THEN ${archivedValueJoined(0)} ELSE ${fallback} END` }],
            join: archiveJoin(archive),
          },
          afterBackfill: [
            ...rebuildOriginals(t, [{ ...col, notNull: col.notNull && !relaxNotNull }], [att], 'rs', info.partitioning),
            lockStep('drop-archive', `drop the archive ${tableLabel(archive.archive)}`, dropArchive(archive, stateSchema)),
          ],
        },
        undoExpand: {
          steps: [
            // A contract that failed while filling the archive left its trigger (and a partial archive) behind.
            lockStep('abandon-archive', `drop the archive trigger of ${label} and an unfinished archive, if a contract left them`, abandonArchiveFill(archive, stateSchema)),
            ...restoreNotNull,
          ],
        },
      };
    },
  };
}

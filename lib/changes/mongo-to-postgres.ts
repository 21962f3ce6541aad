import type { Change, TaskSpec } from '../migration.js';
import { objectName, tableLabel } from '../postgres/identifiers.js';
import { createTargetTable, mongoStateTables } from '../mongo/sql.js';
import { dropOrArchiveTable } from '../postgres/table-ddl.js';
import { allColumns, resolveMove, targetTable, type MongoMove, type MongoToPostgresOptions } from '../mongo/move.js';
import { txStep } from './common.js';

export type { MongoToPostgresOptions } from '../mongo/move.js';

/**
 * Moves a MongoDB collection into a PostgreSQL table. Expand creates the table (key, one column per mapping, a row
 * version and a tombstone mark), then its tasks copy the collection (lib/mongo/backfill.ts) and validate it
 * (checksums, lib/mongo/validate.ts): the expand finishes only when the mismatch rate is within
 * verify.maxMismatchRate. The application dual-writes meanwhile (MongoDualWriter). Contract validates again — the
 * cutover gate — and removes the tombstones. `down` of the expand archives the table in the state schema when it holds
 * rows (after a write flip it may hold the only copy of new writes), else drops it.
 *
 * The description is pure: the tasks name the move; the `mongo-*` task runners (registered by zeroDowntime() from its
 * `mongo` config) do the MongoDB work.
 */
export function mongoToPostgres(options: MongoToPostgresOptions): Change & { readonly move: MongoMove } {
  const move = resolveMove(options);
  const task = (kind: string, id: string, description: string, table: ReturnType<typeof targetTable>): TaskSpec => ({
    kind,
    id,
    description,
    params: { move, table },
  });
  return {
    kind: 'mongoToPostgres',
    move,
    tables: (ctx) => [targetTable(move, ctx.defaultSchema)],
    preconditions: (ctx) => [{ kind: 'relation-absent', table: targetTable(move, ctx.defaultSchema) }],
    describe: (_catalog, ctx) => {
      const t = targetTable(move, ctx.defaultSchema);
      const stateSchema = ctx.stateSchema ?? 'zero_downtime';
      const label = tableLabel(t);
      const source = `${move.collection.database ? `${move.collection.database}.` : ''}${move.collection.name}`;
      const archive = objectName('zd_mongo', t.schema, t.name);
      return {
        summary: `move MongoDB collection ${source} into ${label} (${move.columns.length} columns, key ${move.key.column} ← _id)`,
        expand: {
          steps: [
            txStep('mongo-state', 'create the Mongo move state tables (progress, quarantine, outbox)', mongoStateTables(stateSchema)),
            txStep('create-table', `create ${label}`, [createTargetTable(t, allColumns(move), move.key.column, move.key.type)]),
          ],
          tasks: [
            task('mongo-backfill', 'backfill', `copy ${source} into ${label}`, t),
            task('mongo-verify', 'verify', `validate ${label} against ${source} (checksums)`, t),
          ],
        },
        contract: {
          steps: [],
          tasks: [
            task('mongo-verify', 'verify', `validate ${label} against ${source} before the cutover`, t),
            task('mongo-purge-tombstones', 'purge-tombstones', `remove the tombstones of deleted documents from ${label}`, t),
          ],
        },
        undoExpand: {
          steps: [txStep('drop-or-archive', `drop ${label} (or archive it if it holds rows)`, [dropOrArchiveTable(t, stateSchema, archive)])],
          tasks: [task('mongo-forget', 'forget', `forget the backfill progress and quarantine of ${label}`, t)],
        },
        undoContract: { steps: [] },
        ...(move.readFlag ? { readFlag: move.readFlag } : {}),
      };
    },
  };
}

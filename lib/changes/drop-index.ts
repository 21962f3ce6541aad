import type { Change, ResolveContext } from '../migration.js';
import { tableInfo } from '../postgres/catalog.js';
import { ChangeInputError, ident, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { dropIndexConcurrently, recreateIndexConcurrently } from '../postgres/index-sql.js';
import { indexShape, partitionedIndexProblem, partitionIndexName } from '../postgres/partitions.js';
import { attachedPartitionIndexes, partitionedIndexSteps } from './partitioned-index.js';
import { checkOptions, NAME, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const dropIndexSchema = {
  'x-change': 'dropIndex',
  'x-template': 'drop-index',
  description: 'Drops an index with DROP INDEX CONCURRENTLY at contract, once the version whose queries may use it is gone; down builds it again from its captured definition.',
  type: 'object',
  additionalProperties: false,
  required: ['table', 'name'],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table' },
    name: { ...NAME, default: 'my_table_my_column_idx', 'x-cli': '--index-name', description: 'the index to drop' },
  },
} as const satisfies ChangeSchema;

export type DropIndexOptions = OptionsOf<typeof dropIndexSchema>;

/**
 * Drops an index with DROP INDEX CONCURRENTLY at contract, once the version whose queries may rely on it is gone.
 * Its definition is captured (pg_get_indexdef) when the change first runs, so `down` builds it again, concurrently.
 */
export function dropIndex(options: DropIndexOptions): Change {
  checkOptions(dropIndexSchema, options);
  const { name } = options;
  ident(name);
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  return {
    kind: 'dropIndex',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: table(ctx) },
      { kind: 'index-exists', table: table(ctx), index: name },
    ],
    describe: (catalog, ctx) => {
      const t = table(ctx);
      const info = tableInfo(catalog, t)?.indexes?.find((i) => i.name === name);
      if (!info) throw new ChangeInputError(`dropIndex: index ${JSON.stringify(name)} of ${tableLabel(t)} is not in the catalog read at first run. Nothing was changed.`);
      if (info.constraint) {
        throw new ChangeInputError(
          `dropIndex: ${name} implements the constraint ${JSON.stringify(info.constraint)} of ${tableLabel(t)}; dropping it would drop the constraint. ` +
            'Nothing was changed. Drop the constraint with sql() instead.',
        );
      }
      if (!info.valid) throw new ChangeInputError(`dropIndex: ${name} on ${tableLabel(t)} is INVALID (a failed concurrent build); drop it with sql() and DROP INDEX CONCURRENTLY. Nothing was changed.`);
      const partitioning = tableInfo(catalog, t)?.partitioning;
      if (partitioning) {
        // Down builds it again partition by partition; refused now what that could not do, not at down.
        const problem = partitionedIndexProblem(t, partitioning, { unique: false, columns: null });
        if (problem) throw new ChangeInputError(`dropIndex: ${name} of the partitioned table ${tableLabel(t)} could not be built again by down: ${problem}. Nothing was changed.`);
        // Each partition's index comes back under the name it had, so down gives back the schema exactly.
        const original = attachedPartitionIndexes(partitioning, t, name);
        const steps = partitionedIndexSteps({
          table: t,
          partitioning,
          name,
          shape: indexShape(info.definition),
          nameFor: (p) => original.get(tableLabel(p.table)) ?? partitionIndexName(name, p.table),
        });
        return {
          summary: `drop index ${t.schema}.${name} of the partitioned ${tableLabel(t)} (down builds it again one partition at a time)`,
          expand: { steps: [] },
          // A partitioned index cannot be dropped CONCURRENTLY: DROP INDEX takes ACCESS EXCLUSIVE on the table and
          // every partition for the catalog update, under lock_timeout and retried like every step.
          contract: { steps: steps.drop.slice(0, 1) },
          undoContract: { steps: steps.build },
          undoExpand: { steps: [] },
        };
      }
      return {
        summary: `drop index ${t.schema}.${name} of ${tableLabel(t)}`,
        expand: { steps: [] },
        contract: {
          steps: [{ id: 'drop-index', description: `drop index ${name} concurrently`, statements: [dropIndexConcurrently(t.schema, name)], transactional: false }],
        },
        undoContract: {
          steps: [
            {
              id: 'recreate-index',
              description: `build index ${name} again concurrently`,
              statements: [recreateIndexConcurrently(info.definition)],
              transactional: false,
              concurrentIndex: { schema: t.schema, name },
            },
          ],
        },
        undoExpand: { steps: [] },
      };
    },
  };
}

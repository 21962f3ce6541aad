import type { Change, ResolveContext, Step } from '../migration.js';
import { ChangeInputError, ident, objectName, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { addConstraintUsingIndex, checkAccessMethod, createIndexConcurrently, defaultObjectName, dropIndexConcurrently } from '../postgres/index-sql.js';
import { dropConstraintIfExists } from '../postgres/ddl.js';
import { tableInfo } from '../postgres/catalog.js';
import { partitionedIndexProblem, specShape } from '../postgres/partitions.js';
import { checkExpression, txStep } from './common.js';
import { partitionedIndexSteps } from './partitioned-index.js';
import { checkOptions, NAME, NAMES, SQL, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const addIndexSchema = {
  'x-change': 'addIndex',
  'x-template': 'add-index',
  description: "Builds an index with CREATE INDEX CONCURRENTLY (writes go on during the build); a failed build's INVALID leftover is dropped before retrying.",
  'x-notes': ["expand: CREATE [UNIQUE] INDEX CONCURRENTLY, outside a transaction; down: DROP INDEX CONCURRENTLY"],
  type: 'object',
  additionalProperties: false,
  required: ["table", "columns"],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table' },
    columns: { ...NAMES, default: ["my_column"], 'x-cli': '--columns', description: 'indexed columns, in order' },
    name: { ...NAME, 'x-cli': '--index-name', description: "the index's name (default <table>_<columns>_idx)" },
    unique: { type: 'boolean', 'x-cli': '--unique', description: 'a unique index' },
    where: { ...SQL, 'x-cli': '--where', description: 'predicate of a partial index' },
    using: { type: 'string', 'x-cli': '--using', description: 'access method: btree, gin, gist, hash, brin…' },
    include: { ...NAMES, 'x-cli': '--include', description: 'non-key columns stored in the index' },
    constraint: { ...NAME, 'x-cli': '--constraint', description: 'promote the unique index to a UNIQUE constraint of this name' },
  },
} as const satisfies ChangeSchema;

export type AddIndexOptions = OptionsOf<typeof addIndexSchema>;

/**
 * Builds an index with CREATE INDEX CONCURRENTLY, outside any transaction, so writes go on during the build. A build
 * that fails (a duplicate under a unique index, a timeout) leaves an INVALID index; the executor drops it before
 * reporting the error or retrying, so a failed `up` leaves nothing behind that slows writes down.
 */
export function addIndex(options: AddIndexOptions): Change {
  checkOptions(addIndexSchema, options);
  const { columns, include } = options;
  columns.forEach(ident);
  include?.forEach(ident);
  const unique = options.unique === true;
  const where = options.where !== undefined ? checkExpression(options.where, 'addIndex: where') : undefined;
  const using = options.using !== undefined ? checkAccessMethod(options.using) : undefined;
  const constraint = options.constraint;
  if (constraint !== undefined) {
    ident(constraint);
    if (!unique) throw new ChangeInputError('addIndex: only a unique index can become a constraint; set unique: true or leave out `constraint`');
    if (where !== undefined) throw new ChangeInputError('addIndex: a partial index (with `where`) cannot become a constraint');
    if (using !== undefined && using !== 'btree') throw new ChangeInputError(`addIndex: a ${using} index cannot become a UNIQUE constraint; only btree can`);
  }
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  const nameFor = (t: TableName): string =>
    options.name !== undefined ? options.name : defaultObjectName(t.name, columns, unique ? 'key' : 'idx', (...p) => objectName('zd_idx', ...p));
  if (options.name !== undefined) ident(options.name);
  return {
    kind: 'addIndex',
    tables: (ctx) => {
      const t = table(ctx);
      return [t, { schema: t.schema, name: nameFor(t) }, ...(constraint ? [{ schema: t.schema, name: constraint }] : [])];
    },
    preconditions: (ctx) => {
      const t = table(ctx);
      return [
        { kind: 'table-exists', table: t },
        ...[...columns, ...(include ?? [])].map((column) => ({ kind: 'column-exists' as const, table: t, column })),
        { kind: 'relation-absent', table: { schema: t.schema, name: nameFor(t) } },
        ...(constraint
          ? [
              { kind: 'constraint-absent' as const, table: t, constraint },
              ...(constraint !== nameFor(t) ? [{ kind: 'relation-absent' as const, table: { schema: t.schema, name: constraint } }] : []),
            ]
          : []),
      ];
    },
    describe: (catalog, ctx) => {
      const t = table(ctx);
      const name = nameFor(t);
      const partitioning = tableInfo(catalog, t)?.partitioning;
      if (partitioning) {
        const problem = partitionedIndexProblem(t, partitioning, { unique, columns });
        if (problem) {
          throw new ChangeInputError(`addIndex: ${unique ? 'a unique index' : 'an index'} on (${columns.join(', ')}) cannot be built on the partitioned table ${tableLabel(t)}: ${problem}. Nothing was changed.`);
        }
        // A constraint's index is made by ADD CONSTRAINT itself on a partitioned table, so it has the constraint's name.
        const steps = partitionedIndexSteps({
          table: t,
          partitioning,
          name: constraint ?? name,
          shape: specShape({ unique, columns, ...(using ? { using } : {}), ...(include ? { include } : {}), ...(where ? { where } : {}) }),
          ...(constraint ? { constraint: { columns, ...(include ? { include } : {}) } } : {}),
        });
        const leaves = partitioning.partitions.filter((p) => p.kind === 'table').length;
        return {
          summary: `add ${unique ? 'unique ' : ''}index ${constraint ?? name} on the partitioned ${tableLabel(t)} (${columns.join(', ')})${constraint ? ' as a constraint' : ''}, one partition at a time (${leaves} partitions)`,
          expand: { steps: steps.build },
          contract: { steps: [] },
          undoContract: { steps: [] },
          undoExpand: { steps: steps.drop },
        };
      }
      const build: Step = {
        id: 'create-index',
        description: `build ${unique ? 'unique ' : ''}index ${name} on ${tableLabel(t)} concurrently`,
        statements: [createIndexConcurrently(t, { name, columns, unique, ...(using ? { using } : {}), ...(include ? { include } : {}), ...(where ? { where } : {}) })],
        transactional: false,
        concurrentIndex: { schema: t.schema, name },
      };
      // ADD CONSTRAINT … USING INDEX renames the index to the constraint's name.
      const indexAfter = constraint ?? name;
      return {
        summary: `add ${unique ? 'unique ' : ''}index ${name} on ${tableLabel(t)} (${columns.join(', ')})${constraint ? ` as constraint ${constraint}` : ''}`,
        expand: {
          steps: [build, ...(constraint ? [txStep('add-constraint', `make ${name} the constraint ${constraint}`, [addConstraintUsingIndex(t, constraint, name)])] : [])],
        },
        contract: { steps: [] },
        undoContract: { steps: [] },
        undoExpand: {
          steps: [
            ...(constraint ? [txStep('drop-constraint', `drop constraint ${constraint}`, [dropConstraintIfExists(t, constraint)])] : []),
            { id: 'drop-index', description: `drop index ${indexAfter} concurrently`, statements: [dropIndexConcurrently(t.schema, indexAfter), ...(constraint ? [dropIndexConcurrently(t.schema, name)] : [])], transactional: false },
          ],
        },
      };
    },
  };
}

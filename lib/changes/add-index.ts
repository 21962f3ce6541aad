import type { Change, ResolveContext, Step } from '../migration.js';
import { ChangeInputError, ident, objectName, resolveTable, tableLabel, type TableInput, type TableName } from '../postgres/identifiers.js';
import { addConstraintUsingIndex, checkAccessMethod, createIndexConcurrently, defaultObjectName, dropIndexConcurrently } from '../postgres/index-sql.js';
import { dropConstraintIfExists } from '../postgres/ddl.js';
import { checkExpression, checkName, checkNames, txStep } from './common.js';

export interface AddIndexOptions {
  readonly table: TableInput;
  readonly columns: readonly string[];
  /** Default `<table>_<columns>_idx` (or `_key` when unique), hashed when longer than 63 bytes. */
  readonly name?: string;
  readonly unique?: boolean;
  /** A partial index's predicate, SQL over the table's columns. */
  readonly where?: string;
  /** Index access method: btree (default), gin, gist, hash, brin… */
  readonly using?: string;
  /** Non-key columns stored in the index (covering index). */
  readonly include?: readonly string[];
  /** Promote the finished unique index to a UNIQUE constraint of this name (ADD CONSTRAINT … USING INDEX). */
  readonly constraint?: string;
}

/**
 * Builds an index with CREATE INDEX CONCURRENTLY, outside any transaction, so writes go on during the build. A build
 * that fails (a duplicate under a unique index, a timeout) leaves an INVALID index; the executor drops it before
 * reporting the error or retrying, so a failed `up` leaves nothing behind that slows writes down.
 */
export function addIndex(options: AddIndexOptions): Change {
  const columns = checkNames(options?.columns, 'addIndex: columns');
  columns.forEach(ident);
  const include = options.include !== undefined ? checkNames(options.include, 'addIndex: include') : undefined;
  include?.forEach(ident);
  const unique = options.unique === true;
  const where = options.where !== undefined ? checkExpression(options.where, 'addIndex: where') : undefined;
  const using = options.using !== undefined ? checkAccessMethod(options.using) : undefined;
  const constraint = options.constraint !== undefined ? checkName(options.constraint, 'addIndex: constraint') : undefined;
  if (constraint !== undefined) {
    ident(constraint);
    if (!unique) throw new ChangeInputError('addIndex: only a unique index can become a constraint; set unique: true or leave out `constraint`');
    if (where !== undefined) throw new ChangeInputError('addIndex: a partial index (with `where`) cannot become a constraint');
    if (using !== undefined && using !== 'btree') throw new ChangeInputError(`addIndex: a ${using} index cannot become a UNIQUE constraint; only btree can`);
  }
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  const nameFor = (t: TableName): string =>
    options.name !== undefined ? checkName(options.name, 'addIndex: name') : defaultObjectName(t.name, columns, unique ? 'key' : 'idx', (...p) => objectName('zd_idx', ...p));
  if (options.name !== undefined) ident(checkName(options.name, 'addIndex: name'));
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
    describe: (_catalog, ctx) => {
      const t = table(ctx);
      const name = nameFor(t);
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

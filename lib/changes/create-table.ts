import type { Change, ResolveContext } from '../migration.js';
import { constantLiteral } from '../postgres/ddl.js';
import { ChangeInputError, ident, objectName, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { createTable as createTableSql, dropOrArchiveTable, type ColumnDef } from '../postgres/table-ddl.js';
import { checkExpression, checkType, txStep } from './common.js';
import { checkOptions, CONSTANT, NAME, NAMES, SQL, TABLE, TYPE, type ChangeSchema, type OptionsOf } from './options.js';

export const createTableSchema = {
  'x-change': 'createTable',
  description: 'Creates a table in one short transaction; down drops it while empty, else archives it.',
  type: 'object',
  additionalProperties: false,
  required: ['table', 'columns', 'primaryKey'],
  properties: {
    table: { ...TABLE, description: 'the new table' },
    columns: {
      type: 'array',
      minItems: 1,
      description: 'its columns, in order',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'type'],
        properties: {
          name: NAME,
          type: TYPE,
          nullable: { type: 'boolean', description: 'default true' },
          default: { ...CONSTANT, description: 'a constant default, passed as a literal' },
          defaultSql: { ...SQL, description: 'a default expression such as now() or gen_random_uuid()' },
        },
      },
    },
    primaryKey: { ...NAMES, description: 'the primary key columns' },
  },
} as const satisfies ChangeSchema;

export type CreateTableOptions = OptionsOf<typeof createTableSchema>;

/**
 * An option asking for a partitioned table gets an answer of its own rather than "not an option": its partitions, their
 * bounds and what creates the next ones (pg_partman, a scheduled job) are more than createTable describes today.
 */
function refusePartitionOptions(options: unknown): void {
  if (!options || typeof options !== 'object') return;
  const asked = Object.keys(options).filter((k) => /^partition/i.test(k));
  if (asked.length === 0) return;
  throw new ChangeInputError(
    `createTable: ${asked.join(', ')}: createTable cannot make a partitioned table yet. Nothing was changed. ` +
      'Create it with sql() in a migration of its own (CREATE TABLE … PARTITION BY …, then its partitions): a new, empty table takes no lock any running query waits for. Once it exists, the other changes work on it as README.md\'s "Partitioned tables" says.',
  );
}

/**
 * Creates a table. Nothing of the running version depends on it, so expand is one short transaction. `down` drops it
 * when it is still empty; if the new version already wrote rows, it is moved into the state schema instead, so they are
 * kept until purge.
 */
export function createTable(options: CreateTableOptions): Change {
  refusePartitionOptions(options);
  checkOptions(createTableSchema, options);
  const columns: ColumnDef[] = options.columns.map((c, i) => {
    const name = c.name;
    ident(name);
    const type = checkType(c.type, `createTable: columns[${i}].type`);
    if (c.default !== undefined && c.defaultSql !== undefined) throw new ChangeInputError(`createTable: ${name}: give default or defaultSql, not both`);
    const defaultSql =
      c.default !== undefined ? constantLiteral(c.default, type) : c.defaultSql !== undefined ? checkExpression(c.defaultSql, `createTable: ${name}.defaultSql`) : null;
    return { name, type, notNull: c.nullable === false, defaultSql };
  });
  const names = new Set(columns.map((c) => c.name));
  if (names.size !== columns.length) throw new ChangeInputError('createTable: two columns have the same name');
  const primaryKey = options.primaryKey;
  for (const k of primaryKey) if (!names.has(k)) throw new ChangeInputError(`createTable: primary key column ${JSON.stringify(k)} is not among the columns`);
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  return {
    kind: 'createTable',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [{ kind: 'relation-absent', table: table(ctx) }],
    describe: (_catalog, ctx) => {
      const t = table(ctx);
      const archive = objectName('zd_created', t.schema, t.name);
      return {
        summary: `create table ${tableLabel(t)} (${columns.map((c) => c.name).join(', ')})`,
        expand: { steps: [txStep('create-table', `create table ${tableLabel(t)}`, [createTableSql(t, columns, primaryKey)])] },
        contract: { steps: [] },
        undoContract: { steps: [] },
        undoExpand: {
          steps: [txStep('drop-or-archive', `drop ${tableLabel(t)} (or archive it if it holds rows)`, [dropOrArchiveTable(t, ctx.stateSchema ?? 'zero_downtime', archive)])],
        },
      };
    },
  };
}

import type { Change, ResolveContext } from '../migration.js';
import { ChangeInputError, ident, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { copyTablePrivileges, createPassThroughView, dropViewIfExists, renameTable as renameTableSql } from '../postgres/table-ddl.js';
import { txStep } from './common.js';
import { checkOptions, NAME, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const renameTableSchema = {
  'x-change': 'renameTable',
  'x-template': 'rename-table',
  description: "Renames a table and leaves an automatically updatable view under the old name for the running version; contract drops the view.",
  type: 'object',
  additionalProperties: false,
  required: ["from", "to"],
  properties: {
    from: { ...TABLE, default: 'old_table', 'x-cli': '--from', description: "the table's current name" },
    to: { ...NAME, default: 'new_table', 'x-cli': '--to', description: 'its new name (same schema)' },
  },
} as const satisfies ChangeSchema;

export type RenameTableOptions = OptionsOf<typeof renameTableSchema>;

/**
 * Renames a table while both versions run: expand renames it and, in the same transaction, puts an automatically
 * updatable view under the old name, so the old version's reads and writes (INSERT, UPDATE, DELETE, RETURNING) reach
 * the renamed table with no copy and no trigger. Contract drops the view.
 */
export function renameTable(options: RenameTableOptions): Change {
  checkOptions(renameTableSchema, options);
  const { to } = options;
  ident(to);
  const from = (ctx: ResolveContext): TableName => resolveTable(options.from, ctx.defaultSchema);
  const target = (ctx: ResolveContext): TableName => ({ schema: from(ctx).schema, name: to });
  if (typeof options.from === 'string' ? options.from === to : options.from.name === to) throw new ChangeInputError(`renameTable: from and to are both ${JSON.stringify(to)}`);
  return {
    kind: 'renameTable',
    tables: (ctx) => [from(ctx), target(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: from(ctx) },
      { kind: 'relation-absent', table: target(ctx) },
    ],
    describe: (_catalog, ctx) => {
      const f = from(ctx);
      const t = target(ctx);
      return {
        summary: `rename table ${tableLabel(f)} → ${to}`,
        expand: {
          steps: [txStep('rename-with-view', `rename ${tableLabel(f)} to ${to} and leave a view under the old name`, [renameTableSql(f, to), createPassThroughView(f, t), copyTablePrivileges(t, f)])],
        },
        contract: { steps: [txStep('drop-view', `drop the view ${tableLabel(f)}`, [dropViewIfExists(f)])] },
        undoContract: { steps: [txStep('restore-view', `put the view ${tableLabel(f)} back`, [createPassThroughView(f, t), copyTablePrivileges(t, f)])] },
        undoExpand: { steps: [txStep('rename-back', `drop the view and rename ${to} back to ${f.name}`, [dropViewIfExists(f), renameTableSql(t, f.name)])] },
      };
    },
  };
}

import type { Change, ResolveContext } from '../migration.js';
import { ChangeInputError, ident, resolveTable, tableLabel, type TableInput, type TableName } from '../postgres/identifiers.js';
import { copyTablePrivileges, createPassThroughView, dropViewIfExists, renameTable as renameTableSql } from '../postgres/table-ddl.js';
import { checkName, txStep } from './common.js';

export interface RenameTableOptions {
  readonly from: TableInput;
  /** The new name, in the same schema. */
  readonly to: string;
}

/**
 * Renames a table while both versions run: expand renames it and, in the same transaction, puts an automatically
 * updatable view under the old name, so the old version's reads and writes (INSERT, UPDATE, DELETE, RETURNING) reach
 * the renamed table with no copy and no trigger. Contract drops the view.
 */
export function renameTable(options: RenameTableOptions): Change {
  const to = checkName(options?.to, 'renameTable: to');
  ident(to);
  const from = (ctx: ResolveContext): TableName => resolveTable(options.from, ctx.defaultSchema);
  const target = (ctx: ResolveContext): TableName => ({ schema: from(ctx).schema, name: to });
  if (typeof options.from === 'string' ? options.from === to : options.from?.name === to) throw new ChangeInputError(`renameTable: from and to are both ${JSON.stringify(to)}`);
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

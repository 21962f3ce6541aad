import type { Change, ResolveContext } from '../migration.js';
import { dropConstraintIfExists, validateConstraint } from '../postgres/ddl.js';
import { ident, resolveTable, tableLabel, type TableInput, type TableName } from '../postgres/identifiers.js';
import { addCheckNotValid } from '../postgres/index-sql.js';
import { checkExpression, checkName, txStep } from './common.js';

export interface AddCheckOptions {
  readonly table: TableInput;
  readonly name: string;
  /** A boolean SQL expression over the table's columns, e.g. `price >= 0`. */
  readonly check: string;
}

/**
 * Adds a CHECK constraint NOT VALID (a brief ACCESS EXCLUSIVE lock, no scan: from then on every new or changed row is
 * checked), then VALIDATEs it in a separate transaction that lets reads and writes go on while it scans.
 */
export function addCheck(options: AddCheckOptions): Change {
  const name = checkName(options?.name, 'addCheck: name');
  ident(name);
  const check = checkExpression(options.check, 'addCheck: check');
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  return {
    kind: 'addCheck',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: table(ctx) },
      { kind: 'constraint-absent', table: table(ctx), constraint: name },
    ],
    describe: (_catalog, ctx) => {
      const t = table(ctx);
      return {
        summary: `add check ${name} on ${tableLabel(t)}: ${check}`,
        expand: {
          steps: [
            txStep('add-check', `add check ${name} NOT VALID`, [addCheckNotValid(t, name, check)]),
            txStep('validate', `validate check ${name}`, [validateConstraint(t, name)]),
          ],
        },
        contract: { steps: [] },
        undoContract: { steps: [] },
        undoExpand: { steps: [txStep('drop-check', `drop check ${name}`, [dropConstraintIfExists(t, name)])] },
      };
    },
  };
}

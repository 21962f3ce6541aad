import type { Change, ResolveContext } from '../migration.js';
import { dropConstraintIfExists, validateConstraint } from '../postgres/ddl.js';
import { ident, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { addCheckNotValid } from '../postgres/index-sql.js';
import { checkExpression, txStep } from './common.js';
import { checkOptions, NAME, SQL, TABLE, type ChangeSchema, type OptionsOf } from './options.js';

export const addCheckSchema = {
  'x-change': 'addCheck',
  'x-template': 'add-check',
  description: "Adds a CHECK constraint NOT VALID (new and changed rows are checked at once), then VALIDATEs existing rows while writes go on.",
  type: 'object',
  additionalProperties: false,
  required: ["table", "name", "check"],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table' },
    name: { ...NAME, default: 'my_table_check', 'x-cli': '--constraint', description: "the constraint's name" },
    check: { ...SQL, default: 'true', 'x-cli': '--check', description: "a boolean SQL expression over the table's columns, e.g. price >= 0" },
  },
} as const satisfies ChangeSchema;

export type AddCheckOptions = OptionsOf<typeof addCheckSchema>;

/**
 * Adds a CHECK constraint NOT VALID (a brief ACCESS EXCLUSIVE lock, no scan: from then on every new or changed row is
 * checked), then VALIDATEs it in a separate transaction that lets reads and writes go on while it scans.
 */
export function addCheck(options: AddCheckOptions): Change {
  checkOptions(addCheckSchema, options);
  const { name } = options;
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

import type { Change, Step } from '../migration.js';
import { ChangeInputError } from '../postgres/identifiers.js';
import { checkOptions, SQL, type ChangeSchema, type OptionsOf } from './options.js';

export const sqlSchema = {
  'x-change': 'sql',
  'x-template': 'sql',
  description: "Raw SQL for what no typed change covers, still run through the lock-safe executor (lock_timeout, retries). Keep one lock-taking statement per entry; down must undo up exactly (`umzug rehearse` checks it).",
  type: 'object',
  additionalProperties: false,
  required: ["up", "down"],
  properties: {
    up: { anyOf: [SQL, { type: 'array', minItems: 1, items: SQL }], default: ["SELECT 1"], 'x-cli': '--up', description: 'statements run by up, one step each (repeat the flag)' },
    down: { anyOf: [SQL, { type: 'array', minItems: 1, items: SQL }], default: ["SELECT 1"], 'x-cli': '--down', description: 'statements run by down, in order (repeat the flag)' },
    transactional: { type: 'boolean', 'x-cli': '--non-transactional', 'x-negate': true, description: '--non-transactional for statements that cannot run in a transaction (CONCURRENTLY)' },
  },
} as const satisfies ChangeSchema;

export type SqlOptions = OptionsOf<typeof sqlSchema>;

function list(value: string | readonly string[], field: string): readonly string[] {
  const items = typeof value === 'string' ? [value] : value;
  if (items.some((s) => s.trim() === '')) throw new ChangeInputError(`sql: ${field} holds an empty statement: ${JSON.stringify(value)}`);
  return items;
}

/**
 * Raw SQL for what no typed change covers. It still runs through the lock-safe executor: every step gets lock_timeout
 * and statement_timeout and is retried with backoff when it cannot get its lock, so a blocked ALTER never makes the
 * application's queries queue behind it. Keep one lock-taking statement per entry. Text is sent as written (no
 * parameters, no `?` rewriting).
 */
export function sql(options: SqlOptions): Change {
  checkOptions(sqlSchema, options);
  const up = list(options.up, 'up');
  const down = list(options.down, 'down');
  const transactional = options.transactional !== false;
  const steps = (texts: readonly string[], prefix: string): Step[] =>
    texts.map((text, i) => ({ id: `${prefix}-${i + 1}`, description: `${prefix} SQL #${i + 1}: ${text.trim().slice(0, 80)}`, statements: [{ text }], transactional }));
  return {
    kind: 'sql',
    tables: () => [],
    preconditions: () => [],
    describe: () => ({
      summary: `raw SQL: ${up[0]!.trim().slice(0, 60)}${up.length > 1 ? ` (+${up.length - 1} more)` : ''}`,
      expand: { steps: steps(up, 'up') },
      contract: { steps: [] },
      undoContract: { steps: [] },
      undoExpand: { steps: steps(down, 'down') },
    }),
  };
}

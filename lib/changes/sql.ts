import type { Change, Step } from '../migration.js';
import { ChangeInputError } from '../postgres/identifiers.js';

export interface SqlOptions {
  /** SQL run by `up`; a list runs as one step per entry, each with its own lock_timeout and retries. */
  readonly up: string | readonly string[];
  /** SQL run by `down`, in the order given. Required: a typed migration always has a real down. */
  readonly down: string | readonly string[];
  /** false for statements that cannot run in a transaction block (CREATE INDEX CONCURRENTLY…). Default true. */
  readonly transactional?: boolean;
}

function list(value: unknown, field: string): string[] {
  const items = typeof value === 'string' ? [value] : Array.isArray(value) ? (value as unknown[]) : null;
  if (!items || items.length === 0 || items.some((s) => typeof s !== 'string' || s.trim() === '')) {
    throw new ChangeInputError(`sql: ${field} must be a SQL string or a non-empty list of them, got ${JSON.stringify(value)}`);
  }
  return items as string[];
}

/**
 * Raw SQL for what no typed change covers. It still runs through the lock-safe executor: every step gets lock_timeout
 * and statement_timeout and is retried with backoff when it cannot get its lock, so a blocked ALTER never makes the
 * application's queries queue behind it. Keep one lock-taking statement per entry. Text is sent as written (no
 * parameters, no `?` rewriting).
 */
export function sql(options: SqlOptions): Change {
  const up = list(options?.up, 'up');
  const down = list(options.down, 'down');
  const transactional = options.transactional !== false;
  const steps = (texts: string[], prefix: string): Step[] =>
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

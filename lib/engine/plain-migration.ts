import type { Knex } from 'knex';
import { sqlState } from '../db/db.js';
import { backoffDelay, type LockSafetyOptions } from './executor.js';
import { sleep } from '../db/timing.js';


/**
 * The object holding a plain migration's exports: an ES module's named exports, else a CommonJS module's exports
 * (or a compiled ESM file's nested default). Its `up`/`down` are called on it, and its `config` read from it.
 */
export function plainExports(mod: Record<string, unknown>): Record<string, unknown> {
  return typeof mod.up === 'function' ? mod : ((mod.default ?? {}) as Record<string, unknown>);
}

export interface PlainRunEvents {
  /** An attempt waited past lock_timeout or deadlocked: rolled back whole, retried after `delayMs`. */
  onRetry?(e: { attempt: number; code: string; delayMs: number }): void;
  /** It cannot run in a transaction (CONCURRENTLY): run once more outside one, without lock_timeout retries. */
  onOutsideTransaction?(reason: string): void;
}

/**
 * Runs a plain migration lock-safe: in one transaction with lock_timeout and statement_timeout set for it (SET LOCAL,
 * so it holds behind PgBouncer in transaction mode too), and, when an attempt waits past lock_timeout (55P03) or
 * deadlocks (40P01), rolled back whole and run again after a backoff. Nothing of a failed attempt stays, so the
 * rerun starts clean. A migration that cannot run in a transaction (CONCURRENTLY: 25001), or that exports
 * `config = { transaction: false }` as Knex's allow, runs outside one, as written; `onOutsideTransaction` says so.
 */
export async function runPlainLockSafe(
  knex: Knex,
  lock: LockSafetyOptions,
  transactional: boolean,
  run: (k: Knex) => Promise<unknown>,
  events: PlainRunEvents = {},
): Promise<void> {
  if (!transactional) {
    events.onOutsideTransaction?.('it exports config.transaction = false');
    await run(knex);
    return;
  }
  for (let attempt = 1; ; attempt++) {
    try {
      await knex.transaction(async (trx) => {
        await trx.raw(`SELECT set_config('lock_timeout', ?, true), set_config('statement_timeout', ?, true)`, [`${lock.lockTimeoutMs}ms`, `${lock.statementTimeoutMs}ms`]);
        await run(trx);
      });
      return;
    } catch (e) {
      const code = sqlState(e);
      if (code === '25001') {
        events.onOutsideTransaction?.('a statement cannot run inside a transaction block (CONCURRENTLY)');
        await run(knex);
        return;
      }
      if ((code === '55P03' || code === '40P01') && attempt < lock.maxAttempts) {
        const delayMs = backoffDelay(attempt, lock);
        events.onRetry?.({ attempt, code, delayMs });
        await sleep(delayMs);
        continue;
      }
      throw e;
    }
  }
}

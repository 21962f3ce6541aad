import { setConfig, sqlState, type Connection, type Db } from '../db/db.js';
import type { Step } from '../migration.js';
import { qualified } from '../postgres/identifiers.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { sleep } from '../db/timing.js';
import { catchUpPartitionIndex, dropPartitionIndexLeftovers, stillPartition } from './partition-catch-up.js';

export interface LockSafetyOptions {
  /** How long one statement may wait for a lock before giving up (and being retried). Milliseconds. */
  readonly lockTimeoutMs: number;
  /** Upper bound for one statement's run time. Milliseconds; 0 = no limit. */
  readonly statementTimeoutMs: number;
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_LOCK_SAFETY: LockSafetyOptions = Object.freeze({
  lockTimeoutMs: 1000,
  statementTimeoutMs: 60_000,
  maxAttempts: 8,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
});

/** lock_not_available and deadlock_detected: the statement did nothing and may simply be tried again. */
const RETRYABLE = new Set(['55P03', '40P01']);

export interface RetryEvent {
  readonly step: string;
  readonly attempt: number;
  readonly code: string;
  readonly delayMs: number;
  readonly blockers: readonly LockHolder[];
}

export interface LockHolder {
  readonly pid: number;
  readonly state: string | null;
  readonly query: string | null;
  readonly xactAgeSeconds: number | null;
}

export class StepFailedError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'step-failed';
  override name = 'StepFailedError';
  constructor(
    message: string,
    readonly step: string,
    readonly attempts: number,
    /** The SQLSTATE of the last attempt's error, if it had one. */
    readonly sqlState: string | undefined,
    override readonly cause: unknown,
  ) {
    super(message);
  }
}

/** Exponential backoff with full jitter, so several waiting migrators do not retry in lockstep. */
export function backoffDelay(attempt: number, opts: Pick<LockSafetyOptions, 'baseDelayMs' | 'maxDelayMs'>, random = Math.random): number {
  const ceiling = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}


/**
 * Runs a step so that it never makes other sessions queue behind it for longer than lockTimeoutMs: each attempt
 * sets lock_timeout (SET LOCAL inside the step's transaction, which also works behind PgBouncer in transaction
 * mode), and an attempt that times out or deadlocks is rolled back and retried after a backoff.
 * `record` runs inside the same transaction as a transactional step, so the state table and the schema change
 * commit together.
 */
export async function runStepLockSafe(
  db: Db,
  step: Step,
  opts: LockSafetyOptions,
  record: (conn: Connection) => Promise<void>,
  onRetry?: (e: RetryEvent) => void,
): Promise<void> {
  // Planned for a partition that was detached or dropped since the change read the catalog: it is no longer part of
  // the table, and building or attaching its index would build on someone else's table or fail.
  if (step.partition && !(await stillPartition(db, step.partition))) {
    await db.transaction(record);
    return;
  }
  if (step.partitionIndexCatchUp) {
    await catchUpPartitionIndex(db, step.partitionIndexCatchUp, (s) => runStepLockSafe(db, s, opts, async () => undefined, onRetry));
  }
  if (step.partitionIndexLeftovers) {
    await dropPartitionIndexLeftovers(db, step.partitionIndexLeftovers, (s) => runStepLockSafe(db, s, opts, async () => undefined, onRetry));
  }
  for (let attempt = 1; ; attempt++) {
    try {
      if (step.transactional) {
        await db.transaction(async (conn) => {
          await setTimeouts(conn, opts, true);
          for (const s of step.statements) await conn.query(s.text, s.values);
          await record(conn);
        });
      } else {
        await db.withConnection(async (conn) => {
          // A statement that cannot run in a transaction cannot be fenced by one: prove the lock just before it. It
          // is idempotent, so a run that loses the lock while it runs leaves nothing another run cannot redo.
          if (db.fenced) await db.transactionOn(conn, async () => undefined);
          await withSessionTimeouts(db, conn, opts, async () => {
            if (step.concurrentIndex) await dropInvalidIndex(conn, step.concurrentIndex);
            for (const s of step.statements) await conn.query(s.text, s.values);
          });
          await db.transactionOn(conn, record);
        });
      }
      return;
    } catch (err) {
      const code = sqlState(err);
      const leftover = step.concurrentIndex
        ? await db
            .withConnection((conn) => withSessionTimeouts(db, conn, opts, () => dropInvalidIndex(conn, step.concurrentIndex!)))
            .catch((e: unknown) => `could not be dropped (${(e as Error).message}): drop it with DROP INDEX CONCURRENTLY`)
        : null;
      if (code && RETRYABLE.has(code) && attempt < opts.maxAttempts) {
        const delayMs = backoffDelay(attempt, opts);
        const blockers = await longTransactions(db, opts).catch(() => []);
        onRetry?.({ step: step.description, attempt, code, delayMs, blockers });
        await sleep(delayMs);
        continue;
      }
      const reason =
        code === '55P03'
          ? `could not get its lock within lock_timeout ${opts.lockTimeoutMs} ms`
          : code === '40P01'
            ? 'was chosen as a deadlock victim'
            : code === '57014'
              ? `ran past statement_timeout ${opts.statementTimeoutMs} ms`
              : `failed: ${(err as Error).message}`;
      const tries = code && RETRYABLE.has(code) ? ` on all ${attempt} attempts` : '';
      const holders = code === '55P03' ? await longTransactions(db, opts).catch(() => []) : [];
      const who = holders.length
        ? ` Transactions open longer than lock_timeout: ${holders
            .map((h) => `pid ${h.pid} (${h.state ?? '?'}, open ${Math.round(h.xactAgeSeconds ?? 0)} s: ${JSON.stringify(h.query ?? '')})`)
            .join('; ')}.`
        : '';
      const undone = step.transactional
        ? 'It ran in one transaction that was rolled back, so none of its statements took effect.'
        : 'It does not run in a transaction; its statements are written to be safe to run again.' +
          (leftover === 'dropped'
            ? ` The INVALID index ${step.concurrentIndex!.schema}.${step.concurrentIndex!.name} the failed build left was dropped.`
            : leftover && leftover !== 'none'
              ? ` The INVALID index ${step.concurrentIndex!.schema}.${step.concurrentIndex!.name} the failed build left ${leftover}.`
              : '');
      throw new StepFailedError(
        `Step "${step.description}" ${reason}${tries}.${who} ${undone} Steps finished before it are recorded in the state table; ` +
          `run the same command again to resume${code === '55P03' ? ' once the long transaction holding the table finishes (see pg_stat_activity), or raise lockTimeout / maxAttempts' : ''}.`,
        step.description,
        attempt,
        code,
        err,
      );
    }
  }
}

/**
 * Outside a transaction SET LOCAL has no effect: the timeouts are set for the session and put back afterwards. Behind
 * a transaction pooler a session SET could land on one server session and the statement on another, and would stay
 * behind for whichever application connection gets that server next; so there the statements run without them. What
 * runs outside a transaction is CREATE/DROP INDEX CONCURRENTLY, whose SHARE UPDATE EXCLUSIVE lock never blocks the
 * application's reads and writes while it waits.
 */
async function withSessionTimeouts<T>(db: Db, conn: Connection, opts: LockSafetyOptions, fn: () => Promise<T>): Promise<T> {
  if (db.pooling === 'transaction') return fn();
  await setTimeouts(conn, opts, false);
  try {
    return await fn();
  } finally {
    await conn.query('RESET lock_timeout').catch(() => undefined);
    await conn.query('RESET statement_timeout').catch(() => undefined);
  }
}

async function setTimeouts(conn: Connection, opts: LockSafetyOptions, local: boolean): Promise<void> {
  await setConfig(conn, [['lock_timeout', `${opts.lockTimeoutMs}ms`], ['statement_timeout', `${opts.statementTimeoutMs}ms`]], local);
}

/**
 * The sessions most likely to be in the way: transactions open for longer than lock_timeout. The lock we waited
 * for is gone once the attempt rolled back, so this names the usual suspects instead of "timeout" alone.
 */
async function longTransactions(db: Db, opts: LockSafetyOptions): Promise<LockHolder[]> {
  if (db.isEmbedded) return [];
  const r = await db.query<{ pid: number; state: string | null; query: string | null; age: number | null }>(
    `SELECT pid, state, left(query, 200) AS query, extract(epoch FROM now() - xact_start)::float8 AS age
       FROM pg_stat_activity
      WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND datname = current_database()
        AND xact_start < now() - make_interval(secs => $1::float8 / 1000)
      ORDER BY xact_start LIMIT 5`,
    [opts.lockTimeoutMs],
  );
  return r.rows.map((x) => ({ pid: x.pid, state: x.state, query: x.query, xactAgeSeconds: x.age }));
}

/**
 * A CREATE INDEX CONCURRENTLY that failed (a duplicate under a unique index, a timeout, a killed session) leaves an
 * INVALID index that still slows every write and that IF NOT EXISTS would take for done. Only an invalid index is
 * dropped: a valid one is the finished work of an earlier attempt.
 */
async function dropInvalidIndex(conn: Connection, index: { readonly schema: string; readonly name: string }): Promise<'dropped' | 'none'> {
  const r = await conn.query<{ valid: boolean }>(
    `SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [index.schema, index.name],
  );
  if (!r.rows[0] || r.rows[0].valid) return 'none';
  await conn.query(`DROP INDEX CONCURRENTLY IF EXISTS ${qualified({ schema: index.schema, name: index.name })}`);
  return 'dropped';
}

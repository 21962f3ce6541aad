import type { Db } from '../db/db.js';
import { describeLease, formatHolder, Lease, LeaseBusyError, LeaseLostError, type LeaseHolder, type LeaseTiming } from './lease.js';
import type { PoolingMode } from '../db/db.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';

export class MigrationLockTimeoutError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'migration-lock-timeout';
  override name = 'MigrationLockTimeoutError';
}

/** The lease name of the migration lock in the state schema's leases table. */
const LOCK_NAME = 'migrate';

/** Who holds the migration lock now (for `umzug status`), or null; null too before the state schema exists. */
export async function migrationLockHolder(db: Db, stateSchema: string): Promise<LeaseHolder | null> {
  return describeLease(db, stateSchema, LOCK_NAME).catch((e: unknown) => {
    if ((e as { code?: string }).code === '42P01' || (e as { code?: string }).code === '3F000') return null;
    throw e;
  });
}

/** The advisory-lock class of the migration lock; its key is hashtext(state schema), so projects sharing a database do not block each other. */
const LOCK_CLASS = 0x7a64;

export interface MigrationLockOptions {
  /** How long a second run waits for the first before giving up. */
  readonly waitMs: number;
  readonly pooling: PoolingMode;
  readonly timing?: LeaseTiming;
}

/**
 * Runs `fn` holding the migration lock of the state schema, so that two `umzug up` never migrate at once, from any
 * number of machines. The lock is a lease row (lib/engine/lease.ts), kept alive by a session advisory lock on a
 * direct connection (a killed run's lock is free at once) or by a heartbeat behind a transaction pooler. It is a
 * fence, not a hope: while it is held, every transaction of this Db checks first that it still is and keeps the row
 * locked FOR KEY SHARE until it commits, so a run that lost the lock (its session terminated, its heartbeat lapsed,
 * another run took over) commits nothing more. `fn` receives a signal that aborts, with the LeaseLostError as its
 * reason, the moment the loss is seen, so a backfill stops after its batch instead of at the next commit.
 * PGlite is a single in-process connection: there is nobody to exclude, so the lock is skipped.
 */
export async function withMigrationLock<T>(db: Db, stateSchema: string, opts: MigrationLockOptions, fn: (lost: AbortSignal) => Promise<T>): Promise<T> {
  if (db.isEmbedded) return fn(new AbortController().signal);
  const poolMax = (db.knex.client as { pool?: { max?: number } }).pool?.max;
  if (opts.pooling === 'session' && poolMax !== undefined && poolMax < 2) {
    throw new Error('umzug-zero-downtime needs a Knex pool of at least 2 connections (one holds the migration lock). Nothing was changed.');
  }
  const key = (await db.query<{ k: number }>('SELECT hashtext($1) AS k', [stateSchema])).rows[0]!.k;
  const lease = new Lease(db, {
    spec: {
      name: LOCK_NAME,
      lockClass: LOCK_CLASS,
      lockKey: key,
      label: 'migration lock',
      afterLoss:
        'This run stopped; the transaction that found this was rolled back, and every step and batch before it is committed and recorded. ' +
        'Another run may hold the lock now: let it finish (`umzug status` shows the phases), then run `umzug up` again to resume.',
    },
    stateSchema,
    pooling: opts.pooling,
    onLoss: 'fatal',
    ...(opts.timing ? { timing: opts.timing } : {}),
  });
  const started = Date.now();
  try {
    await lease.acquire(opts.waitMs);
  } catch (e) {
    if (!(e instanceof LeaseBusyError)) throw e;
    throw new MigrationLockTimeoutError(
      `Another migration run holds the lock for state schema "${stateSchema}": ${e.holder ? formatHolder(e.holder) : 'another session'}. ` +
        `Waited ${Math.round((Date.now() - started) / 1000)} s. Nothing was changed. Let that run finish (or end it if it is stuck) and run again; ` +
        'raise lock.waitForMigrationLock to wait longer.',
    );
  }
  const removeFence = db.setFence((c) => lease.fence(c));
  try {
    return await fn(lease.signal);
  } catch (e) {
    // Whatever failed while the lock was gone (a statement on a session the server ended, a step) failed because of
    // that: say so, with the error it surfaced as kept as the cause.
    const lost = lease.lost ?? (await lease.confirm());
    if (lost && !(e instanceof LeaseLostError)) throw new LeaseLostError(lost.lease, lost.reason, { cause: e });
    throw e;
  } finally {
    removeFence();
    await lease.release();
  }
}

import type { Db } from './db.js';

interface Holder {
  pid: number;
  application_name: string | null;
  client_addr: string | null;
  since: Date | null;
}

export class MigrationLockTimeoutError extends Error {
  override name = 'MigrationLockTimeoutError';
}

/** One key per state schema, so two projects sharing a database do not block each other. */
const LOCK_CLASS = 0x7a64;

/**
 * Holds a session-level advisory lock on a dedicated pooled connection for the whole command, so that two
 * `umzug up` never migrate at once, even from different machines (Knex's own lock table stays locked after a crash;
 * an advisory lock dies with its session). The second run waits up to `waitMs`, then fails naming the holder.
 * PGlite is a single in-process connection: there is nobody to exclude, so the lock is skipped.
 */
export async function withMigrationLock<T>(db: Db, stateSchema: string, waitMs: number, fn: () => Promise<T>): Promise<T> {
  if (db.isEmbedded) return fn();
  const poolMax = (db.knex.client as { pool?: { max?: number } }).pool?.max;
  if (poolMax !== undefined && poolMax < 2) {
    throw new Error('umzug-zero-downtime needs a Knex pool of at least 2 connections (one holds the migration lock). Nothing was changed.');
  }
  return db.withConnection(async (conn) => {
    const started = Date.now();
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      const r = await conn.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [LOCK_CLASS, stateSchema]);
      if (r.rows[0]?.ok) break;
      if (Date.now() - started >= waitMs) {
        const h = await conn.query<Holder>(
          `SELECT a.pid, a.application_name, a.client_addr::text AS client_addr, a.backend_start AS since
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = hashtext($2)::oid`,
          [LOCK_CLASS, stateSchema],
        );
        const who = h.rows[0];
        const desc = who
          ? `session pid ${who.pid}${who.application_name ? ` (${who.application_name})` : ''}${who.client_addr ? ` from ${who.client_addr}` : ''}, connected since ${who.since?.toISOString()}`
          : 'another session';
        throw new MigrationLockTimeoutError(
          `Another migration run holds the lock for state schema "${stateSchema}": ${desc}. Waited ${Math.round((Date.now() - started) / 1000)} s. ` +
            'Nothing was changed. Let that run finish (or end that session if it is stuck) and run again; raise lock.waitForMigrationLock to wait longer.',
        );
      }
      await new Promise((res) => setTimeout(res, Math.min(delay, Math.max(1, waitMs - (Date.now() - started)))));
    }
    try {
      return await fn();
    } finally {
      await conn.query('SELECT pg_advisory_unlock($1, hashtext($2))', [LOCK_CLASS, stateSchema]).catch(() => undefined);
    }
  });
}

import type { Connection, Db, PoolingMode } from './db.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from './errors.js';

export class PoolingError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'pooling';
  override name = 'PoolingError';
}

/**
 * Tells a transaction pooler from a direct connection by the backend pids two pooled client connections, A and B,
 * are served by. On a direct connection (or a session pooler) a client connection keeps its server session: A's pid
 * never changes, nor B's, and they differ. Behind a transaction pooler each transaction and each statement outside
 * one may be served by any free server session: a few rounds of "A asks; B opens a transaction and asks; A asks while
 * B's server is taken; B commits and asks again" show a pid moving or two clients on one server (PgBouncer reuses the
 * most recently freed server first, so this shows in the first round, whatever else uses the pool). Statement pooling
 * refuses B's BEGIN; that is reported, since nothing of ours can run there. `pooling` in the config skips the test.
 */
export async function detectPooling(db: Db, rounds = 4): Promise<PoolingMode> {
  if (db.isEmbedded) return 'session';
  const pid = async (c: Connection) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  return db.withConnection((a) =>
    db.withConnection(async (b) => {
      const seenA = new Set<number>();
      const seenB = new Set<number>();
      for (let i = 0; i < rounds; i++) {
        seenA.add(await pid(a));
        try {
          await b.query('BEGIN');
        } catch (e) {
          throw new PoolingError(
            `The database connection refused BEGIN (${(e as Error).message}): a statement-mode pooler? umzug-zero-downtime needs transactions. ` +
              'Nothing was changed. Point it at PostgreSQL directly, or at a PgBouncer pool in session or transaction mode.',
          );
        }
        try {
          seenB.add(await pid(b));
          seenA.add(await pid(a));
        } finally {
          await b.query('COMMIT').catch(() => undefined);
        }
        seenB.add(await pid(b));
        if (seenA.size > 1 || seenB.size > 1 || [...seenA].some((p) => seenB.has(p))) return 'transaction';
      }
      return 'session';
    }),
  );
}

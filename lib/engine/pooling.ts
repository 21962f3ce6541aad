import type { Connection, Db } from './db.js';

/**
 * How the server sessions behind our connections behave. `session`: a client connection keeps one server session
 * (a direct connection, or PgBouncer in session mode): session advisory locks and `SET` hold. `transaction`: a
 * transaction pooler (PgBouncer `pool_mode = transaction`) may hand each transaction, and each statement outside one,
 * to another server session: nothing may rest on session state, and a session `SET` would leak into whichever
 * application connection gets that server session next.
 */
export type PoolingMode = 'session' | 'transaction';

export class PoolingError extends Error {
  override name = 'PoolingError';
}

/**
 * Tells a transaction pooler from a direct connection with two pooled connections, A and B: A asks for its backend
 * pid; B opens a transaction and asks for its own; A asks again. On a direct connection (or a session pooler) A's pid
 * never changes and B's differs from it. Behind a transaction pooler B's transaction is handed a server session
 * (PgBouncer reuses the most recently freed one: A's), so either B reports A's first pid or A, its server busy with B,
 * reports another one. Statement pooling refuses B's BEGIN; that is reported, since nothing of ours can run there.
 */
export async function detectPooling(db: Db): Promise<PoolingMode> {
  if (db.isEmbedded) return 'session';
  return db.withConnection(async (a) => {
    const pid = async (c: Connection) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const first = await pid(a);
    const [inTx, again] = await db.withConnection(async (b) => {
      try {
        await b.query('BEGIN');
      } catch (e) {
        throw new PoolingError(
          `The database connection refused BEGIN (${(e as Error).message}): a statement-mode pooler? umzug-zero-downtime needs transactions. ` +
            'Nothing was changed. Point it at PostgreSQL directly, or at a PgBouncer pool in session or transaction mode.',
        );
      }
      try {
        return [await pid(b), await pid(a)] as const;
      } finally {
        await b.query('COMMIT').catch(() => undefined);
      }
    });
    return again !== first || inTx === first ? 'transaction' : 'session';
  });
}

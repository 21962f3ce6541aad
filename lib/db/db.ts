import type { Knex } from 'knex';

/**
 * How the server sessions behind our connections behave. `session`: a client connection keeps one server session
 * (a direct connection, or PgBouncer in session mode): session advisory locks and `SET` hold. `transaction`: a
 * transaction pooler (PgBouncer `pool_mode = transaction`) may hand each transaction, and each statement outside one,
 * to another server session: nothing may rest on session state, and a session `SET` would leak into whichever
 * application connection gets that server session next.
 */
export type PoolingMode = 'session' | 'transaction';

/** A value passed as a query parameter ($1, $2 …); never spliced into SQL text. */
export type SqlParam = string | number | bigint | boolean | null | Date | Buffer | readonly unknown[] | Record<string, unknown>;

export interface Statement {
  readonly text: string;
  readonly values?: readonly SqlParam[];
}

export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount: number;
}

/** One physical connection: what every engine module talks to. */
export interface Connection {
  query<R = Record<string, unknown>>(text: string, values?: readonly SqlParam[]): Promise<QueryResult<R>>;
}

interface RawDriverConnection {
  /** The server process behind the connection (node-postgres' BackendKeyData; a pooler's own number behind one). */
  processID?: number | null;
  query(text: string, values?: readonly unknown[]): Promise<{ rows: unknown[]; rowCount?: number | null; affectedRows?: number }>;
  __knex__disposed?: unknown;
}

interface KnexClientInternals {
  acquireConnection(): Promise<RawDriverConnection>;
  releaseConnection(c: RawDriverConnection): Promise<void>;
}

/**
 * Sets each setting in one round trip (`set_config`), for the rest of the connection's transaction when `local`,
 * else for its session; names and values travel as parameters.
 */
export async function setConfig(conn: Connection, settings: readonly (readonly [string, string])[], local: boolean): Promise<void> {
  if (settings.length === 0) return;
  const calls = settings.map((_, i) => `set_config($${2 * i + 2}, $${2 * i + 3}, $1)`).join(', ');
  await conn.query(`SELECT ${calls}`, [local, ...settings.flat()]);
}

/**
 * The engine talks to the driver connection that Knex pools, not through knex.raw: knex.raw rewrites every `?`
 * in the text into a binding, which would corrupt user SQL such as jsonb's `?` operator. Values still travel as
 * driver parameters ($1 …), so nothing a user types is concatenated into SQL.
 */
export class Db {
  private fenceCheck: ((conn: Connection) => Promise<void>) | null = null;
  /**
   * How the server sessions behind the pool behave (lib/db/pooling.ts): set from the config, or detected once by
   * the first command that needs to know.
   */
  pooling: PoolingMode | undefined;
  /**
   * The server processes this Db's connections have had: what the backfill must not count as the application's
   * traffic. Behind a pooler the numbers are the pooler's, match nothing, and everything counts as traffic.
   */
  readonly ownPids: Set<number>;

  constructor(readonly knex: Knex) {
    this.ownPids = poolPids(knex);
  }

  /**
   * While the migration lock is held, every transaction proves first that it still is (BEGIN; fence; …): a run that
   * lost the lock commits nothing more. Returns the function that removes the fence.
   */
  setFence(check: (conn: Connection) => Promise<void>): () => void {
    this.fenceCheck = check;
    return () => {
      if (this.fenceCheck === check) this.fenceCheck = null;
    };
  }

  get fenced(): boolean {
    return this.fenceCheck !== null;
  }

  /** A write outside any transaction of the caller's: in one of its own, fenced, while the migration lock is held. */
  async write<R = Record<string, unknown>>(text: string, values?: readonly SqlParam[]): Promise<QueryResult<R>> {
    return this.fenceCheck ? this.transaction((c) => c.query<R>(text, values)) : this.query<R>(text, values);
  }

  /** PGlite has a single connection; features that need a second one (advisory lock holder) adapt to it. */
  get isEmbedded(): boolean {
    return /pglite/i.test((this.knex.client as { constructor: { name: string } }).constructor.name);
  }

  async withConnection<T>(fn: (conn: Connection) => Promise<T>): Promise<T> {
    const client = this.knex.client as unknown as KnexClientInternals;
    const raw = await client.acquireConnection();
    if (typeof raw.processID === 'number') this.ownPids.add(raw.processID);
    let broken = false;
    const conn: Connection = {
      async query<R>(text: string, values?: readonly SqlParam[]): Promise<QueryResult<R>> {
        try {
          const res = await raw.query(text, values ? normalizeParams(values) : undefined);
          return { rows: res.rows as R[], rowCount: res.rowCount ?? res.affectedRows ?? 0 };
        } catch (err) {
          if (isConnectionLost(err)) broken = true;
          throw err;
        }
      },
    };
    try {
      return await fn(conn);
    } finally {
      // Knex destroys a released connection marked disposed instead of handing it to the next caller.
      if (broken) raw.__knex__disposed ??= 'connection lost';
      await client.releaseConnection(raw);
    }
  }

  async query<R = Record<string, unknown>>(text: string, values?: readonly SqlParam[]): Promise<QueryResult<R>> {
    return this.withConnection((c) => c.query<R>(text, values));
  }

  /** BEGIN … COMMIT on one connection; ROLLBACK on any error (the error is rethrown unchanged). */
  async transaction<T>(fn: (conn: Connection) => Promise<T>): Promise<T> {
    return this.withConnection((conn) => this.transactionOn(conn, fn));
  }

  /** BEGIN … COMMIT on a connection the caller already holds (fenced like transaction()). */
  async transactionOn<T>(conn: Connection, fn: (conn: Connection) => Promise<T>): Promise<T> {
    await conn.query('BEGIN');
    try {
      if (this.fenceCheck) await this.fenceCheck(conn);
      const result = await fn(conn);
      await conn.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await conn.query('ROLLBACK');
      } catch {
        // the connection may be gone; the server rolls back on its own then
      }
      throw err;
    }
  }
}

function normalizeParams(values: readonly SqlParam[]): unknown[] {
  return values.map((v) => (typeof v === 'bigint' ? v.toString() : v));
}

const CONNECTION_LOST_CODES = new Set(['57P01', '57P02', '57P03', 'ECONNRESET', 'EPIPE', '08006', '08003']);

export function isConnectionLost(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  if (!e) return false;
  if (e.code && CONNECTION_LOST_CODES.has(e.code)) return true;
  return /Connection terminated|connection is closed|Client has encountered a connection error|terminating connection/i.test(
    e.message ?? '',
  );
}

type EventfulPool = { on?: (event: string, listener: (id: unknown, resource: unknown) => void) => void };
const pidsOfPool = new WeakMap<object, Set<number>>();

/**
 * The server processes of a Knex pool's connections, one set per pool (every Db over it shares it). Every connection
 * of the pool is ours, also those the Umzug storage, the state store or the lock use through the Knex instance
 * directly: one of them active within the last second made the backfill's first look at pg_stat_activity see
 * "another client" in about one run in three, and pace an idle server at a tenth of the time.
 */
function poolPids(knex: Knex): Set<number> {
  const pool = (knex.client as { pool?: EventfulPool }).pool;
  if (!pool || typeof pool.on !== 'function') return new Set<number>();
  let pids = pidsOfPool.get(pool);
  if (!pids) {
    const known = new Set<number>();
    const remember = (_id: unknown, resource: unknown) => {
      const pid = (resource as { processID?: unknown } | null)?.processID;
      if (typeof pid === 'number') known.add(pid);
    };
    pool.on('createSuccess', remember);
    pool.on('acquireSuccess', remember);
    pidsOfPool.set(pool, known);
    pids = known;
  }
  return pids;
}

/** The SQLSTATE of a driver error, if it has one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  // Five characters: a server's SQLSTATE, never one of our own errors' codes (see db/errors.ts).
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

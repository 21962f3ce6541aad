import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { isConnectionLost, sqlState, type Connection, type Db } from '../db/db.js';
import type { PoolingMode } from '../db/db.js';
import { ident } from '../postgres/identifiers.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { sleep as sleepFor } from '../db/timing.js';

/**
 * A named lease in the state schema: the migration lock (`migrate`) and each backfill process's liveness
 * (`worker:<n>`). One row per lease says who holds it (`owner`, a random token per holder), since when, and how it
 * stays alive:
 * - on a direct connection (`session_pid` set), by a session advisory lock that the holder keeps on a connection of
 *   its own, so a killed process's lease ends the moment the server notices its session is gone;
 * - behind a transaction pooler (`session_pid` NULL), where no session outlives a transaction, by a heartbeat that
 *   must be younger than `ttl_ms`.
 * `owner` is UNIQUE so that changing it (a takeover) takes the row's FOR UPDATE lock, which waits for every
 * transaction holding FOR KEY SHARE on it: that is the fence (see fence()). A heartbeat changes only `heartbeat_at`,
 * whose FOR NO KEY UPDATE lock does not conflict with FOR KEY SHARE, so it never waits for a batch.
 */
export function leaseTableSql(stateSchema: string): string {
  return `CREATE TABLE IF NOT EXISTS ${leaseTable(stateSchema)} (
    name text PRIMARY KEY, owner uuid NOT NULL UNIQUE, session_pid int, lock_class int NOT NULL, lock_key int NOT NULL,
    holder text NOT NULL, acquired_at timestamptz NOT NULL, heartbeat_at timestamptz NOT NULL, ttl_ms int NOT NULL)`;
}

export function leaseTable(stateSchema: string): string {
  return `${ident(stateSchema)}.${ident('leases')}`;
}

/** Whether the lease in row `m` is held by someone alive: its advisory lock's session exists, or its heartbeat is fresh. */
export function leaseAliveSql(m: string): string {
  return `(CASE WHEN ${m}.session_pid IS NOT NULL THEN EXISTS (
      SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.pid = ${m}.session_pid
         AND l.classid = ${m}.lock_class::oid AND l.objid = ${m}.lock_key::oid AND l.objsubid = 2)
    ELSE ${m}.heartbeat_at > clock_timestamp() - make_interval(secs => ${m}.ttl_ms / 1000.0) END)`;
}

export interface LeaseSpec {
  /** `migrate`, `worker:<n>`. */
  readonly name: string;
  /** The session advisory lock (int, int) held on a direct connection. */
  readonly lockClass: number;
  readonly lockKey: number;
  /** How people call it: "migration lock". */
  readonly label: string;
  /** What to do once it is lost, appended to the LeaseLostError's message. */
  readonly afterLoss?: string;
}

export interface LeaseTiming {
  /** Behind a transaction pooler: a lease whose heartbeat is older than this is free for others. */
  readonly ttlMs: number;
  /** How often the holder proves it is alive (and, on a direct connection, that its lock session still is). */
  readonly heartbeatMs: number;
}

export const DEFAULT_LEASE_TIMING: LeaseTiming = Object.freeze({ ttlMs: 15_000, heartbeatMs: 1_000 });

/** Who holds a lease, for messages: host, process, since when, last heartbeat. */
export interface LeaseHolder {
  readonly holder: string;
  readonly sessionPid: number | null;
  readonly acquiredAt: Date;
  readonly heartbeatAgeSeconds: number;
  readonly alive: boolean;
}

export class LeaseBusyError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'lease-busy';
  override name = 'LeaseBusyError';
  constructor(
    message: string,
    readonly holder: LeaseHolder | null,
  ) {
    super(message);
  }
}

/** The lease was lost while held: `reason` says how (its session ended, another holder took it, no heartbeat). */
export class LeaseLostError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'lease-lost';
  override name = 'LeaseLostError';
  constructor(
    readonly lease: LeaseSpec,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`lost the ${lease.label} (${reason})${lease.afterLoss ? `. ${lease.afterLoss}` : ''}`, options);
  }
}

const sleep = (ms: number) => sleepFor(ms, undefined, { unref: true });

/** BEGIN … COMMIT on a connection the lease holds, outside Db.transaction (which would run the fence it serves). */
async function tx<T>(c: Connection, fn: () => Promise<T>): Promise<T> {
  await c.query('BEGIN');
  try {
    const r = await fn();
    await c.query('COMMIT');
    return r;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

export interface LeaseOptions {
  readonly spec: LeaseSpec;
  readonly stateSchema: string;
  readonly pooling: PoolingMode;
  readonly timing?: LeaseTiming;
  /**
   * 'fatal': a lost lease stays lost (the migration lock: the run must stop). 'renew': take it again (a backfill
   * worker's liveness, which nothing correct depends on: chunks are fenced by their own owner column).
   */
  readonly onLoss: 'fatal' | 'renew';
}

/** One holder of a lease, from acquire() to release(). */
export class Lease {
  readonly owner = randomUUID();
  readonly holderText = `${os.hostname()} pid ${process.pid}${process.argv[2] ? ` (${process.argv.slice(2, 4).join(' ')})` : ''}`;
  private readonly t: string;
  private readonly timing: LeaseTiming;
  private readonly controller = new AbortController();
  private lostError: LeaseLostError | null = null;
  private stopping = false;
  private wake: () => void = () => {};
  private readonly stopped = new Promise<void>((r) => (this.wake = r));
  private loop: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly o: LeaseOptions,
  ) {
    this.t = leaseTable(o.stateSchema);
    this.timing = o.timing ?? DEFAULT_LEASE_TIMING;
  }

  /** Aborted, with the LeaseLostError as its reason, when a 'fatal' lease is lost. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get lost(): LeaseLostError | null {
    return this.lostError;
  }

  /** Takes the lease, waiting up to waitMs for a live holder to let go; LeaseBusyError past that. */
  async acquire(waitMs: number): Promise<void> {
    let ready!: () => void;
    let failed!: (e: unknown) => void;
    const first = new Promise<void>((res, rej) => {
      ready = res;
      failed = rej;
    });
    let acquired = false;
    const started = Date.now();
    const waitForTurn = async (c: Connection, delay: number): Promise<void> => {
      if (Date.now() - started >= waitMs) {
        const h = await this.describe(c);
        throw new LeaseBusyError(`held by ${h ? formatHolder(h) : 'another session'}; waited ${Math.round((Date.now() - started) / 1000)} s`, h);
      }
      await sleep(Math.min(delay, Math.max(1, waitMs - (Date.now() - started))));
    };
    if (this.o.pooling === 'session') {
      this.loop = (async () => {
        while (!this.stopping) {
          try {
            await this.db.withConnection(async (c) => {
              for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
                const got = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [this.o.spec.lockClass, this.o.spec.lockKey]);
                if (got.rows[0]?.ok && (await this.claim(c, true))) break;
                await waitForTurn(c, delay);
              }
              if (!acquired) {
                acquired = true;
                ready();
              }
              await this.beat(c);
              await c.query('SELECT pg_advisory_unlock($1, $2)', [this.o.spec.lockClass, this.o.spec.lockKey]).catch(() => undefined);
            });
            if (this.stopping) return;
          } catch (e) {
            if (!acquired) {
              // a session lost while waiting (a restart, a terminated backend): wait on a new one, within waitMs
              if (isConnectionLost(e) && Date.now() - started < waitMs) {
                await sleep(200);
                continue;
              }
              failed(e);
              return;
            }
            if (this.stopping) return;
            if (this.o.onLoss === 'fatal' || e instanceof LeaseLostError) {
              this.lose(e instanceof LeaseLostError ? e : new LeaseLostError(this.o.spec, `the session that held it ended: ${(e as Error).message}`));
              return;
            }
            await sleep(200); // a worker's lease session was lost: take it again on a new one
          }
        }
      })();
    } else {
      this.loop = (async () => {
        try {
          for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
            if (await this.db.withConnection((c) => this.claim(c, false))) break;
            await this.db.withConnection((c) => waitForTurn(c, delay));
          }
        } catch (e) {
          failed(e);
          return;
        }
        acquired = true;
        ready();
        let lastBeat = Date.now();
        while (!this.stopping) {
          await Promise.race([sleep(this.timing.heartbeatMs), this.stopped]);
          if (this.stopping) break;
          try {
            const r = await this.db.query(`UPDATE ${this.t} SET heartbeat_at = clock_timestamp() WHERE name = $1 AND owner = $2`, [this.o.spec.name, this.owner]);
            if (r.rowCount === 1) {
              lastBeat = Date.now();
              continue;
            }
            if (this.o.onLoss === 'renew' && (await this.db.withConnection((c) => this.claim(c, false)))) continue;
            this.lose(new LeaseLostError(this.o.spec, 'another holder took it over after its heartbeat lapsed'));
            return;
          } catch (e) {
            if (Date.now() - lastBeat > this.timing.ttlMs) {
              this.lose(new LeaseLostError(this.o.spec, `no heartbeat for ${Math.round((Date.now() - lastBeat) / 1000)} s: ${(e as Error).message}`));
              return;
            }
          }
        }
      })();
    }
    await first;
  }

  /**
   * Inside a transaction of the holder's: proves the lease is still ours, and holds the row FOR KEY SHARE until that
   * transaction ends, so no takeover can commit between this check and our COMMIT. Throws LeaseLostError otherwise.
   */
  async fence(c: Connection): Promise<void> {
    if (this.lostError) throw this.lostError;
    // idle_in_transaction_session_timeout: a holder frozen inside a fenced transaction (SIGSTOP, a hung client)
    // would keep its FOR KEY SHARE, and so hold off every takeover, for as long as it stays frozen; the server ends
    // such a transaction once the lease has had time to expire anyway.
    const r = await c.query<{ mine: boolean; alive: boolean; holder: string; age: number; session_pid: number | null }>(
      `SELECT m.owner = $2::uuid AS mine, ${leaseAliveSql('m')} AS alive, m.holder, m.session_pid,
              extract(epoch FROM clock_timestamp() - m.heartbeat_at)::float8 AS age,
              set_config('idle_in_transaction_session_timeout', $3, true)
         FROM ${this.t} m WHERE m.name = $1 FOR KEY SHARE OF m`,
      [this.o.spec.name, this.owner, `${this.timing.ttlMs}ms`],
    );
    const x = r.rows[0];
    const reason = !x
      ? 'its row in the state schema is gone'
      : !x.mine
        ? `${x.holder} took it over`
        : !x.alive
          ? x.session_pid !== null
            ? `the session that held it, pid ${x.session_pid}, ended`
            : `no heartbeat for ${Math.round(x.age)} s`
          : null;
    if (reason) {
      const e = new LeaseLostError(this.o.spec, reason);
      this.lose(e);
      throw e;
    }
  }

  /**
   * Whether the lease is still ours, asked now in a transaction of its own: the loss if it is not (and records it),
   * null if it is. For an error that may be the loss seen from the side (a holder frozen past the lease timeout
   * wakes to find its session ended) before the heartbeat has noticed.
   */
  async confirm(): Promise<LeaseLostError | null> {
    if (this.lostError) return this.lostError;
    try {
      await this.db.withConnection((c) => tx(c, () => this.fence(c)));
      return null;
    } catch (e) {
      return e instanceof LeaseLostError ? e : null;
    }
  }

  /** Gives the lease up (a no-op where it was lost or taken over). */
  async release(): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loop;
    await this.db.query(`DELETE FROM ${this.t} WHERE name = $1 AND owner = $2`, [this.o.spec.name, this.owner]).catch(() => undefined);
  }

  /** Who holds the lease now, or null when nobody does. */
  describe(c: Connection): Promise<LeaseHolder | null> {
    return describeLease(c, this.o.stateSchema, this.o.spec.name);
  }

  /**
   * Writes our row if the lease is free (no row, ours already, or its holder dead). The upsert locks a live holder's
   * row FOR UPDATE, so it waits for that holder's fenced transactions; lock_timeout keeps that wait short and we try
   * again after a pause.
   */
  private async claim(c: Connection, withSession: boolean): Promise<boolean> {
    try {
      return await tx(c, async () => {
        await c.query(`SELECT set_config('lock_timeout', '2s', true)`);
        const r = await c.query(
          `INSERT INTO ${this.t} AS m (name, owner, session_pid, lock_class, lock_key, holder, acquired_at, heartbeat_at, ttl_ms)
           VALUES ($1, $2, CASE WHEN $3 THEN pg_backend_pid() END, $4, $5, $6, clock_timestamp(), clock_timestamp(), $7)
           ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, session_pid = EXCLUDED.session_pid, lock_class = EXCLUDED.lock_class,
                  lock_key = EXCLUDED.lock_key, holder = EXCLUDED.holder, heartbeat_at = EXCLUDED.heartbeat_at, ttl_ms = EXCLUDED.ttl_ms,
                  acquired_at = CASE WHEN m.owner = EXCLUDED.owner THEN m.acquired_at ELSE EXCLUDED.acquired_at END
            WHERE m.owner = EXCLUDED.owner OR NOT ${leaseAliveSql('m')}
           RETURNING m.owner`,
          [this.o.spec.name, this.owner, withSession, this.o.spec.lockClass, this.o.spec.lockKey, this.holderText, this.timing.ttlMs],
        );
        return r.rowCount === 1;
      });
    } catch (e) {
      if (sqlState(e) === '55P03' || sqlState(e) === '40P01') return false;
      throw e;
    }
  }

  /** The heartbeat of a lease held on a direct connection: on the lock's own session, so its death is seen at once. */
  private async beat(c: Connection): Promise<void> {
    while (!this.stopping) {
      await Promise.race([sleep(this.timing.heartbeatMs), this.stopped]);
      if (this.stopping) return;
      const r = await c.query(`UPDATE ${this.t} SET heartbeat_at = clock_timestamp() WHERE name = $1 AND owner = $2 AND session_pid = pg_backend_pid()`, [
        this.o.spec.name,
        this.owner,
      ]);
      if (r.rowCount !== 1) throw new LeaseLostError(this.o.spec, 'another holder took it over');
    }
  }

  private lose(e: LeaseLostError): void {
    if (this.lostError) return;
    this.lostError = e;
    this.controller.abort(e);
  }
}

/** Who holds the lease `name` now, or null when nobody has it (no row: released, or never taken). */
export async function describeLease(c: Pick<Connection, 'query'>, stateSchema: string, name: string): Promise<LeaseHolder | null> {
  const r = await c.query<{ holder: string; session_pid: number | null; acquired_at: Date; age: number; alive: boolean }>(
    `SELECT m.holder, m.session_pid, m.acquired_at, extract(epoch FROM clock_timestamp() - m.heartbeat_at)::float8 AS age, ${leaseAliveSql('m')} AS alive
       FROM ${leaseTable(stateSchema)} m WHERE m.name = $1`,
    [name],
  );
  const x = r.rows[0];
  return x ? { holder: x.holder, sessionPid: x.session_pid, acquiredAt: x.acquired_at, heartbeatAgeSeconds: x.age, alive: x.alive } : null;
}

export function formatHolder(h: LeaseHolder): string {
  return (
    `${h.holder}${h.sessionPid !== null ? ` (session pid ${h.sessionPid})` : ''}, since ${h.acquiredAt.toISOString()}, ` +
    `last heartbeat ${Math.round(h.heartbeatAgeSeconds)} s ago${h.alive ? '' : ' (no longer alive)'}`
  );
}


import type { Db } from '../engine/db.js';

/** Advisory-lock namespace of backfill worker leases (the first key of pg_advisory_lock(int, int)). */
export const LEASE_NAMESPACE = 0x7a64_0005;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * The liveness of a backfill process, visible to every other one: a session advisory lock held on a connection of
 * its own. When the process dies (kill -9, a lost machine) the server ends the session and the lock goes with it,
 * so others may take over its chunks at once instead of waiting out a timeout. Correctness never rests on this:
 * every batch commits only if the chunk is still ours at the key we started from.
 */
export class WorkerLease {
  readonly key: number;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private wake: () => void = () => {};
  private readonly stopped = new Promise<void>((r) => (this.wake = r));

  constructor(private readonly db: Db) {
    this.key = 1 + Math.floor(Math.random() * 0x7fff_fffe);
  }

  async start(): Promise<void> {
    if (this.db.isEmbedded) return; // one connection only: there is no one to share with
    let ready!: () => void;
    let failed!: (e: unknown) => void;
    const first = new Promise<void>((res, rej) => {
      ready = res;
      failed = rej;
    });
    let started = false;
    this.loop = (async () => {
      while (!this.stopping) {
        try {
          await this.db.withConnection(async (c) => {
            await c.query('SELECT pg_advisory_lock($1, $2)', [LEASE_NAMESPACE, this.key]);
            if (!started) {
              started = true;
              ready();
            }
            while (!this.stopping) {
              await Promise.race([sleep(1000), this.stopped]);
              if (!this.stopping) await c.query('SELECT 1');
            }
            await c.query('SELECT pg_advisory_unlock($1, $2)', [LEASE_NAMESPACE, this.key]);
          });
        } catch (e) {
          if (!started) {
            failed(e);
            return;
          }
          await sleep(200); // the session was lost: take the lock again on a new one
        }
      }
    })();
    await first;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loop;
  }
}

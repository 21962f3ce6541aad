import type { Db } from '../db/db.js';
import { Lease, leaseAliveSql, leaseTable, type LeaseTiming } from '../engine/lease.js';
import { detectPooling } from '../db/pooling.js';

/** Advisory-lock class of backfill worker leases (the first key of pg_advisory_lock(int, int)). */
export const LEASE_NAMESPACE = 0x7a64_0005;

/** The lease name of the worker whose chunk owner key is `owner`, as SQL over an int expression. */
export const workerLeaseName = (ownerSql: string) => `'worker:' || ${ownerSql}`;

/**
 * The liveness of a backfill process, visible to every other one: a lease row (lib/engine/lease.ts) kept alive by a
 * session advisory lock on a direct connection (a killed process's chunks are free the moment its session ends), or
 * by a heartbeat behind a transaction pooler. Correctness never rests on this: every batch commits only if the
 * chunk is still ours at the key we started from.
 */
export class WorkerLease {
  readonly key: number;
  private lease: Lease | null = null;

  constructor(
    private readonly db: Db,
    private readonly stateSchema: string,
    private readonly timing?: LeaseTiming,
  ) {
    this.key = 1 + Math.floor(Math.random() * 0x7fff_fffe);
  }

  async start(): Promise<void> {
    if (this.db.isEmbedded) return; // one connection only: there is no one to share with
    const pooling = (this.db.pooling ??= await detectPooling(this.db));
    // Leases of workers that died are of no use to anyone (their chunks are free either way): clear them.
    await this.db
      .query(`DELETE FROM ${leaseTable(this.stateSchema)} m WHERE starts_with(m.name, 'worker:') AND NOT ${leaseAliveSql('m')}`)
      .catch(() => undefined);
    this.lease = new Lease(this.db, {
      spec: { name: `worker:${this.key}`, lockClass: LEASE_NAMESPACE, lockKey: this.key, label: 'backfill worker lease' },
      stateSchema: this.stateSchema,
      pooling,
      onLoss: 'renew',
      ...(this.timing ? { timing: this.timing } : {}),
    });
    await this.lease.acquire(0);
  }

  async stop(): Promise<void> {
    await this.lease?.release();
  }
}

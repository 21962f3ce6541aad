import type { Db } from '../db/db.js';
import { ident } from '../postgres/identifiers.js';
import type { ThresholdName } from './thresholds.js';
import { relationExists } from '../postgres/catalog.js';

/** What happened because of a breach. */
export type BreachAction = 'paused' | 'stopped' | 'rolled-back' | 'rollback-failed' | 'reported';

export interface BreachRecord {
  readonly id: number;
  readonly migration: string;
  readonly changeIndex: number | null;
  readonly threshold: ThresholdName;
  readonly message: string;
  readonly value: number;
  readonly limit: number;
  readonly action: BreachAction;
  readonly at: Date;
  readonly resolvedAt: Date | null;
  readonly resolution: string | null;
}

export interface MonitorSample {
  readonly at: Date;
  readonly migration: string;
  readonly changeIndex: number;
  readonly rowsDone: number;
  readonly totalEstimate: number;
  readonly rowsPerSecond: number | null;
  readonly canaryP50Ms: number | null;
  readonly canaryP99Ms: number | null;
  readonly canaryBaselineMs: number | null;
  readonly canaryLimitMs: number | null;
  readonly paused: boolean;
}

/** One window of a relative trigger: an application query's mean per call, or the application's error ratio, against its baseline. */
export interface QuerySample {
  readonly at: Date;
  readonly migration: string;
  readonly changeIndex: number;
  /** 'query': one of the application's top queries (value and baseline: mean ms per call); 'errors': its error ratio (0..1). */
  readonly kind: 'query' | 'errors';
  readonly queryid: string | null;
  readonly query: string | null;
  readonly value: number;
  readonly baseline: number;
  readonly limit: number;
  readonly calls: number | null;
}

const STATE_LOCK_KEY = 0x7a64_0001; // StateStore's: the schema is created under the same lock

/**
 * Breaches and samples are kept in the target database, so `umzug status` and `umzug report` on any machine see
 * what the process running the backfill saw.
 */
export class MonitorStore {
  readonly breaches: string;
  readonly samples: string;
  readonly querySamples: string;
  private ensured = false;

  constructor(
    private readonly db: Db,
    readonly stateSchema: string,
  ) {
    const s = ident(stateSchema);
    this.breaches = `${s}.${ident('monitor_breaches')}`;
    this.samples = `${s}.${ident('monitor_samples')}`;
    this.querySamples = `${s}.${ident('monitor_query_samples')}`;
  }

  async ensure(): Promise<void> {
    if (this.ensured) return;
    await this.db.transaction(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [STATE_LOCK_KEY]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${ident(this.stateSchema)}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.breaches} (
        id bigserial PRIMARY KEY, migration text NOT NULL, change_index int, threshold text NOT NULL, message text NOT NULL,
        value float8 NOT NULL, limit_value float8 NOT NULL, action text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),
        resolved_at timestamptz, resolution text)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.samples} (
        at timestamptz NOT NULL DEFAULT clock_timestamp(), migration text NOT NULL, change_index int NOT NULL,
        rows_done bigint NOT NULL, total_estimate bigint NOT NULL, rows_per_second float8, canary_p50_ms float8,
        canary_p99_ms float8, canary_baseline_ms float8, canary_limit_ms float8, paused boolean NOT NULL DEFAULT false)`);
      await c.query(`CREATE INDEX IF NOT EXISTS monitor_samples_at ON ${this.samples} (migration, change_index, at)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.querySamples} (
        at timestamptz NOT NULL DEFAULT clock_timestamp(), migration text NOT NULL, change_index int NOT NULL, kind text NOT NULL,
        queryid text, query text, value float8 NOT NULL, baseline float8 NOT NULL, limit_value float8 NOT NULL, calls float8)`);
      await c.query(`CREATE INDEX IF NOT EXISTS monitor_query_samples_at ON ${this.querySamples} (migration, change_index, at)`);
    });
    this.ensured = true;
  }

  private exists = false;

  /** Whether the tables exist, for reads: a read never creates them (a read-only command changes nothing). */
  private async readable(): Promise<boolean> {
    if (this.ensured || this.exists) return true;
    this.exists = await relationExists(this.db, this.samples);
    return this.exists;
  }

  async addBreach(b: { migration: string; changeIndex: number | null; threshold: ThresholdName; message: string; value: number; limit: number; action: BreachAction }): Promise<number> {
    await this.ensure();
    const r = await this.db.query<{ id: string }>(
      `INSERT INTO ${this.breaches} (migration, change_index, threshold, message, value, limit_value, action) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [b.migration, b.changeIndex, b.threshold, b.message, b.value, b.limit, b.action],
    );
    return Number(r.rows[0]!.id);
  }

  async setAction(id: number, action: BreachAction, message?: string): Promise<void> {
    await this.db.query(`UPDATE ${this.breaches} SET action = $2, message = coalesce($3, message) WHERE id = $1`, [id, action, message ?? null]);
  }

  async resolve(id: number, resolution: string): Promise<void> {
    await this.db.query(`UPDATE ${this.breaches} SET resolved_at = clock_timestamp(), resolution = $2 WHERE id = $1 AND resolved_at IS NULL`, [id, resolution]);
  }

  /** Closes every open breach of a migration (its expand finished after all). */
  async resolveMigration(migration: string, resolution: string): Promise<void> {
    await this.ensure();
    await this.db.query(`UPDATE ${this.breaches} SET resolved_at = clock_timestamp(), resolution = $2 WHERE migration = $1 AND resolved_at IS NULL`, [migration, resolution]);
  }

  async listBreaches(opts: { openOnly?: boolean; migration?: string; limit?: number; since?: Date } = {}): Promise<BreachRecord[]> {
    if (!(await this.readable())) return [];
    const r = await this.db.query<Record<string, unknown>>(
      `SELECT * FROM ${this.breaches}
        WHERE ($1::boolean IS NOT TRUE OR resolved_at IS NULL) AND ($2::text IS NULL OR migration = $2) AND ($3::timestamptz IS NULL OR at >= $3)
        ORDER BY at DESC, id DESC LIMIT $4`,
      [opts.openOnly ?? false, opts.migration ?? null, opts.since ?? null, opts.limit ?? 1000],
    );
    return r.rows.map((x) => ({
      id: Number(x.id),
      migration: String(x.migration),
      changeIndex: x.change_index == null ? null : Number(x.change_index),
      threshold: String(x.threshold) as ThresholdName,
      message: String(x.message),
      value: Number(x.value),
      limit: Number(x.limit_value),
      action: String(x.action) as BreachAction,
      at: x.at as Date,
      resolvedAt: (x.resolved_at as Date | null) ?? null,
      resolution: (x.resolution as string | null) ?? null,
    }));
  }

  async addSample(s: Omit<MonitorSample, 'at'>): Promise<void> {
    await this.ensure();
    await this.db.query(
      `INSERT INTO ${this.samples} (migration, change_index, rows_done, total_estimate, rows_per_second, canary_p50_ms, canary_p99_ms,
         canary_baseline_ms, canary_limit_ms, paused) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [s.migration, s.changeIndex, s.rowsDone, s.totalEstimate, s.rowsPerSecond, s.canaryP50Ms, s.canaryP99Ms, s.canaryBaselineMs, s.canaryLimitMs, s.paused],
    );
  }

  async listSamples(opts: { migration?: string; since?: Date; limit?: number } = {}): Promise<MonitorSample[]> {
    if (!(await this.readable())) return [];
    const r = await this.db.query<Record<string, unknown>>(
      `SELECT * FROM (SELECT * FROM ${this.samples} WHERE ($1::text IS NULL OR migration = $1) AND ($2::timestamptz IS NULL OR at >= $2)
         ORDER BY at DESC LIMIT $3) s ORDER BY at`,
      [opts.migration ?? null, opts.since ?? null, opts.limit ?? 20_000],
    );
    const n = (v: unknown) => (v == null ? null : Number(v));
    return r.rows.map((x) => ({
      at: x.at as Date,
      migration: String(x.migration),
      changeIndex: Number(x.change_index),
      rowsDone: Number(x.rows_done),
      totalEstimate: Number(x.total_estimate),
      rowsPerSecond: n(x.rows_per_second),
      canaryP50Ms: n(x.canary_p50_ms),
      canaryP99Ms: n(x.canary_p99_ms),
      canaryBaselineMs: n(x.canary_baseline_ms),
      canaryLimitMs: n(x.canary_limit_ms),
      paused: Boolean(x.paused),
    }));
  }

  async addQuerySamples(rows: readonly Omit<QuerySample, 'at'>[]): Promise<void> {
    if (rows.length === 0) return;
    await this.ensure();
    await this.db.query(
      `INSERT INTO ${this.querySamples} (migration, change_index, kind, queryid, query, value, baseline, limit_value, calls)
       SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[], $8::float8[], $9::float8[])`,
      [
        rows.map((r) => r.migration), rows.map((r) => r.changeIndex), rows.map((r) => r.kind), rows.map((r) => r.queryid), rows.map((r) => r.query),
        rows.map((r) => r.value), rows.map((r) => r.baseline), rows.map((r) => r.limit), rows.map((r) => r.calls),
      ],
    );
  }

  async listQuerySamples(opts: { migration?: string; since?: Date; limit?: number } = {}): Promise<QuerySample[]> {
    if (!(await this.readable())) return [];
    if (!(this.ensured || (await relationExists(this.db, this.querySamples)))) return []; // recorded by an older release
    const r = await this.db.query<Record<string, unknown>>(
      `SELECT * FROM (SELECT * FROM ${this.querySamples} WHERE ($1::text IS NULL OR migration = $1) AND ($2::timestamptz IS NULL OR at >= $2)
         ORDER BY at DESC LIMIT $3) s ORDER BY at`,
      [opts.migration ?? null, opts.since ?? null, opts.limit ?? 50_000],
    );
    return r.rows.map((x) => ({
      at: x.at as Date,
      migration: String(x.migration),
      changeIndex: Number(x.change_index),
      kind: String(x.kind) as QuerySample['kind'],
      queryid: (x.queryid as string | null) ?? null,
      query: (x.query as string | null) ?? null,
      value: Number(x.value),
      baseline: Number(x.baseline),
      limit: Number(x.limit_value),
      calls: x.calls == null ? null : Number(x.calls),
    }));
  }

  /** The latest sample of each backfill. */
  async latestSamples(): Promise<MonitorSample[]> {
    if (!(await this.readable())) return [];
    const r = await this.db.query<{ migration: string; change_index: number; at: Date }>(
      `SELECT DISTINCT ON (migration, change_index) migration, change_index, at FROM ${this.samples} ORDER BY migration, change_index, at DESC`,
    );
    const out: MonitorSample[] = [];
    for (const x of r.rows) {
      const s = await this.listSamples({ migration: x.migration, since: x.at, limit: 10 });
      const last = s.filter((y) => y.changeIndex === Number(x.change_index)).at(-1);
      if (last) out.push(last);
    }
    return out;
  }
}

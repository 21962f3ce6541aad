import type { Db } from '../db/db.js';
import { ident } from '../postgres/identifiers.js';
import { checkFlagName, checkPercent } from './names.js';
import { relationExists } from '../postgres/catalog.js';

export interface FlagRecord {
  readonly name: string;
  /** 0–100, two decimals. */
  readonly percent: number;
  /** When the flag last reached 100 % (null below 100 %): the contract gate counts its safety window from here. */
  readonly fullSince: Date | null;
  readonly updatedAt: Date;
  readonly updatedBy: string | null;
}

export interface FlagChange {
  readonly name: string;
  readonly percent: number;
  readonly at: Date;
  readonly by: string | null;
}

/** Same key as StateStore.ensure: both create the state schema, and must not race on CREATE SCHEMA. */
const STATE_LOCK_KEY = 0x7a64_0001;

/** SQL shared by the store (which writes) and the clients of application instances (which only read). */
export function flagTables(stateSchema: string): { flags: string; history: string } {
  const s = ident(stateSchema);
  return { flags: `${s}.${ident('flags')}`, history: `${s}.${ident('flag_history')}` };
}

export function rowToFlag(r: Record<string, unknown>): FlagRecord {
  return {
    name: String(r.name),
    percent: Number(r.percent),
    fullSince: (r.full_since as Date | null) ?? null,
    updatedAt: r.updated_at as Date,
    updatedBy: (r.updated_by as string | null) ?? null,
  };
}

/**
 * Flags live in the target database, beside the migration state, so every application instance, every machine that
 * runs `umzug` and the contract gate read the same value. Each change is also kept in a history table, which the
 * report plots and which says who moved a rollout and when.
 */
export class FlagStore {
  readonly tables: { flags: string; history: string };
  private ensured = false;

  constructor(
    private readonly db: Db,
    readonly stateSchema: string,
  ) {
    this.tables = flagTables(stateSchema);
  }

  async ensure(): Promise<void> {
    if (this.ensured) return;
    await this.db.transaction(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [STATE_LOCK_KEY]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${ident(this.stateSchema)}`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.tables.flags} (
        name text PRIMARY KEY, percent numeric(5,2) NOT NULL CHECK (percent >= 0 AND percent <= 100),
        full_since timestamptz, updated_at timestamptz NOT NULL DEFAULT now(), updated_by text)`);
      await c.query(`CREATE TABLE IF NOT EXISTS ${this.tables.history} (
        id bigserial PRIMARY KEY, name text NOT NULL, percent numeric(5,2) NOT NULL,
        at timestamptz NOT NULL DEFAULT clock_timestamp(), by text)`);
    });
    this.ensured = true;
  }

  private exists = false;

  /** Whether the tables exist, for reads: a read never creates them (a read-only command changes nothing). */
  private async readable(): Promise<boolean> {
    if (this.ensured || this.exists) return true;
    this.exists = await relationExists(this.db, this.tables.history);
    return this.exists;
  }

  /**
   * Sets a rollout. Staying at 100 % keeps the moment it first got there; going below 100 % forgets it, so the
   * contract's safety window starts again when the flag comes back to 100 %.
   */
  async set(name: string, percent: number, by: string | null = defaultActor()): Promise<FlagRecord> {
    checkFlagName(name);
    const pct = checkPercent(percent);
    await this.ensure();
    const r = await this.db.query<Record<string, unknown>>(
      `WITH up AS (
         INSERT INTO ${this.tables.flags} AS f (name, percent, full_since, updated_by)
         VALUES ($1, $2::numeric, CASE WHEN $2::numeric = 100 THEN now() END, $3)
         ON CONFLICT (name) DO UPDATE SET percent = EXCLUDED.percent,
           full_since = CASE WHEN EXCLUDED.percent = 100 THEN coalesce(f.full_since, now()) END,
           updated_at = now(), updated_by = EXCLUDED.updated_by
         RETURNING f.*),
       h AS (INSERT INTO ${this.tables.history} (name, percent, by) SELECT name, percent, updated_by FROM up)
       SELECT * FROM up`,
      [name, pct, by],
    );
    return rowToFlag(r.rows[0]!);
  }

  async get(name: string): Promise<FlagRecord | null> {
    if (!(await this.readable())) return null;
    const r = await this.db.query<Record<string, unknown>>(`SELECT * FROM ${this.tables.flags} WHERE name = $1`, [name]);
    return r.rows[0] ? rowToFlag(r.rows[0]) : null;
  }

  async list(): Promise<FlagRecord[]> {
    if (!(await this.readable())) return [];
    const r = await this.db.query<Record<string, unknown>>(`SELECT * FROM ${this.tables.flags} ORDER BY name`);
    return r.rows.map(rowToFlag);
  }

  async history(name?: string, since?: Date): Promise<FlagChange[]> {
    if (!(await this.readable())) return [];
    const r = await this.db.query<Record<string, unknown>>(
      `SELECT name, percent, at, by FROM ${this.tables.history}
        WHERE ($1::text IS NULL OR name = $1) AND ($2::timestamptz IS NULL OR at >= $2) ORDER BY at, id`,
      [name ?? null, since ?? null],
    );
    return r.rows.map((x) => ({ name: String(x.name), percent: Number(x.percent), at: x.at as Date, by: (x.by as string | null) ?? null }));
  }

  /** Removes a flag (its history stays). */
  async remove(name: string): Promise<boolean> {
    await this.ensure();
    const r = await this.db.query(`DELETE FROM ${this.tables.flags} WHERE name = $1`, [name]);
    return r.rowCount > 0;
  }
}

function defaultActor(): string | null {
  const user = process.env.USER ?? process.env.USERNAME;
  return user ? `${user}@${process.env.HOSTNAME ?? 'localhost'}` : null;
}

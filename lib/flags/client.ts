import type { Knex } from 'knex';
import { Db, sqlState } from '../db/db.js';
import { inRollout } from './hash.js';
import { flagTables } from './store.js';

/** Anything that runs a query: a pg.Pool, a pg.Client, or this package's Db. */
export interface FlagQueryable {
  query(text: string): Promise<{ rows: unknown[] }>;
}

export interface FlagClientOptions {
  /** Schema of the flags table (the engine's state schema). Default `zero_downtime`. */
  readonly stateSchema?: string;
  /** How long a read of the flags table is reused. A change reaches every instance within this. Default 5 s. */
  readonly ttlMs?: number;
  /**
   * What a flag reads as when the table cannot be read and no earlier value is cached. Default false: the old read
   * path, which is the one that works while the change is not contracted.
   */
  readonly fallback?: boolean;
  /** Told about every failed refresh (the last values are kept meanwhile). */
  readonly onError?: (err: Error) => void;
}

export interface Flag {
  readonly name: string;
  /** Whether `key` (a user id, a tenant, a request key…) is inside the rollout. Stable for a key at a given percent. */
  isEnabled(key: string | number | bigint): Promise<boolean>;
  /** The rollout, 0–100; undefined when no such flag is set. */
  percent(): Promise<number | undefined>;
}

const isKnex = (k: unknown): k is Knex => typeof k === 'function' && typeof (k as { client?: unknown }).client === 'object';

/**
 * What an application instance uses to read the rollout: the whole (small) flags table is read at most once per TTL,
 * by one query at a time however many calls wait for it, so a flag check in a hot path costs a map lookup and a hash.
 */
export class FlagClient {
  private readonly source: FlagQueryable;
  private readonly sql: string;
  private readonly ttlMs: number;
  private cache: { at: number; values: ReadonlyMap<string, number> } | null = null;
  private inFlight: Promise<ReadonlyMap<string, number>> | null = null;

  constructor(
    source: Knex | FlagQueryable,
    private readonly options: FlagClientOptions = {},
  ) {
    this.source = isKnex(source) ? new Db(source) : source;
    this.sql = `SELECT name, percent::float8 AS percent FROM ${flagTables(options.stateSchema ?? 'zero_downtime').flags}`;
    this.ttlMs = options.ttlMs ?? 5000;
    if (!(this.ttlMs >= 0)) throw new TypeError(`flags: ttlMs must be ≥ 0, got ${String(options.ttlMs)}`);
  }

  flag(name: string): Flag {
    return {
      name,
      isEnabled: async (key) => {
        const pct = (await this.values()).get(name);
        if (pct === undefined) return this.options.fallback ?? false;
        return inRollout(name, key, pct);
      },
      percent: async () => (await this.values()).get(name),
    };
  }

  async percent(name: string): Promise<number | undefined> {
    return (await this.values()).get(name);
  }

  /** Every flag and its percentage, at most ttlMs old. */
  async values(): Promise<ReadonlyMap<string, number>> {
    const now = Date.now();
    if (this.cache && now - this.cache.at < this.ttlMs) return this.cache.values;
    this.inFlight ??= this.refresh().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  /** Drops the cached values: the next check reads the table. */
  invalidate(): void {
    this.cache = null;
  }

  private async refresh(): Promise<ReadonlyMap<string, number>> {
    // Stamped before the query: a value is never considered fresher than the moment it was asked for.
    const at = Date.now();
    try {
      const r = await this.source.query(this.sql);
      const values = new Map((r.rows as { name: string; percent: number }[]).map((x) => [x.name, Number(x.percent)]));
      this.cache = { at, values };
      return values;
    } catch (e) {
      // No flags table yet (nothing was ever set): every flag is unset, which is not an error.
      if (sqlState(e) === '42P01' || sqlState(e) === '3F000') {
        this.cache = { at, values: new Map() };
        return this.cache.values;
      }
      this.options.onError?.(e as Error);
      if (this.cache) return this.cache.values;
      return new Map();
    }
  }
}

/** `const f = flags(knex); if (await f.flag('users-full-name').isEnabled(user.id)) …` */
export function flags(source: Knex | FlagQueryable, options?: FlagClientOptions): FlagClient {
  return new FlagClient(source, options);
}

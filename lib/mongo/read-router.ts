import { inRollout } from '../flags/hash.js';

export interface ReadRouterOptions {
  /** The flag name: salts the hash, so two rollouts at 10 % do not pick the same keys. */
  readonly flag: string;
  /** Share of keys read from PostgreSQL, 0–100, or a function giving it now (e.g. the flag store's value). */
  readonly percent?: number | (() => number);
  /** Or decide yourself per key (a feature-flag client, a user allow-list…). Overrides percent. */
  readonly decide?: (key: string) => boolean;
}

/**
 * Read cutover for a moved collection: which store a read of a key goes to. By a stable hash of the key (the same
 * SHA-256 buckets as the flag store), so a key never flips back and forth while the percentage goes up, and every
 * process agrees on it.
 */
export class ReadRouter {
  constructor(private readonly o: ReadRouterOptions) {
    if (!o || typeof o.flag !== 'string' || o.flag.length === 0) throw new TypeError('ReadRouter: flag must be a non-empty string');
  }

  usePostgres(key: string | number | bigint): boolean {
    if (this.o.decide) return this.o.decide(String(key));
    const p = typeof this.o.percent === 'function' ? this.o.percent() : (this.o.percent ?? 0);
    return inRollout(this.o.flag, key, p);
  }

  /** Reads through the store this key is routed to. */
  read<T>(key: string | number | bigint, from: { readonly mongo: () => Promise<T>; readonly postgres: () => Promise<T> }): Promise<T> {
    return this.usePostgres(key) ? from.postgres() : from.mongo();
  }
}

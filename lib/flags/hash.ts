import { createHash } from 'node:crypto';

/** Buckets per flag: a percentage is honoured to two decimals (0.01 % = one bucket). */
export const BUCKETS = 10_000;

/**
 * The bucket (0 … 9 999) of a key for a flag: the first 32 bits of SHA-256("<flag>:<key>") modulo 10 000.
 * SHA-256 rather than a faster non-cryptographic hash because every language an application may be written in has
 * it built in, so a service in another language can compute the same bucket; the flag name salts it, so 10 % of one
 * flag is not the same 10 % of users as 10 % of another. Modulo bias is below 1 in 400 000 (2^32 / 10^4).
 */
export function bucketOf(flag: string, key: string | number | bigint): number {
  const digest = createHash('sha256').update(`${flag}:${String(key)}`).digest();
  return digest.readUInt32BE(0) % BUCKETS;
}

/**
 * Whether a key is inside a rollout of `percent` %. Raising the percentage only adds keys (a key in at 10 % stays
 * in at 50 %), so a user who moved to the new read path never flips back while the rollout goes up.
 */
export function inRollout(flag: string, key: string | number | bigint, percent: number): boolean {
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  return bucketOf(flag, key) < Math.round(percent * (BUCKETS / 100));
}

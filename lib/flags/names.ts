import { ChangeInputError } from '../postgres/identifiers.js';

/**
 * Flag names travel as query parameters, so any text would be safe in SQL; the limits keep them readable in a
 * shell (`umzug flag set NAME PCT`) and in Prometheus labels.
 */
export function checkFlagName(name: unknown, field = 'flag name'): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.:-]{1,200}$/.test(name)) {
    throw new ChangeInputError(`${field} must be 1–200 characters of letters, digits, _ . : -, got ${JSON.stringify(name)}`);
  }
  return name;
}

/** A rollout percentage, 0–100, with at most two decimals (the bucket resolution). */
export function checkPercent(value: unknown, field = 'percent'): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value.trim().replace(/%$/, '')) : value;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 100) {
    throw new ChangeInputError(`${field} must be a number from 0 to 100, got ${JSON.stringify(value)}`);
  }
  if (Math.round(n * 100) !== n * 100 && Math.abs(Math.round(n * 100) - n * 100) > 1e-9) {
    throw new ChangeInputError(`${field} has more than two decimals (${n}); the rollout resolution is 0.01 %`);
  }
  return Math.round(n * 100) / 100;
}

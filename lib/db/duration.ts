const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** '7d', '36h', '90s', '250ms', '1h30m' or a number of milliseconds. */
export function parseDuration(value: string | number, field: string): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) return value;
  } else if (typeof value === 'string') {
    const parts = [...value.trim().matchAll(/(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)/g)];
    const consumed = parts.map((p) => p[0]).join('');
    if (parts.length > 0 && consumed.replace(/\s/g, '') === value.replace(/\s/g, '')) {
      return parts.reduce((sum, p) => sum + Number(p[1]) * UNITS[p[2]!]!, 0);
    }
  }
  throw new TypeError(`${field} must be a duration such as "7d", "12h", "30s", "500ms" or a number of milliseconds, got ${JSON.stringify(value)}`);
}

/** A duration for people: `3d 4h`, `2h 5m`, `1m 30s`, `45s`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

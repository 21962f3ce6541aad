/**
 * Waits `ms`; returns early, without an error, when `signal` aborts (a stopped backfill or command stops waiting at
 * once, and says why itself). `unref`: the wait alone does not keep the process alive (a lease heartbeat's).
 */
export function sleep(ms: number, signal?: AbortSignal, opts: { readonly unref?: boolean } = {}): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    if (opts.unref) t.unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The p-th percentile (nearest rank) of `values`, in any order; 0 for none. */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

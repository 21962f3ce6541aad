import { BackfillInterrupted, type BackfillOptions, type BackfillProgress } from '../backfill/keyset.js';
import type { ThrottleEvent } from '../backfill/throttle.js';
import type { Project } from './project.js';
import { sleep } from '../db/timing.js';

/** Where a running backfill reports: a progress bar on a terminal, plain lines in CI and logs, JSON lines for tools. */
export interface BackfillDisplay {
  start(label: string, totalEstimate: number): void;
  update(p: BackfillProgress): void;
  throttle(label: string, e: ThrottleEvent): void;
  note(message: string): void;
  finish(p: BackfillProgress | null, outcome: 'done' | 'interrupted' | 'failed'): void;
}

export interface RunBackfillsOptions {
  /** Workers in this process; default: the configured backfill.workers. */
  readonly workers?: number;
  /** Backfill options on top of the configured ones (`--canary off`, `--pace`). */
  readonly options?: Partial<BackfillOptions>;
  readonly signal?: AbortSignal;
  readonly display?: BackfillDisplay;
  /**
   * Worker mode, for extra machines: wait (polling) until some backfill needs doing, join it, and return once none
   * is left. Without it, returns at once when there is nothing to do.
   */
  readonly waitForWork?: boolean;
  readonly pollMs?: number;
}

export interface PendingBackfill {
  readonly migration: string;
  readonly changeIndex: number;
  readonly label: string;
}


/**
 * Backfills whose expand steps are done but whose rows are not all walked yet: an `up` that was stopped, or one that
 * is running right now on another machine (joining it is safe: chunks are claimed, never shared).
 */
export async function pendingBackfills(umzug: Project): Promise<PendingBackfill[]> {
  const out: PendingBackfill[] = [];
  const { engine } = umzug;
  for (const e of await umzug.entries()) {
    if (e.phase !== 'expand') continue;
    for (const [i, change] of e.changes.entries()) {
      const label = await engine.moverFor(change).pending(engine, e.name, i, change);
      if (label) out.push({ migration: e.name, changeIndex: i, label });
    }
  }
  return out;
}

/** Runs (or joins) every pending backfill with `workers` workers in this process. */
export async function runBackfills(umzug: Project, opts: RunBackfillsOptions = {}): Promise<BackfillProgress[]> {
  const { engine } = umzug;
  // Known before the first batch, so the worker lease and the monitor's probe rely on no session state behind a
  // transaction pooler (this command does not take the migration lock, which would find it out otherwise).
  await umzug.pooling();
  const display = opts.display;
  const results: BackfillProgress[] = [];
  const seen = new Set<string>();
  const unsubscribe = engine.subscribe((ev) => {
    if (ev.type === 'backfill-throttle') display?.throttle(`${ev.migration} #${ev.changeIndex + 1}`, ev.throttle);
    if (ev.type === 'backfill-retry') {
      display?.note(`${ev.migration} #${ev.changeIndex + 1}: batch retried after ${ev.retry.code} (attempt ${ev.retry.attempt}, next in ${Math.round(ev.retry.delayMs)} ms)`);
    }
  });
  try {
    for (;;) {
      if (opts.signal?.aborted) throw new BackfillInterrupted('stopped before starting; nothing was changed');
      const pending = (await pendingBackfills(umzug)).filter((p) => !seen.has(`${p.migration}#${p.changeIndex}`));
      if (pending.length === 0) {
        if (opts.waitForWork && results.length === 0) {
          await sleep(opts.pollMs ?? 2000, opts.signal);
          continue;
        }
        return results;
      }
      for (const p of pending) {
        seen.add(`${p.migration}#${p.changeIndex}`);
        const entry = (await umzug.entries()).find((e) => e.name === p.migration)!;
        const change = entry.changes[p.changeIndex]!;
        const before = await engine.state.getBackfill(p.migration, p.changeIndex, 'expand');
        display?.start(p.label, before?.totalEstimate ?? 0);
        let last: BackfillProgress | null = null;
        const onProgress = (pr: BackfillProgress) => {
          last = pr;
          display?.update(pr);
        };
        try {
          last = await engine.moverFor(change).run(engine, p.migration, p.changeIndex, change, {
            options: { ...opts.options, ...(opts.workers ? { workers: opts.workers } : {}) },
            ...(opts.signal ? { signal: opts.signal } : {}),
            onProgress,
          });
          results.push(last);
          display?.finish(last, 'done');
        } catch (e) {
          display?.finish(last, e instanceof BackfillInterrupted ? 'interrupted' : 'failed');
          throw e;
        }
      }
    }
  } finally {
    unsubscribe();
  }
}

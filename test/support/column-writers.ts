import type pg from 'pg';
import { pgClient } from './pg.js';
import { think } from './think.js';

export interface LoopWriter {
  readonly label: string;
  ops(): number;
  readonly errors: string[];
  stop(): Promise<void>;
}

/**
 * A simulated application instance running `step` in a loop on its own connection (single statements, WRITER_THINK_MS
 * apart). Every error is kept: the column tests require none.
 */
export async function startLoop(url: string, label: string, step: (c: pg.Client, i: number) => Promise<void>): Promise<LoopWriter> {
  const client = await pgClient(url, label);
  const errors: string[] = [];
  let ops = 0;
  let running = true;
  const loop = (async () => {
    for (let i = 1; running; i++) {
      try {
        await step(client, i);
        ops++;
      } catch (e) {
        errors.push(`${label}: ${(e as Error).message}`);
      }
      await think();
    }
  })();
  return {
    label,
    ops: () => ops,
    errors,
    async stop() {
      running = false;
      await loop;
      await client.end();
    },
  };
}

/**
 * A loop that runs `check` every 25 ms (or `intervalMs`) and records the problems it returns (one description or
 * several) or throws, except errors matching `expected` (a column briefly absent while a phase swaps it). It ends at
 * stop(), or as soon as `aborted()` says so (a failed test that never reached its stop()).
 */
export function startChecker(
  check: () => Promise<string | readonly string[] | null>,
  expected?: RegExp,
  opts: { intervalMs?: number; aborted?: () => boolean } = {},
): { stop(opts?: { atLeast?: number }): Promise<{ checks: number; violations: string[] }> } {
  const violations: string[] = [];
  let checks = 0;
  let running = true;
  const loop = (async () => {
    while (running && !opts.aborted?.()) {
      try {
        const problem = await check();
        checks++;
        for (const p of typeof problem === 'string' ? [problem] : (problem ?? [])) if (p) violations.push(p);
      } catch (e) {
        if (!expected || !expected.test((e as Error).message)) violations.push((e as Error).message);
      }
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 25));
    }
  })();
  return {
    // atLeast: keep checking until more than that many rounds have run (at most 30 s more), so a test that asks for
    // a number of rounds is not at the mercy of a loaded machine's timer.
    async stop(stopOpts = {}) {
      const until = Date.now() + 30_000;
      while (stopOpts.atLeast !== undefined && checks <= stopOpts.atLeast && Date.now() < until && !opts.aborted?.()) await new Promise((r) => setTimeout(r, 25));
      running = false;
      await loop;
      return { checks, violations };
    },
  };
}

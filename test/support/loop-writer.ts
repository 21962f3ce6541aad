import type pg from 'pg';
import { pgClient } from './pg.js';
import { think } from './think.js';

export interface LoopWriter {
  readonly stats: { ops: number; errors: string[]; deadlocks: number };
  stop(): Promise<void>;
}

/**
 * An application instance whose statements are given by the test (for changes that span two tables). A deadlock
 * (40P01) is retried, as applications retry them, and counted; any other error is recorded.
 */
export async function startLoopWriter(url: string, label: string, step: (c: pg.Client, i: number) => Promise<void>): Promise<LoopWriter> {
  const client = await pgClient(url, label);
  const stats = { ops: 0, errors: [] as string[], deadlocks: 0 };
  let running = true;
  const loop = (async () => {
    for (let i = 1; running; i++) {
      for (;;) {
        try {
          await step(client, i);
          stats.ops++;
          break;
        } catch (e) {
          // A statement that failed inside BEGIN … COMMIT leaves the transaction aborted: end it before going on.
          await client.query('ROLLBACK').catch(() => undefined);
          if ((e as { code?: string }).code === '40P01') {
            stats.deadlocks++;
            continue;
          }
          stats.errors.push(`${label}: ${(e as Error).message}`);
          break;
        }
      }
      await think();
    }
  })();
  return {
    stats,
    async stop() {
      if (!running) return loop;
      running = false;
      await loop;
      await client.end();
    },
  };
}

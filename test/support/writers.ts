import { expect } from 'chai';
import type pg from 'pg';
import { pgClient } from './pg.js';
import { think } from './think.js';

export interface WriterStats {
  ops: number;
  errors: string[];
}

export interface Writer {
  readonly stats: WriterStats;
  stop(): Promise<void>;
}

/**
 * A simulated application instance: a loop of single-row INSERT / UPDATE / DELETE on its own connection, writing the
 * column its version knows. Every error is recorded; the tests require none.
 */
export async function startWriter(
  url: string,
  opts: { table: string; column: string; idColumn?: string; maxId: () => number; label: string; extra?: (c: pg.Client, i: number) => Promise<void> },
): Promise<Writer> {
  const client = await pgClient(url, opts.label);
  const stats: WriterStats = { ops: 0, errors: [] };
  let running = true;
  const id = opts.idColumn ?? 'id';
  const loop = (async () => {
    let i = 0;
    while (running) {
      i++;
      const r = Math.random();
      const target = 1 + Math.floor(Math.random() * Math.max(1, opts.maxId()));
      const value = `${opts.label}-${i}`;
      try {
        if (r < 0.35) {
          await client.query(`INSERT INTO ${opts.table} (${opts.column}) VALUES ($1)`, [value]);
        } else if (r < 0.8) {
          await client.query(`UPDATE ${opts.table} SET ${opts.column} = $1 WHERE ${id} = $2`, [value, target]);
        } else if (r < 0.9) {
          await client.query(`UPDATE ${opts.table} SET email = $1 WHERE ${id} = $2`, [`${value}@x`, target]);
        } else {
          await client.query(`DELETE FROM ${opts.table} WHERE ${id} = $1`, [target]);
        }
        if (opts.extra) await opts.extra(client, i);
        stats.ops++;
      } catch (e) {
        stats.errors.push(`${opts.label}: ${(e as Error).message}`);
      }
      // Yield so the event loop serves the migration too; a real app has think time as well.
      await think();
    }
  })();
  return {
    stats,
    async stop() {
      running = false;
      await loop;
      await client.end();
    },
  };
}

/** A writer of any of the test kinds: `startLoop` (errors, ops()) or `startWriter` / `startLoopWriter` (stats). */
export type AnyWriter = { readonly errors: readonly string[]; ops(): number } | { readonly stats: { readonly errors: readonly string[]; readonly ops: number } };

const errorsOf = (w: AnyWriter) => ('stats' in w ? w.stats.errors : w.errors);
const opsOf = (w: AnyWriter) => ('stats' in w ? w.stats.ops : w.ops());

/**
 * The closing assertions of a run under writers: no writer saw an error, the checker found no violation, and (where
 * given) the checker ran more than `minChecks` times and the writers ran more than `minOps` statements between them.
 */
export function expectCleanRun(
  writers: readonly AnyWriter[],
  checker: { readonly checks: number; readonly violations: readonly string[] },
  expected: { minChecks?: number; minOps?: number } = {},
): void {
  const errors = writers.flatMap(errorsOf);
  expect(errors, errors.slice(0, 5).join('\n')).to.deep.equal([]);
  expect(checker.violations, checker.violations.slice(0, 5).join('\n')).to.deep.equal([]);
  if (expected.minChecks !== undefined) expect(checker.checks, 'checker rounds').to.be.greaterThan(expected.minChecks);
  if (expected.minOps !== undefined) expect(writers.reduce((n, w) => n + opsOf(w), 0), 'writer statements').to.be.greaterThan(expected.minOps);
}

// What the pg_partman test files share: writers stopped after each test, a one-migration project, and catalog reads.
import type { Knex } from 'knex';
import type pg from 'pg';
import { startLoopWriter, type LoopWriter } from './loop-writer.js';
import { tempProject } from './project.js';

/** A regclass's text without the quotes PostgreSQL adds to names that need them. */
export const strip = (t: string): string => t.replace(/^"|"$/g, '');

/**
 * For the file: a `writer()` that starts a loop writer and stops it after the running test however it ended (one
 * left connected would meet the database's drop).
 */
export function trackedWriters(): (url: string, label: string, step: (c: pg.Client, i: number) => Promise<void>) => Promise<LoopWriter> {
  const writers: LoopWriter[] = [];
  afterEach(async () => {
    for (const w of writers.splice(0)) await w.stop();
  });
  return async (url, label, step) => {
    const w = await startLoopWriter(url, label, step);
    writers.push(w);
    return w;
  };
}

/** A project whose one migration makes `changes` (constructors named in `uses`); its folder. */
export function oneChangeProject(prefix: string, changes: string, uses: string): string {
  const p = tempProject(prefix);
  p.write('001.change.ts', `import { defineMigration, ${uses} } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [\n${changes}\n] });\n`);
  return p.dir;
}

/** The leaves below `table` now. */
export async function leaves(knex: Knex, table: string): Promise<string[]> {
  const r = await knex.raw<{ rows: { t: string }[] }>(`SELECT relid::regclass::text AS t FROM pg_partition_tree(?::regclass) WHERE isleaf ORDER BY 1`, [table]);
  return r.rows.map((x) => strip(x.t)).sort();
}

/** The one number a query returns. */
export async function count(knex: Knex, sql: string, bindings: readonly string[] = []): Promise<number> {
  return Number((await knex.raw<{ rows: { n: number | string }[] }>(sql, bindings)).rows[0]!.n);
}

/**
 * What a small table's backfill costs beyond its rows: the expand of a renameColumn with the defaults (the canary
 * paces) against the same with the canary off, side by side in one run:
 *
 *   npx tsx bench/small-table.ts [--rows 5k] [--pairs 3]
 *
 * Each run gets a table of its own with --rows rows; the order is defaults, off, off, defaults per pair (ABBA), so
 * neither gains from going first. It prints each run's wall time, the medians, defaults ÷ off, and the host's CPU
 * steal over the timed part. With no application load the ratio is what pacing costs when there is nothing to
 * protect: start-up (probe targets, the first baselines) and the first batches at the pacer's start duty.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory from 'knex';
import { zeroDowntime } from '../lib/index.js';
import { benchArg, client, cpuTimes, dropBenchDatabase, fmt, freshBenchDatabase, parseSize, percentile, stolenSince } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const LIB_INDEX = path.resolve(here, '../lib/index.ts');
const ROWS = parseSize(benchArg('rows') ?? '5k');
const PAIRS = Number(benchArg('pairs') ?? '3');

function project(n: number): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `zd-bench-small-${n}-`));
  mkdirSync(path.join(dir, 'migrations'));
  writeFileSync(
    path.join(dir, 'migrations', `001.rename-${n}.ts`),
    `import { defineMigration, renameColumn } from ${JSON.stringify(LIB_INDEX)};\nexport default defineMigration({ changes: [renameColumn({ table: 't${n}', from: 'name', to: 'full_name' })] });\n`,
  );
  return dir;
}

async function main(): Promise<void> {
  const dbName = `zd_bench_small_${process.pid}`;
  const url = await freshBenchDatabase(dbName);
  const c = await client(url);
  const order = Array.from({ length: PAIRS }, () => ['defaults', 'off', 'off', 'defaults'] as const).flat();
  for (let n = 0; n < order.length; n++) {
    await c.query(`CREATE TABLE t${n} (id bigint PRIMARY KEY, name text, email text)`);
    await c.query(`INSERT INTO t${n} SELECT g, 'name-' || g, 'u' || g || '@example.com' FROM generate_series(1, ${ROWS}) g`);
    await c.query(`VACUUM ANALYZE t${n}`);
  }
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 8 } });
  const quiet = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };
  const times: Record<'defaults' | 'off', number[]> = { defaults: [], off: [] };
  const from = cpuTimes();
  for (const [n, kind] of order.entries()) {
    const umzug = zeroDowntime({ knex, cwd: project(n), logger: quiet, backfill: kind === 'off' ? { canary: false } : {} });
    if (kind === 'off') umzug.monitor.suspendCanary();
    const started = performance.now();
    await umzug.up();
    const ms = performance.now() - started;
    times[kind].push(ms);
    console.log(`${kind.padEnd(8)} t${n}: ${fmt(ms / 1000)} s`);
  }
  const steal = stolenSince(from);
  const med = (xs: number[]) => percentile(xs, 50);
  console.log(
    `renameColumn expand, ${ROWS} rows, no load, ${PAIRS} ABBA pairs, CPU steal ${steal}: ` +
      `median defaults ${fmt(med(times.defaults) / 1000)} s, canary off ${fmt(med(times.off) / 1000)} s, defaults ÷ off ${fmt(med(times.defaults) / med(times.off))}`,
  );
  await knex.destroy();
  await c.end();
  await dropBenchDatabase(dbName);
}

await main();

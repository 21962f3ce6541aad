/**
 * mergeTables' emergency rollback vs its way forward (issue 13 item 5), side by side in one run:
 *
 *   npx tsx bench/merge-undo.ts --rows 1m [--load] [--canary on|off] [--changed 1]
 *
 * Two identical pairs of tables (`aN` with --rows rows, `bN` with half as many), each merged into `mN` by its own
 * project. "forward" is the expand (its copy backfill of a LEFT JOIN b into m), "undo" the `down` of the contract:
 * a and b come back from the archive and are re-synced from m in keyset batches. Between the contract and the undo
 * the new version changes --changed % of m's rows and deletes a tenth as many, which the undo must carry back.
 * Order: forward(1), contract(1), forward(2), contract(2), undo(2), undo(1): each kind is timed once right after the
 * other, so neither gains from going first. --load runs pgbench (2 clients, 300 tps, pgbench tables in the same
 * database) throughout. It prints the host's CPU steal over the timed part.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory from 'knex';
import { zeroDowntime } from '../lib/index.js';
import { benchArg, client, cpuTimes, dropBenchDatabase, fmt, freshBenchDatabase, parseSize, percentile, startPgbenchLoad, stolenSince } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const LIB_INDEX = path.resolve(here, '../lib/index.ts');
const arg = benchArg;
const ROWS = parseSize(arg('rows') ?? '200k');
const LOAD = process.argv.includes('--load');
const CANARY = (arg('canary') ?? 'on') === 'on';
const CHANGED = Number(arg('changed') ?? '1');

function project(n: number): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `zd-bench-merge-${n}-`));
  mkdirSync(path.join(dir, 'migrations'));
  writeFileSync(
    path.join(dir, 'migrations', `001.merge-${n}.ts`),
    `import { defineMigration, mergeTables } from ${JSON.stringify(LIB_INDEX)};\nexport default defineMigration({ changes: [mergeTables({ from: ['a${n}', 'b${n}'], into: 'm${n}', key: ['id'] })] });\n`,
  );
  return dir;
}

async function main(): Promise<void> {
  const dbName = `zd_bench_merge_${process.pid}`;
  const url = await freshBenchDatabase(dbName);
  const c = await client(url);
  for (const n of [1, 2]) {
    await c.query(`CREATE TABLE a${n} (id bigint PRIMARY KEY, name text, email text, pad text)`);
    await c.query(`CREATE TABLE b${n} (id bigint PRIMARY KEY, pref text, score int)`);
    await c.query(`INSERT INTO a${n} SELECT g, 'name-' || g, 'u' || g || '@example.com', repeat('x', 40) FROM generate_series(1, ${ROWS}) g`);
    await c.query(`INSERT INTO b${n} SELECT g * 2, 'pref-' || g, g % 100 FROM generate_series(1, ${Math.floor(ROWS / 2)}) g`);
    await c.query(`VACUUM ANALYZE a${n}, b${n}`);
  }
  const load = LOAD ? await startPgbenchLoad(dbName) : null;
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 8 } });
  const quiet = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };
  const umzugs = [1, 2].map((n) => zeroDowntime({ knex, cwd: project(n), contract: { after: 0 }, logger: quiet, backfill: CANARY ? {} : { canary: false } }));
  if (!CANARY) for (const u of umzugs) u.monitor.suspendCanary();
  // Batches and the sizes the sizer chose, per pair and phase: why a phase took what it took.
  const batches = new Map<string, { n: number; sizes: number[] }>();
  umzugs.forEach((u, i) =>
    u.engine.subscribe((e) => {
      if (e.type !== 'backfill') return;
      const k = `${i + 1} ${e.progress.phase}`;
      const b = batches.get(k) ?? { n: 0, sizes: [] };
      batches.set(k, { n: e.progress.batches, sizes: e.progress.batchSize ? [...b.sizes, e.progress.batchSize] : b.sizes });
    }),
  );
  const times: Record<'forward' | 'undo', number[]> = { forward: [], undo: [] };
  const timed = async (kind: 'forward' | 'undo', n: number, f: () => Promise<unknown>) => {
    const started = performance.now();
    await f();
    const ms = performance.now() - started;
    times[kind].push(ms);
    console.log(`${kind} ${n}: ${fmt(ms / 1000)} s (${Math.round(ROWS / (ms / 1000))} rows of a/s)`);
  };
  // What the new version does while the old tables sit in the archive: the undo must carry it back.
  const changeWhileContracted = async (n: number) => {
    const every = Math.max(1, Math.round(100 / CHANGED));
    await c.query(`UPDATE m${n} SET name = name || '!', pref = coalesce(pref, 'p') || '!' WHERE id % ${every} = 0`);
    await c.query(`DELETE FROM m${n} WHERE id % ${every * 10} = 1`);
  };
  const from = cpuTimes();
  await timed('forward', 1, () => umzugs[0]!.up());
  await umzugs[0]!.up();
  await timed('forward', 2, () => umzugs[1]!.up());
  await umzugs[1]!.up();
  await changeWhileContracted(1);
  await changeWhileContracted(2);
  await timed('undo', 2, () => umzugs[1]!.down());
  await timed('undo', 1, () => umzugs[0]!.down());
  const steal = stolenSince(from);
  // The undo must have carried every change back: m's rows and a LEFT JOIN b agree.
  for (const n of [1, 2]) {
    const r = await c.query<{ n: string }>(
      `WITH o AS (SELECT id, name, email, pad, pref, score FROM a${n} LEFT JOIN b${n} USING (id)), m AS (SELECT id, name, email, pad, pref, score FROM m${n})
       SELECT ((SELECT count(*) FROM (SELECT * FROM o EXCEPT SELECT * FROM m) d) + (SELECT count(*) FROM (SELECT * FROM m EXCEPT SELECT * FROM o) d))::text AS n`,
    );
    if (r.rows[0]!.n !== '0') throw new Error(`after the undo, ${r.rows[0]!.n} rows of a${n} ⟕ b${n} disagree with m${n}`);
  }
  for (const [k, v] of batches) console.log(`pair ${k}: ${v.n} batches, sizes p10 ${percentile(v.sizes, 10)} p50 ${percentile(v.sizes, 50)} p90 ${percentile(v.sizes, 90)}`);
  const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
  console.log(
    `mergeTables, rows ${ROWS} (+${Math.floor(ROWS / 2)}), ${CHANGED} % changed, load ${LOAD ? 'pgbench -c 2 -R 300' : 'none'}, canary ${CANARY ? 'on' : 'off'}, CPU steal ${steal}: ` +
      `forward ${times.forward.map((x) => fmt(x / 1000)).join(' / ')} s, undo ${times.undo.map((x) => fmt(x / 1000)).join(' / ')} s, undo ÷ forward ${fmt(mean(times.undo) / mean(times.forward))}`,
  );
  load?.kill('SIGTERM');
  await Promise.all(umzugs.map((u) => u.close()));
  await knex.destroy();
  await c.end();
  await dropBenchDatabase(dbName);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});

// Backfill benchmark: prints ratios measured side by side in one run (not part of `npm test`).
//   npx tsx bench/backfill.ts [--sizes 1m,10m] [--canary-seconds 60] [--canary-only] [--keep]
// For each size: backfill rows/s ÷ single-UPDATE rows/s on identical tables, canary p99 during a backfill ÷ its
// baseline with concurrent writers, single-row write cost with the two-way sync trigger ÷ without, and the backfill
// process's peak RSS (largest size ÷ smallest).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import knexFactory from 'knex';
import type pg from 'pg';
import { Db } from '../lib/engine/db.js';
import { StateStore } from '../lib/engine/state.js';
import { DEFAULT_LOCK_SAFETY } from '../lib/engine/executor.js';
import { runKeysetBackfill, DEFAULT_BACKFILL, BackfillInterrupted } from '../lib/backfill/keyset.js';
import { createTwoWaySync } from '../lib/postgres/triggers.js';
import { client, dropBenchDatabase, fmt, freshBenchDatabase, parseSize, percentile } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const EXPR = `a || '-' || b`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface SizeResult {
  rows: number;
  singleRowsPerSec: number;
  backfillRowsPerSec: number;
  backfillBatches: number;
  maxRssKb: number;
  canaryBaselineP99: number;
  canaryDuringP99: number;
  canaryAfterP99: number;
  canaryRowsPerSec: number;
  writerOps: number;
  triggerRatio: number;
}

async function createTable(c: pg.Client, name: string, rows: number): Promise<void> {
  await c.query(`CREATE TABLE ${name} (id bigint PRIMARY KEY, a text NOT NULL, b int NOT NULL, c text, c2 text)`);
  // Filled in slices so that a 10M-row load does not need one giant transaction's worth of memory.
  const slice = 1_000_000;
  for (let lo = 1; lo <= rows; lo += slice) {
    await c.query(`INSERT INTO ${name} (id, a, b) SELECT g, md5(g::text), g % 1000 FROM generate_series($1::bigint, $2::bigint) g`, [lo, Math.min(rows, lo + slice - 1)]);
  }
  await c.query(`VACUUM ANALYZE ${name}`);
}

function runChild(url: string, table: string, column: string, options: object): Promise<{ rows: number; ms: number; maxRssKb: number; batches: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'backfill-child.ts'), url, table, column, EXPR, JSON.stringify(options)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`backfill child exited ${code}: ${out}`))));
  });
}

/** Application-like load: single-row updates and inserts in a loop with 1 ms think time. */
function startWriters(url: string, table: string, rows: number, n: number): { stop: () => Promise<number> } {
  let running = true;
  let ops = 0;
  const loops = Array.from({ length: n }, async (_x, w) => {
    const c = await client(url, `zd-bench-writer-${w}`);
    let next = rows + 1 + w * 10_000_000;
    while (running) {
      if (Math.random() < 0.8) await c.query(`UPDATE ${table} SET b = b + 1 WHERE id = $1`, [1 + Math.floor(Math.random() * rows)]);
      else await c.query(`INSERT INTO ${table} (id, a, b) VALUES ($1::bigint, md5($1::text), 1)`, [next++]);
      ops++;
      await sleep(1);
    }
    await c.end();
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return ops;
    },
  };
}

/** The same canary query the engine uses, timed independently of it by the benchmark. */
function startProbe(url: string, table: string, rows: number): { samples: number[]; stop: () => Promise<void> } {
  const samples: number[] = [];
  let running = true;
  const loop = (async () => {
    const c = await client(url, 'zd-bench-probe');
    while (running) {
      const t0 = performance.now();
      await c.query(`SELECT * FROM ${table} WHERE (id) = (CAST($1 AS bigint))`, [String(1 + Math.floor(Math.random() * rows))]);
      samples.push(performance.now() - t0);
      await sleep(10);
    }
    await c.end();
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

async function timedUpdates(c: pg.Client, table: string, rows: number, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await c.query(`UPDATE ${table} SET a = md5(random()::text) WHERE id = $1`, [1 + Math.floor(Math.random() * rows)]);
  return performance.now() - t0;
}

async function benchSize(rows: number, canarySeconds: number, canaryOnly: boolean): Promise<SizeResult> {
  const url = await freshBenchDatabase(`zd_bench_${rows}`);
  const c = await client(url);
  const log = (s: string) => process.stdout.write(`[${rows.toLocaleString('en')}] ${s}\n`);
  try {
    log('loading two identical tables…');
    await createTable(c, 't_single', rows);
    await createTable(c, 't_backfill', rows);
    await c.query('CHECKPOINT');

    let t0 = performance.now();
    let singleRowsPerSec = NaN;
    let backfillRowsPerSec = NaN;
    let bf = { rows: 0, ms: 0, maxRssKb: NaN, batches: 0 };
    if (!canaryOnly) {
      log('single UPDATE…');
      const single = await c.query(`UPDATE t_single SET c = ${EXPR} WHERE c IS DISTINCT FROM ${EXPR}`);
      const singleMs = performance.now() - t0;
      singleRowsPerSec = (single.rowCount ?? 0) / (singleMs / 1000);
      await c.query('CHECKPOINT');

      log('backfill (separate process, canary off: engine speed)…');
      bf = await runChild(url, 't_backfill', 'c', { canary: false });
      backfillRowsPerSec = bf.rows / (bf.ms / 1000);
      await c.query('CHECKPOINT');
    }

    log(`backfill under concurrent writers, canary budget 1.1× (at most ${canarySeconds} s)…`);
    const writers = startWriters(url, 't_backfill', rows, 2);
    const probe = startProbe(url, 't_backfill', rows);
    await sleep(5000);
    const baseline = [...probe.samples];
    probe.samples.length = 0;
    const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 10 } });
    const db = new Db(knex);
    t0 = performance.now();
    // A budget this tight makes the backfill pause a lot; the phase is cut after canarySeconds (progress is kept).
    const cut = new AbortController();
    const timer = setTimeout(() => cut.abort(), canarySeconds * 1000);
    let canaryRows = 0;
    await runKeysetBackfill({
      db,
      state: new StateStore(db, 'zero_downtime'),
      key: { migration: 'bench-canary', changeIndex: 0, phase: 'expand' },
      spec: { table: { schema: 'public', name: 't_backfill' }, set: [{ column: 'c2', expression: EXPR }] },
      keys: [{ name: 'id', type: 'bigint' }],
      totalEstimate: rows,
      options: { ...DEFAULT_BACKFILL, canary: { budget: 1.1, slackMs: 0.2 } },
      lock: DEFAULT_LOCK_SAFETY,
      signal: cut.signal,
      onProgress: (pr) => (canaryRows = pr.rowsDone),
    }).catch((e: unknown) => {
      if (!(e instanceof BackfillInterrupted)) throw e;
    });
    clearTimeout(timer);
    const canaryMs = performance.now() - t0;
    const during = [...probe.samples];
    // The machine may be busier or quieter than before the backfill for reasons of its own (it is shared): a second
    // baseline after the backfill, under the same writers, shows how much of the ratio is drift.
    probe.samples.length = 0;
    await sleep(5000);
    const after = [...probe.samples];
    await probe.stop();
    const writerOps = await writers.stop();
    await knex.destroy();

    const ratios: number[] = [NaN, NaN, NaN];
    if (!canaryOnly) ratios.length = 0;
    if (!canaryOnly) log('single-row writes with and without the two-way sync trigger…');
    const fn = 'zd_bench_sync_fn';
    const trg = 'zd_bench_sync_trg';
    if (!canaryOnly) await timedUpdates(c, 't_single', rows, 500); // warm up
    for (let round = 0; round < 3 && !canaryOnly; round++) {
      const without = await timedUpdates(c, 't_single', rows, 3000);
      for (const s of createTwoWaySync({ schema: 'public', name: 't_single' }, fn, trg, { old: 'a', new: 'c' })) await c.query(s.text);
      const withTrigger = await timedUpdates(c, 't_single', rows, 3000);
      await c.query(`DROP TRIGGER ${trg} ON t_single`);
      ratios.push(withTrigger / without);
    }
    ratios.sort((x, y) => x - y);
    return {
      rows,
      singleRowsPerSec,
      backfillRowsPerSec,
      backfillBatches: bf.batches,
      maxRssKb: bf.maxRssKb,
      canaryBaselineP99: percentile(baseline, 99),
      canaryDuringP99: percentile(during, 99),
      canaryAfterP99: percentile(after, 99),
      canaryRowsPerSec: canaryRows / (canaryMs / 1000),
      writerOps,
      triggerRatio: ratios[1]!,
    };
  } finally {
    await c.end();
    if (!process.argv.includes('--keep')) await dropBenchDatabase(`zd_bench_${rows}`);
  }
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { sizes: { type: 'string', default: '1m,10m' }, keep: { type: 'boolean' }, 'canary-seconds': { type: 'string', default: '60' }, 'canary-only': { type: 'boolean' } } });
  const sizes = values.sizes!.split(',').map(parseSize);
  const results: SizeResult[] = [];
  for (const n of sizes) results.push(await benchSize(n, Number(values['canary-seconds']), values['canary-only'] === true));
  const first = results[0]!;
  const out: string[] = ['', 'rows        | backfill÷UPDATE | (backfill rows/s, UPDATE rows/s) | canary p99 during÷before (ms, after) | rows/s under writers | trigger write cost | peak RSS MB'];
  for (const r of results) {
    out.push(
      `${r.rows.toLocaleString('en').padEnd(11)} | ${fmt(r.backfillRowsPerSec / r.singleRowsPerSec).padEnd(15)} | (${Math.round(r.backfillRowsPerSec)}, ${Math.round(r.singleRowsPerSec)})`.padEnd(67) +
        ` | ${fmt(r.canaryDuringP99 / r.canaryBaselineP99)} (${fmt(r.canaryDuringP99, 3)} / ${fmt(r.canaryBaselineP99, 3)}, ${fmt(r.canaryAfterP99, 3)})`.padEnd(40) +
        ` | ${Math.round(r.canaryRowsPerSec)} (${r.writerOps} writer ops)`.padEnd(23) +
        ` | ${fmt(r.triggerRatio)}`.padEnd(20) +
        ` | ${fmt(r.maxRssKb / 1024, 1)}`,
    );
  }
  const last = results[results.length - 1]!;
  out.push('');
  out.push(`goals: backfill÷UPDATE ≥ 0.70 and not falling; canary p99 ratio ≤ 1.10; trigger write cost ≤ 1.5; peak RSS largest÷smallest ≤ 1.2`);
  if (results.length > 1) out.push(`peak RSS ${last.rows.toLocaleString('en')} ÷ ${first.rows.toLocaleString('en')} = ${fmt(last.maxRssKb / first.maxRssKb)}`);
  process.stdout.write(out.join('\n') + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(String((e as Error).stack ?? e) + '\n');
    process.exit(1);
  });
}

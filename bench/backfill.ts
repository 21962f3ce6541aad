// Backfill benchmark: prints ratios measured side by side in one run (not part of `npm test`).
//   npx tsx bench/backfill.ts [--sizes 1m,10m] [--canary-seconds 60] [--canary-budget 1.1] [--window-seconds 10]
//                             [--canary-only | --speed-only] [--keep]
// For each size: backfill rows/s ÷ single-UPDATE rows/s on identical tables, canary p99 during a backfill ÷ its
// baseline with concurrent writers, single-row write cost with the two-way sync trigger ÷ without, and the backfill
// process's peak RSS (largest size ÷ smallest).
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { createTwoWaySync } from '../lib/postgres/triggers.js';
import { canaryPhase, type CanaryPhaseResult } from './canary.js';
import { client, cpuTimes, dropBenchDatabase, fmt, freshBenchDatabase, lastLine, parseSize, spawnBenchScript, stolenSince, runIfMain } from './support.js';

const EXPR = `a || '-' || b`;

interface SizeResult {
  rows: number;
  singleRowsPerSec: number;
  backfillRowsPerSec: number;
  backfillBatches: number;
  maxRssKb: number;
  canary: CanaryPhaseResult | null;
  triggerRatio: number;
}

async function createTable(c: pg.Client, name: string, rows: number): Promise<void> {
  await c.query(`CREATE TABLE ${name} (id bigint PRIMARY KEY, a text NOT NULL, b int NOT NULL, c text, c2 text, c3 text)`);
  // Filled in slices so that a 10M-row load does not need one giant transaction's worth of memory.
  const slice = 1_000_000;
  for (let lo = 1; lo <= rows; lo += slice) {
    await c.query(`INSERT INTO ${name} (id, a, b) SELECT g, md5(g::text), g % 1000 FROM generate_series($1::bigint, $2::bigint) g`, [lo, Math.min(rows, lo + slice - 1)]);
  }
  await c.query(`VACUUM ANALYZE ${name}`);
}

interface ChildResult {
  rows: number;
  ms: number;
  maxRssKb: number;
  batches: number;
  done: boolean;
  baselineP99Ms?: number;
  finalBaselineP99Ms?: number;
}

function runChild(url: string, table: string, column: string, options: object): Promise<ChildResult> {
  const child = spawnBenchScript('backfill-child.ts', [url, table, column, EXPR, JSON.stringify(options)]);
  child.child.stdin!.end();
  return child.exited.then((l) => JSON.parse(lastLine(l)) as ChildResult);
}

async function timedUpdates(c: pg.Client, table: string, rows: number, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await c.query(`UPDATE ${table} SET a = md5(random()::text) WHERE id = $1`, [1 + Math.floor(Math.random() * rows)]);
  return performance.now() - t0;
}

async function benchSize(rows: number, canarySeconds: number, canaryOnly: boolean, speedOnly: boolean, canaryBudget: number, windowMs: number): Promise<SizeResult> {
  const url = await freshBenchDatabase(`zd_bench_${rows}`);
  const c = await client(url);
  const log = (s: string) => process.stdout.write(`[${rows.toLocaleString('en')}] ${s}\n`);
  try {
    log('loading two identical tables…');
    await createTable(c, 't_single', rows);
    await createTable(c, 't_backfill', rows);
    await c.query('CHECKPOINT');

    let singleRowsPerSec = NaN;
    let backfillRowsPerSec = NaN;
    let bf: ChildResult = { rows: 0, ms: 0, maxRssKb: NaN, batches: 0, done: false };
    const pairs: { single: number; backfill: number }[] = [];
    if (!canaryOnly) {
      // ABBA: UPDATE on one table, backfill on its twin, then the other way round on a second column of each (tables
      // that now carry a dead version of every row), so neither side profits from going first or second.
      const single = async (table: string, column: string) => {
        log(`single UPDATE of ${table}.${column}…`);
        const t0 = performance.now();
        const r = await c.query(`UPDATE ${table} SET ${column} = ${EXPR} WHERE ${column} IS DISTINCT FROM ${EXPR}`);
        const rate = (r.rowCount ?? 0) / ((performance.now() - t0) / 1000);
        await c.query('CHECKPOINT');
        return rate;
      };
      const backfill = async (table: string, column: string) => {
        log(`backfill of ${table}.${column} (separate process, canary off: engine speed)…`);
        const r = await runChild(url, table, column, { canary: false });
        await c.query('CHECKPOINT');
        if (!(r.maxRssKb <= bf.maxRssKb)) bf = r; // the larger peak of the two runs
        return r.rows / (r.ms / 1000);
      };
      const speedFrom = cpuTimes();
      const a1 = await single('t_single', 'c');
      const b1 = await backfill('t_backfill', 'c');
      const b2 = await backfill('t_single', 'c2');
      const a2 = await single('t_backfill', 'c2');
      pairs.push({ single: a1, backfill: b1 }, { single: a2, backfill: b2 });
      singleRowsPerSec = Math.sqrt(a1 * a2);
      backfillRowsPerSec = Math.sqrt(b1 * b2);
      log(`  fresh tables: backfill ${Math.round(b1)} ÷ UPDATE ${Math.round(a1)} rows/s = ${fmt(b1 / a1)}; second column: ${Math.round(b2)} ÷ ${Math.round(a2)} = ${fmt(b2 / a2)}`);
      log(`  CPU time stolen by the host during these four runs: ${stolenSince(speedFrom)}`);
    }
    if (speedOnly) return { rows, singleRowsPerSec, backfillRowsPerSec, backfillBatches: bf.batches, maxRssKb: bf.maxRssKb, canary: null, triggerRatio: NaN };

    log(`backfill under concurrent writers, canary budget ${canaryBudget}× (on/off windows of ${windowMs / 1000} s, at most ${canarySeconds} s on)…`);
    const canaryFrom = cpuTimes();
    const canary = await canaryPhase({
      url,
      table: 't_backfill',
      column: 'c3',
      expression: EXPR,
      rows,
      canary: { budget: canaryBudget, slackMs: 0 },
      windowMs,
      maxOnMs: canarySeconds * 1000,
      warmupMs: 30_000,
      log,
    });
    log(`  CPU time stolen by the host during the canary phase: ${stolenSince(canaryFrom)}`);

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
      canary,
      triggerRatio: ratios[1]!,
    };
  } finally {
    await c.end();
    if (!process.argv.includes('--keep')) await dropBenchDatabase(`zd_bench_${rows}`);
  }
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string', default: '1m,10m' },
      keep: { type: 'boolean' },
      'canary-seconds': { type: 'string', default: '60' },
      'canary-only': { type: 'boolean' },
      'speed-only': { type: 'boolean' },
      'canary-budget': { type: 'string', default: '1.1' },
      'window-seconds': { type: 'string', default: '10' },
    },
  });
  const sizes = values.sizes!.split(',').map(parseSize);
  const results: SizeResult[] = [];
  for (const n of sizes) {
    results.push(await benchSize(n, Number(values['canary-seconds']), values['canary-only'] === true, values['speed-only'] === true, Number(values['canary-budget']), Number(values['window-seconds']) * 1000));
  }
  const first = results[0]!;
  const out: string[] = [
    '',
    'rows        | backfill÷UPDATE | (backfill rows/s, UPDATE rows/s) | canary p99 on÷off (ms)       | simple: during÷before (before, after) | rows/s under writers | trigger write cost | peak RSS MB',
  ];
  for (const r of results) {
    const k = r.canary;
    out.push(
      `${r.rows.toLocaleString('en').padEnd(11)} | ${fmt(r.backfillRowsPerSec / r.singleRowsPerSec).padEnd(15)} | (${Math.round(r.backfillRowsPerSec)}, ${Math.round(r.singleRowsPerSec)})`.padEnd(67) +
        (k
          ? ` | ${fmt(k.onP99 / k.offP99)} (${fmt(k.onP99, 3)} / ${fmt(k.offP99, 3)})`.padEnd(31) +
            ` | ${fmt(k.onP99 / k.before)} (${fmt(k.before, 3)}, ${fmt(k.after, 3)})`.padEnd(40) +
            ` | ${Math.round(k.onRowsPerSec)}${k.finished ? ' (done)' : ''}`.padEnd(23)
          : ' | -'.padEnd(31) + ' | -'.padEnd(40) + ' | -'.padEnd(23)) +
        ` | ${fmt(r.triggerRatio)}`.padEnd(20) +
        ` | ${fmt(r.maxRssKb / 1024, 1)}`,
    );
  }
  const last = results[results.length - 1]!;
  out.push('');
  out.push(`goals: backfill÷UPDATE ≥ 0.70 and not falling; canary p99 on÷off ≤ 1.10; trigger write cost ≤ 1.5; peak RSS largest÷smallest ≤ 1.2`);
  if (results.length > 1) out.push(`peak RSS ${last.rows.toLocaleString('en')} ÷ ${first.rows.toLocaleString('en')} = ${fmt(last.maxRssKb / first.maxRssKb)}`);
  process.stdout.write(out.join('\n') + '\n');
}

runIfMain(import.meta.url, main);

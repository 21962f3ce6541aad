// Peer benchmark: our `umzug up` beside pgroll's `pgroll start`, both with their defaults, on the same table.
//
//   PGROLL=/path/to/pgroll npx tsx bench/peer.ts [--sizes 1m[,10m]] [--pairs 2] [--workloads A,B,C]
//        [--traffic none,pgbench] [--baseline-seconds 15] [--rate 300] [--trigger-updates 2000]
//        [--timeout-seconds 1800] [--json] [--keep]
//
// What is timed, on both sides, is one whole command from spawn to exit: the new structure, its triggers and the
// backfill until every row is done. pgroll: `pgroll start <file>` (after an untimed `pgroll init` and `pgroll baseline`
// once per database); its `complete` is timed apart and left out of the ratio, as our contract is (it waits at its
// gate). Ours: `umzug up` of the built package in a user's project folder (tsx for the README's umzug.config.ts and the
// one typed change), which also
// verifies every row after the backfill and creates our state schema on first use; the fixed cost of any umzug
// command (start-up, config and migration loading) is measured apart with `umzug executed` and printed.
//
// Each run gets its own copy of one template database (CREATE DATABASE … TEMPLATE), so each tool starts from the same
// table, file for file; per workload and traffic mode the order is pgroll, ours, ours, pgroll per pair (ABBA).
// Application traffic goes to the base table public.users for both tools: pgroll's versioned schema holds views over
// that table, and its triggers fill the new column for writes through the old schema (public) as through the views.
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  checkWork,
  mustSucceed,
  FROM_SOURCE,
  OURS_OPTIONS,
  ourProject,
  pacerSummary,
  pgrollMigrationFile,
  pgrollVersion,
  preparePgroll,
  runPgroll,
  runUmzug,
  USERS_DDL,
  WORKLOADS,
  type CommandRun,
  type Tool,
  type Workload,
} from './peer-tools.js';
import { describeTraffic, Traffic, type WindowStats } from './peer-traffic.js';
import { buildPackage, client, copyOfTemplate, cpuTimes, dropBenchDatabase, fillUsers, fmt, freshBenchDatabase, parseSize, percentile, stolenSince } from './support.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const geomean = (xs: readonly number[]) => (xs.length && xs.every((x) => x > 0) ? Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length) : NaN);
const DB_PREFIX = 'zdt_peer_';

type TrafficMode = 'none' | 'pgbench';

interface Options {
  readonly sizes: number[];
  readonly pairs: number;
  readonly workloads: Workload[];
  readonly traffic: TrafficMode[];
  readonly baselineMs: number;
  readonly warmupMs: number;
  readonly rate: number;
  readonly clients: number;
  readonly triggerUpdates: number;
  readonly timeoutMs: number;
  readonly json: boolean;
  readonly keep: boolean;
}

interface LatencyRatio {
  readonly before: WindowStats;
  readonly during: WindowStats;
  /** during ÷ before, p99 and p50, reads and writes. */
  readonly readsP99: number;
  readonly writesP99: number;
  readonly readsP50: number;
  readonly writesP50: number;
}

interface RunResult {
  readonly tool: Tool;
  readonly pair: number;
  readonly rows: number;
  readonly wallS: number;
  readonly rowsPerS: number;
  readonly steal: string;
  /** The 1-minute load average when the command ended: steal says nothing of the other work on the same 2 cores. */
  readonly load1: number;
  readonly code: number | null;
  readonly timedOut: boolean;
  /** Rows not as they should be after the expand (0: the tool did its work). */
  readonly mismatches: number;
  readonly latency: LatencyRatio | null;
  readonly trafficErrors: string[];
  /** Single-row UPDATE time with the tool's triggers ÷ with them disabled (median of 3 alternations). */
  readonly triggerCost: number | null;
  /** pgroll only: `pgroll complete` afterwards (not in the ratio). */
  readonly completeS: number | null;
  /** Ours only: the engine's own time for the expand (Umzug's migrated event), and what the pacer printed. */
  readonly expandS: number | null;
  readonly pacer: ReturnType<typeof pacerSummary> | null;
}

interface CellResult {
  readonly workload: Workload['key'];
  readonly traffic: TrafficMode;
  readonly rows: number;
  readonly runs: RunResult[];
}

// ---------------------------------------------------------------------------------------------------------------
// Set-up

/** The binary from $PGROLL, or exit 2 saying how to get one. */
function requirePgroll(): string {
  const bin = process.env.PGROLL;
  try {
    if (!bin) throw new Error('PGROLL is not set');
    accessSync(bin, constants.X_OK);
    return bin;
  } catch (e) {
    process.stderr.write(
      `bench/peer.ts needs pgroll (${(e as Error).message}${bin ? `: ${bin}` : ''}). Get v0.16.2, outside this repository:\n` +
        `  go install github.com/xataio/pgroll@v0.16.2          # → $(go env GOPATH)/bin/pgroll\n` +
        `  or: git clone https://github.com/xataio/pgroll && cd pgroll && git checkout v0.16.2 && go build -o /somewhere/pgroll .\n` +
        `then: PGROLL=/path/to/pgroll npx tsx bench/peer.ts\n`,
    );
    process.exit(2);
  }
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string', default: '1m' },
      pairs: { type: 'string', default: '2' },
      workloads: { type: 'string', default: 'A,B,C' },
      traffic: { type: 'string', default: 'none,pgbench' },
      'baseline-seconds': { type: 'string', default: '15' },
      'warmup-seconds': { type: 'string', default: '3' },
      rate: { type: 'string', default: '300' },
      clients: { type: 'string', default: '2' },
      'trigger-updates': { type: 'string', default: '2000' },
      'timeout-seconds': { type: 'string', default: '1800' },
      json: { type: 'boolean' },
      keep: { type: 'boolean' },
    },
  });
  const keys = values.workloads!.toUpperCase().split(',');
  const workloads = WORKLOADS.filter((w) => keys.includes(w.key));
  if (workloads.length !== keys.length) throw new Error(`--workloads takes A, B and/or C, not ${values.workloads}`);
  const traffic = values.traffic!.split(',') as TrafficMode[];
  if (!traffic.every((t) => t === 'none' || t === 'pgbench')) throw new Error(`--traffic takes none and/or pgbench, not ${values.traffic}`);
  const pairs = Number(values.pairs);
  if (!(Number.isInteger(pairs) && pairs >= 1)) throw new Error(`--pairs must be 1 or more, not ${values.pairs}`);
  return {
    sizes: values.sizes!.split(',').map(parseSize),
    pairs,
    workloads,
    traffic,
    baselineMs: Number(values['baseline-seconds']) * 1000,
    warmupMs: Number(values['warmup-seconds']) * 1000,
    rate: Number(values.rate),
    clients: Number(values.clients),
    triggerUpdates: Number(values['trigger-updates']),
    timeoutMs: Number(values['timeout-seconds']) * 1000,
    json: values.json === true,
    keep: values.keep === true,
  };
}

/** The users table of `rows` rows, once per size, in a template database every run is copied from. */
async function loadTemplate(rows: number): Promise<string> {
  const name = `${DB_PREFIX}tpl_${rows}`;
  const c = await client(await freshBenchDatabase(name));
  try {
    await c.query(USERS_DDL);
    await fillUsers(c, rows);
    const size = await c.query<{ s: string }>(`SELECT pg_size_pretty(pg_table_size('users')) AS s`);
    log(`template ${name}: ${rows.toLocaleString('en')} rows, ${size.rows[0]!.s}`);
  } finally {
    await c.end();
  }
  return name;
}

// ---------------------------------------------------------------------------------------------------------------
// One run

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

/** Single-row UPDATEs with the table's triggers ÷ the same with them disabled, alternated; the median of 3. */
async function triggerCost(c: pg.Client, rows: number, n: number): Promise<number> {
  const updates = async (k: number) => {
    const t0 = performance.now();
    for (let i = 0; i < k; i++) await c.query('UPDATE users SET score = score + 1 WHERE id = $1', [1 + Math.floor(Math.random() * rows)]);
    return performance.now() - t0;
  };
  await updates(Math.min(300, n)); // warm-up
  const ratios: number[] = [];
  for (let round = 0; round < 3; round++) {
    const withTriggers = await updates(n);
    await c.query('ALTER TABLE users DISABLE TRIGGER USER');
    const without = await updates(n);
    await c.query('ALTER TABLE users ENABLE TRIGGER USER');
    ratios.push(withTriggers / without);
  }
  return percentile(ratios, 50);
}

function latencyRatio(before: WindowStats, during: WindowStats): LatencyRatio {
  return {
    before,
    during,
    readsP99: during.reads.p99 / before.reads.p99,
    writesP99: during.writes.p99 / before.writes.p99,
    readsP50: during.reads.p50 / before.reads.p50,
    writesP50: during.writes.p50 / before.writes.p50,
  };
}

/** Runs the tool's command for the workload (timed), with the other steps of the run around it (untimed). */
async function oneRun(o: Options, template: string, rows: number, w: Workload, mode: TrafficMode, tool: Tool, pair: number, pgrollBin: string): Promise<RunResult> {
  const dbName = `${DB_PREFIX}run`;
  const url = await copyOfTemplate(template, dbName);
  const work = mkdtempSync(path.join(os.tmpdir(), `zdt-peer-${tool}-`));
  const project = tool === 'ours' ? ourProject(w) : null;
  let command: () => Promise<CommandRun>;
  if (project === null) {
    await preparePgroll(pgrollBin, url, work);
    const file = pgrollMigrationFile(w, work);
    command = () => runPgroll(pgrollBin, url, ['start', file], o.timeoutMs);
  } else {
    command = () => runUmzug(project, url, ['up'], o.timeoutMs);
  }
  const c = await client(url, 'zdt-peer-bench');
  try {
    // Neither run pays for the dirty pages of the copy or of the set-up.
    await c.query('CHECKPOINT');
    let traffic: Traffic | null = null;
    let baselineFrom = 0;
    if (mode === 'pgbench') {
      traffic = new Traffic({ dbName, rows, rate: o.rate, clients: o.clients, segmentSeconds: 5, dir: path.join(work, 'traffic') });
      traffic.start();
      await sleep(o.warmupMs); // connections, the first plans: not part of either window
      baselineFrom = Date.now();
      await sleep(o.baselineMs);
    }
    const cpu = cpuTimes();
    const toolFrom = Date.now();
    const r = await command();
    const toolTo = Date.now();
    const steal = stolenSince(cpu);
    if (tool === 'pgroll') mustSucceed('pgroll start', r);
    else if (r.code !== 0 && !r.timedOut) throw new Error(`umzug up failed (exit ${r.code}): ${r.lines.slice(-6).join(' | ')}`);
    let latency: LatencyRatio | null = null;
    if (traffic) {
      await traffic.stop();
      latency = latencyRatio(traffic.window(baselineFrom, toolFrom), traffic.window(toolFrom, toolTo));
    }
    const mismatches = r.timedOut ? NaN : await checkWork(c, w, tool);
    const cost = mode === 'none' && o.triggerUpdates > 0 && !r.timedOut ? await triggerCost(c, rows, o.triggerUpdates) : null;
    const complete = tool === 'pgroll' ? mustSucceed('pgroll complete', await runPgroll(pgrollBin, url, ['complete'])) : null;
    return {
      tool,
      pair,
      rows,
      wallS: r.wallMs / 1000,
      rowsPerS: rows / (r.wallMs / 1000),
      steal,
      load1: os.loadavg()[0]!,
      code: r.code,
      timedOut: r.timedOut,
      mismatches,
      latency,
      trafficErrors: traffic?.errors ?? [],
      triggerCost: cost,
      completeS: complete ? complete.wallMs / 1000 : null,
      expandS: tool === 'ours' ? pacerSummary(r).expandSeconds : null,
      pacer: tool === 'ours' ? pacerSummary(r) : null,
    };
  } finally {
    await c.end();
    if (!o.keep) {
      await dropBenchDatabase(dbName);
      for (const d of [work, project]) if (d) rmSync(d, { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reporting

const ms = (x: number) => fmt(x, 1);

function describeRun(r: RunResult): string[] {
  const out = [
    `${r.tool.padEnd(6)} pair ${r.pair}: ${fmt(r.wallS)} s${r.timedOut ? ' (STOPPED at the time limit, not done)' : ''}, ${Math.round(r.rowsPerS).toLocaleString('en')} rows/s, ` +
      `CPU steal ${r.steal}, load ${fmt(r.load1, 1)}, check ${r.mismatches === 0 ? 'ok' : `${r.mismatches} rows wrong`}` +
      (r.completeS !== null ? `; pgroll complete afterwards ${fmt(r.completeS)} s (not in the ratio)` : '') +
      (r.expandS !== null ? `; engine's expand ${fmt(r.expandS)} s` : '') +
      (r.triggerCost !== null ? `; trigger write cost ${fmt(r.triggerCost)}` : ''),
  ];
  if (r.latency) {
    const { before: b, during: d } = r.latency;
    out.push(
      `         reads  p50/p99 ms: before ${ms(b.reads.p50)}/${ms(b.reads.p99)} (n ${b.reads.n}), during ${ms(d.reads.p50)}/${ms(d.reads.p99)} (n ${d.reads.n}): p99 ×${fmt(r.latency.readsP99)}, p50 ×${fmt(r.latency.readsP50)}`,
      `         writes p50/p99 ms: before ${ms(b.writes.p50)}/${ms(b.writes.p99)} (n ${b.writes.n}), during ${ms(d.writes.p50)}/${ms(d.writes.p99)} (n ${d.writes.n}): p99 ×${fmt(r.latency.writesP99)}, p50 ×${fmt(r.latency.writesP50)}` +
        `; from schedule p99 ${ms(b.writes.p99FromSchedule)} → ${ms(d.writes.p99FromSchedule)}`,
    );
  }
  if (r.pacer && r.pacer.paced > 0) out.push(`         pacer: ${r.pacer.paced} lines; first "${r.pacer.first}"; last "${r.pacer.last}"`);
  if (r.pacer?.done) {
    const p = r.pacer;
    const where = p.backfillSeconds !== null ? ` (backfill ${fmt(p.backfillSeconds)} s, then ${fmt(p.afterBackfillSeconds ?? NaN)} s to the end of the expand: verify, mostly)` : '';
    out.push(`         backfill: ${p.done}${where}`);
  }
  for (const e of r.trafficErrors) out.push(`         traffic error: ${e}`);
  return out;
}

interface CellSummary {
  workload: string;
  traffic: TrafficMode;
  rows: number;
  pgrollS: number;
  oursS: number;
  /** ours ÷ pgroll of wall time, geometric means; and each pair's. */
  ratio: number;
  pairRatios: number[];
  latency: Record<Tool, { readsP99: number; writesP99: number; readsP50: number; writesP50: number } | null>;
  triggerCost: Record<Tool, number | null>;
  anyTimedOut: boolean;
  /** Fewer than 100 reads or writes in some run's during window: its "p99" is a maximum of a few, not a p99. */
  fewSamples: Record<Tool, boolean>;
}

function summarize(cell: CellResult): CellSummary {
  const of = (tool: Tool) => cell.runs.filter((r) => r.tool === tool);
  const wall = (rs: RunResult[]) => geomean(rs.map((r) => r.wallS));
  const pairs = [...new Set(cell.runs.map((r) => r.pair))];
  const lat = (tool: Tool) => {
    const rs = of(tool).filter((r) => r.latency);
    if (!rs.length) return null;
    const g = (f: (l: LatencyRatio) => number) => geomean(rs.map((r) => f(r.latency!)));
    return { readsP99: g((l) => l.readsP99), writesP99: g((l) => l.writesP99), readsP50: g((l) => l.readsP50), writesP50: g((l) => l.writesP50) };
  };
  const cost = (tool: Tool) => {
    const xs = of(tool).flatMap((r) => (r.triggerCost === null ? [] : [r.triggerCost]));
    return xs.length ? geomean(xs) : null;
  };
  return {
    workload: cell.workload,
    traffic: cell.traffic,
    rows: cell.rows,
    pgrollS: wall(of('pgroll')),
    oursS: wall(of('ours')),
    ratio: wall(of('ours')) / wall(of('pgroll')),
    pairRatios: pairs.map((p) => wall(of('ours').filter((r) => r.pair === p)) / wall(of('pgroll').filter((r) => r.pair === p))),
    latency: { pgroll: lat('pgroll'), ours: lat('ours') },
    triggerCost: { pgroll: cost('pgroll'), ours: cost('ours') },
    anyTimedOut: cell.runs.some((r) => r.timedOut),
    fewSamples: {
      pgroll: of('pgroll').some((r) => r.latency !== null && Math.min(r.latency.during.reads.n, r.latency.during.writes.n) < 100),
      ours: of('ours').some((r) => r.latency !== null && Math.min(r.latency.during.reads.n, r.latency.during.writes.n) < 100),
    },
  };
}

function summaryTable(cells: CellSummary[]): string[] {
  const out = [
    '',
    'workload | traffic | rows | pgroll s (rows/s) | ours s (rows/s) | ours ÷ pgroll (pairs) | reads p99 during÷before pgroll / ours | writes p99 during÷before pgroll / ours | trigger write cost pgroll / ours',
  ];
  for (const s of cells) {
    const l = (t: Tool, k: 'readsP99' | 'writesP99') => (s.latency[t] ? `${fmt(s.latency[t]![k])}${s.fewSamples[t] ? '†' : ''}` : '-');
    const tc = (t: Tool) => (s.triggerCost[t] === null ? '-' : fmt(s.triggerCost[t]!));
    out.push(
      [
        s.workload,
        s.traffic,
        s.rows.toLocaleString('en'),
        `${fmt(s.pgrollS)} (${Math.round(s.rows / s.pgrollS).toLocaleString('en')})`,
        `${fmt(s.oursS)} (${Math.round(s.rows / s.oursS).toLocaleString('en')})${s.anyTimedOut ? ' ≥, stopped' : ''}`,
        `${fmt(s.ratio)} (${s.pairRatios.map((x) => fmt(x)).join(', ')})`,
        `${l('pgroll', 'readsP99')} / ${l('ours', 'readsP99')}`,
        `${l('pgroll', 'writesP99')} / ${l('ours', 'writesP99')}`,
        `${tc('pgroll')} / ${tc('ours')}`,
      ].join(' | '),
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const pgrollBin = requirePgroll();
  const o = parseOptions(process.argv.slice(2));
  if (!FROM_SOURCE) {
    log('building the package (npm run build): ours runs as installed, from dist/');
    buildPackage();
  }
  const version = await pgrollVersion(pgrollBin);
  const startHelp = (await runPgroll(pgrollBin, 'postgres://unused', ['start', '--help'])).lines;
  // cobra prints no "(default …)" for a zero value: the batch delay's default is 0s (pkg/backfill/config.go).
  const defaults = startHelp
    .filter((l) => /backfill-batch|lock-timeout/.test(l))
    .map((l) => l.trim().replace(/\s{2,}/g, ' '))
    .map((l) => (l.includes('(default') ? l : `${l} (default 0s)`));
  const header = [
    `pgroll: ${pgrollBin}, ${version}${process.env.PGROLL_VERSION ? ` (built from ${process.env.PGROLL_VERSION})` : ''}; its defaults: ${defaults.join('; ')}`,
    `ours: umzug up with ${OURS_OPTIONS ? `PEER_OURS_OPTIONS ${JSON.stringify(OURS_OPTIONS)}, every other option at its default` : 'every option at its default (umzug.config.ts: knex and migrations only)'}, ${FROM_SOURCE ? 'lib/ through tsx (PEER_FROM_SOURCE)' : 'the built package (dist/)'}`,
    `timed: pgroll start <file> ↔ umzug up (whole commands: new structure, triggers, backfill; ours also verifies); order per pair: pgroll, ours, ours, pgroll`,
    `traffic: none, or ${describeTraffic({ rate: o.rate, clients: o.clients, segmentSeconds: 5 })}; before = ${o.baselineMs / 1000} s just before the command, during = the command`,
  ];
  for (const l of header) log(l);

  const cells: CellResult[] = [];
  let fixedCostS = NaN;
  for (const rows of o.sizes) {
    const template = await loadTemplate(rows);
    try {
      // The fixed cost of any umzug command here (node, tsx, the config and the migration loaded, the pool closed).
      // In an empty database of its own, so that the template stays untouched.
      const probeProject = ourProject(o.workloads[0]!);
      const probe = await runUmzug(probeProject, await freshBenchDatabase(`${DB_PREFIX}probe`), ['executed']);
      await dropBenchDatabase(`${DB_PREFIX}probe`);
      rmSync(probeProject, { recursive: true, force: true });
      fixedCostS = probe.wallMs / 1000;
      log(`fixed cost of one umzug command (umzug executed): ${fmt(fixedCostS)} s`);
      for (const w of o.workloads) {
        for (const mode of o.traffic) {
          const cell: CellResult = { workload: w.key, traffic: mode, rows, runs: [] };
          log(`\n[${w.key} ${rows.toLocaleString('en')} rows, traffic ${mode}] ${w.title}${w.note ? ` (${w.note})` : ''}`);
          for (let pair = 1; pair <= o.pairs; pair++) {
            for (const tool of ['pgroll', 'ours', 'ours', 'pgroll'] as const) {
              const r = await oneRun(o, template, rows, w, mode, tool, pair, pgrollBin);
              cell.runs.push(r);
              for (const line of describeRun(r)) log(`  ${line}`);
            }
          }
          cells.push(cell);
          const s = summarize(cell);
          log(`  → ours ÷ pgroll ${fmt(s.ratio)} (geometric means ${fmt(s.oursS)} s / ${fmt(s.pgrollS)} s; pairs ${s.pairRatios.map((x) => fmt(x)).join(', ')})`);
        }
      }
    } finally {
      if (!o.keep) await dropBenchDatabase(template);
    }
  }
  const summaries = cells.map(summarize);
  const footnotes = [
    '',
    `fixed cost of one umzug command: ${fmt(fixedCostS)} s (in every "ours" time)`,
    '† fewer than 100 reads or writes during the command in some run: that "p99" is nearly the maximum of a handful',
    'reads/writes p99 during÷before: service time (start to end of each transaction), geometric mean over the runs; trigger write cost: single-row UPDATEs with the tool\'s triggers ÷ with them disabled, after the expand, no traffic',
  ];
  process.stdout.write([...header, ...summaryTable(summaries), ...footnotes].join('\n') + '\n');
  if (o.json) {
    process.stdout.write(
      JSON.stringify({
        pgroll: { bin: pgrollBin, version, label: process.env.PGROLL_VERSION ?? null, defaults },
        pairs: o.pairs,
        rate: o.rate,
        fixedCostS,
        cells: summaries,
        runs: cells.flatMap((c) => c.runs.map((r) => ({ workload: c.workload, traffic: c.traffic, ...r, latency: r.latency && { readsP99: r.latency.readsP99, writesP99: r.latency.writesP99, readsP50: r.latency.readsP50, writesP50: r.latency.writesP50 } }))),
      }) + '\n',
    );
  }
}

main().catch((e: unknown) => {
  process.stderr.write(String((e as Error).stack ?? e) + '\n');
  process.exit(1);
});

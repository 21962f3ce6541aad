// Scale benchmark: our derived-column migration (workload A of bench/peer.ts, `full_name = first_name || ' ' ||
// last_name` on `users`) end to end at 1M → 100M rows, on a plain table and on one partitioned by RANGE (id), to read
// off whether backfill rows/s, verify time per row and the migrating process's peak RSS stay flat as the table grows.
//
//   npx tsx bench/scale.ts [--sizes 1m,10m] [--shapes plain,partitioned] [--partitions 10] [--timeout-minutes 0]
//                          [--plan] [--keep-run] [--json]
//
// Each (size, shape) is loaded once into a database of its own (zdt_scale_plain_<rows>, zdt_scale_part<N>_<rows>)
// and kept: a later invocation reuses it when its load finished (a marker written last) and it still holds exactly
// that many rows.
// Every run migrates a fresh copy of it (zdt_scale_run, CREATE DATABASE … TEMPLATE, as bench/peer.ts does) and drops
// the copy afterwards, which resets the new column, the triggers and the tool's state schema at once. Resetting in
// place (DROP COLUMN, drop the state) would not give the next run the same table: every row would keep a dead version
// until a VACUUM, after which each page is half empty and the next backfill's updates can stay on their page (HOT,
// no index entry), and the dropped column stays in every row until the table is rewritten.
//
// `umzug up` runs the way bench/peer.ts runs it (the built package in a throwaway project, every option at its
// default; PEER_FROM_SOURCE=1 runs lib/ through tsx instead). Its peak RSS is reported by the process itself, at exit,
// through a module preloaded with NODE_OPTIONS.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { checkWork, FROM_SOURCE, OURS_OPTIONS, ourProject, pacerSummary, partitionedUsersDdl, runUmzug, USERS_DDL, WORKLOADS, type CommandRun, type Workload } from './peer-tools.js';
import { buildPackage, client, copyOfTemplate, cpuTimes, dropBenchDatabase, fillUsers, fmt, freshBenchDatabase, parseSize, runIfMain, stolenSince, urlFor } from './support.js';

const PREFIX = 'zdt_scale_';
const RUN_DB = `${PREFIX}run`;
const STATE_SCHEMA = 'zero_downtime';
const WORKLOAD: Workload = WORKLOADS.find((w) => w.key === 'A')!;

/**
 * Disk estimates per row, measured at 1M rows on this machine (PostgreSQL 15, default configuration, 2026-12-07):
 * `loaded` is the loaded database (pg_database_size ÷ rows: the table, its primary key and the catalog); `run` is the
 * copy of it after the migration (every row rewritten once, the old versions not vacuumed yet). Used only to refuse
 * up front a run the disk cannot hold; the figures actually measured are printed beside them.
 */
const BYTES_PER_ROW: Record<Shape, { loaded: number; run: number }> = {
  plain: { loaded: 157, run: 330 },
  partitioned: { loaded: 158, run: 330 },
};

type Shape = 'plain' | 'partitioned';
const SHAPES: readonly Shape[] = ['plain', 'partitioned'];

interface Options {
  readonly sizes: number[];
  readonly shapes: Shape[];
  readonly partitions: number;
  readonly timeoutMs: number | undefined;
  readonly planOnly: boolean;
  readonly keepRun: boolean;
  readonly json: boolean;
}

interface Target {
  readonly rows: number;
  readonly shape: Shape;
  readonly db: string;
  /** Written as the table's comment once its load has finished: a load cut short is never reused. */
  readonly marker: string;
}

interface Loaded {
  readonly target: Target;
  readonly reused: boolean;
  /** Wall time of the load (DDL, insert, VACUUM FREEZE ANALYZE); null when reused. */
  readonly loadS: number | null;
  /** The inserts alone (the VACUUM after them is the rest of loadS). */
  readonly insertS: number | null;
  readonly loadSteal: string | null;
  /** The table: pg_total_relation_size summed over it and its partitions (heap, TOAST, primary key). */
  readonly tableBytes: number;
  readonly dbBytes: number;
}

interface RunResult {
  readonly shape: Shape;
  readonly rows: number;
  readonly copyS: number;
  /** `umzug up` from spawn to exit. */
  readonly wallS: number;
  /** The engine's own expand time (Umzug's migrated event). */
  readonly expandS: number | null;
  /** The backfill from its "starting" line to its "done" line (its state's timestamps when a line is missing). */
  readonly backfillS: number;
  readonly backfillRows: number;
  readonly backfillBatches: number;
  readonly rowsPerS: number;
  /** From the end of the backfill (its state's last update, or a later step) to the verify's recorded end. */
  readonly verifyS: number;
  readonly verifiedRows: number;
  readonly maxRssKb: number | null;
  readonly steal: string;
  readonly load1: number;
  readonly mismatches: number;
  readonly tableBytesBefore: number;
  readonly tableBytesAfter: number;
  readonly dbBytesAfter: number;
  readonly pacerFirst: string | null;
  readonly pacerLines: number;
  readonly doneLine: string | null;
}

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

const mb = (bytes: number) => fmt(bytes / 1e6, 0);
const gb = (bytes: number) => fmt(bytes / 1e9, 1);
const count = (n: number) => n.toLocaleString('en');

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string', default: '1m,10m' },
      shapes: { type: 'string', default: 'plain,partitioned' },
      partitions: { type: 'string', default: '10' },
      'timeout-minutes': { type: 'string', default: '0' },
      plan: { type: 'boolean' },
      'keep-run': { type: 'boolean' },
      json: { type: 'boolean' },
    },
  });
  const shapes = values.shapes!.split(',').map((s) => s.trim());
  const bad = shapes.filter((s) => !(SHAPES as readonly string[]).includes(s));
  if (bad.length || !shapes.length) throw new Error(`--shapes takes plain and/or partitioned, not ${values.shapes}`);
  const partitions = Number(values.partitions);
  if (!(Number.isInteger(partitions) && partitions >= 2)) throw new Error(`--partitions must be 2 or more, not ${values.partitions}`);
  // Ascending, so that the smallest size of each shape, the base of its ratios, is run first.
  const sizes = [...new Set(values.sizes!.split(',').map(parseSize))].sort((a, b) => a - b);
  if (sizes.some((n) => !(n >= 1))) throw new Error(`--sizes must all be at least 1 row, not ${values.sizes}`);
  const minutes = Number(values['timeout-minutes']);
  return {
    sizes,
    shapes: SHAPES.filter((s) => shapes.includes(s)),
    partitions,
    timeoutMs: minutes > 0 ? minutes * 60_000 : undefined,
    planOnly: values.plan === true,
    keepRun: values['keep-run'] === true,
    json: values.json === true,
  };
}

function targetOf(rows: number, shape: Shape, partitions: number): Target {
  const label = shape === 'plain' ? 'plain' : `part${partitions}`;
  return {
    rows,
    shape,
    db: `${PREFIX}${label}_${rows}`,
    marker: `zdt_scale: ${rows} rows, ${shape === 'plain' ? 'plain' : `partitioned by range (id) into ${partitions}`}, loaded`,
  };
}

/** USERS_DDL as is, or the same columns partitioned by RANGE (id) into equal ranges (the last one open-ended). */
function tableDdl(t: Target, partitions: number): string[] {
  return t.shape === 'plain' ? [USERS_DDL] : partitionedUsersDdl(t.rows, partitions);
}

/**
 * The table's bytes on disk. A partitioned table has no storage of its own, so its partitions are added; and
 * pg_partition_tree lists nothing for a table that is not partitioned, so the table itself is counted apart.
 */
async function tableBytes(c: pg.Client): Promise<number> {
  const r = await c.query<{ b: string }>(
    `SELECT (pg_total_relation_size('public.users') +
             coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('public.users') WHERE relid <> 'public.users'::regclass), 0))::bigint AS b`,
  );
  return Number(r.rows[0]!.b);
}

async function databaseBytes(c: pg.Client): Promise<number> {
  const r = await c.query<{ b: string }>('SELECT pg_database_size(current_database())::bigint AS b');
  return Number(r.rows[0]!.b);
}

// ---------------------------------------------------------------------------------------------------------------
// Disk

interface Existing {
  readonly db: string;
  readonly bytes: number;
}

async function existingDatabases(admin: pg.Client): Promise<Existing[]> {
  const r = await admin.query<{ datname: string; b: string }>(
    `SELECT datname, pg_database_size(datname)::bigint AS b FROM pg_database WHERE datname LIKE $1 ORDER BY datname`,
    [`${PREFIX.replace(/_/g, '\\_')}%`],
  );
  return r.rows.map((x) => ({ db: x.datname, bytes: Number(x.b) }));
}

/** Whether the target's database holds a finished load of the right shape (its row count is checked when used). */
async function markerMatches(t: Target): Promise<boolean> {
  const c = await client(urlFor(t.db), 'zdt-scale-bench');
  try {
    const r = await c.query<{ m: string | null }>(`SELECT obj_description(to_regclass('public.users'), 'pg_class') AS m`);
    return r.rows[0]?.m === t.marker;
  } finally {
    await c.end();
  }
}

/** Free bytes where the server keeps its data, as `df` reports them; null when that cannot be read from here. */
function freeBytes(dir: string): number | null {
  const r = spawnSync('df', ['-B1', '--output=avail', dir], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const n = Number(r.stdout.trim().split('\n').pop());
  return Number.isFinite(n) ? n : null;
}

function settingBytes(value: string): number {
  const m = /^(\d+)\s*(kB|MB|GB|TB)?$/.exec(value.trim());
  if (!m) return NaN;
  const unit = { kB: 2 ** 10, MB: 2 ** 20, GB: 2 ** 30, TB: 2 ** 40 }[m[2] ?? 'kB'] ?? 1;
  return Number(m[1]) * unit;
}

interface DiskPlan {
  readonly lines: string[];
  readonly enough: boolean;
}

/**
 * What the requested runs need on top of what is there: the loads not yet done, the largest run's copy as it is after
 * its migration (only one copy exists at a time, and by then every requested table is loaded), and room for the WAL.
 */
async function diskPlan(o: Options, targets: readonly Target[], reusable: ReadonlySet<string>, existing: readonly Existing[], admin: pg.Client): Promise<DiskPlan> {
  const dataDir = (await admin.query<{ data_directory: string }>('SHOW data_directory')).rows[0]!.data_directory;
  const maxWal = settingBytes((await admin.query<{ max_wal_size: string }>('SHOW max_wal_size')).rows[0]!.max_wal_size);
  const loads = targets.filter((t) => !reusable.has(t.db));
  const loadBytes = loads.reduce((a, t) => a + t.rows * BYTES_PER_ROW[t.shape].loaded, 0);
  const runBytes = Math.max(...targets.map((t) => t.rows * BYTES_PER_ROW[t.shape].run));
  // The backfill writes WAL as fast as it rewrites rows; checkpoints recycle it at about max_wal_size, which a write
  // burst can overshoot.
  const walBytes = 2 * (Number.isFinite(maxWal) ? maxWal : 2 ** 30);
  // A stale run copy (an earlier invocation cut short) and a target that is reloaded are dropped first.
  const freed = existing.filter((e) => e.db === RUN_DB || loads.some((t) => t.db === e.db)).reduce((a, e) => a + e.bytes, 0);
  const need = loadBytes + runBytes + walBytes - freed;
  const free = freeBytes(dataDir);
  const lines = [
    `disk (estimates from ${Object.entries(BYTES_PER_ROW).map(([s, b]) => `${s} ${b.loaded} B/row loaded, ${b.run} B/row after a run`).join('; ')}, measured at 1M rows):`,
    `  loads to do: ${loads.length ? loads.map((t) => `${t.db} ≈ ${gb(t.rows * BYTES_PER_ROW[t.shape].loaded)} GB`).join(', ') : 'none (all reused)'}`,
    `  largest run's copy after its migration ≈ ${gb(runBytes)} GB; WAL room ${gb(walBytes)} GB (2 × max_wal_size)${freed > 0 ? `; freed first ${gb(freed)} GB` : ''}`,
    `  needed ≈ ${gb(need)} GB; free on ${dataDir}: ${free === null ? 'unknown (df cannot read it from here: the check is skipped)' : `${gb(free)} GB (df)`}`,
  ];
  if (existing.length) lines.push(`  already there: ${existing.map((e) => `${e.db} ${gb(e.bytes)} GB${reusable.has(e.db) ? ' (reused)' : ''}`).join(', ')}`);
  return { lines, enough: free === null || free >= need };
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

/** The target's table, reused when its load finished and it has exactly `rows` rows, else (re)loaded. */
async function ensureLoaded(t: Target, partitions: number, markerOk: boolean): Promise<Loaded> {
  const tag = `[${t.shape} ${count(t.rows)}]`;
  if (markerOk) {
    const c = await client(urlFor(t.db), 'zdt-scale-bench');
    try {
      const t0 = performance.now();
      const n = Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM public.users')).rows[0]!.n);
      const countS = (performance.now() - t0) / 1000;
      if (n === t.rows) {
        const loaded: Loaded = { target: t, reused: true, loadS: null, insertS: null, loadSteal: null, tableBytes: await tableBytes(c), dbBytes: await databaseBytes(c) };
        log(`${tag} reusing ${t.db}: ${count(n)} rows (counted in ${fmt(countS, 1)} s), table ${mb(loaded.tableBytes)} MB (pg_total_relation_size), database ${mb(loaded.dbBytes)} MB`);
        return loaded;
      }
      log(`${tag} ${t.db} holds ${count(n)} rows, not ${count(t.rows)}: loading it again`);
    } finally {
      await c.end();
    }
  }
  log(`${tag} loading ${t.db}…`);
  const cpu = cpuTimes();
  const t0 = performance.now();
  const c = await client(await freshBenchDatabase(t.db), 'zdt-scale-bench');
  try {
    for (const ddl of tableDdl(t, partitions)) await c.query(ddl);
    let said = t0;
    let insertS = NaN;
    await fillUsers(c, t.rows, (done) => {
      const now = performance.now();
      if (done === t.rows) insertS = (now - t0) / 1000;
      // A 100M-row load takes a long while: say where it is about once a minute.
      if (now - said < 60_000 || done === t.rows) return;
      said = now;
      const rate = done / ((now - t0) / 1000);
      log(`${tag}   ${count(done)} rows in ${fmt((now - t0) / 1000, 0)} s (${count(Math.round(rate))} rows/s; about ${fmt((t.rows - done) / rate / 60, 0)} min to go, then VACUUM)`);
    });
    await c.query(`COMMENT ON TABLE public.users IS ${pg.escapeLiteral(t.marker)}`);
    const loadS = (performance.now() - t0) / 1000;
    const loaded: Loaded = { target: t, reused: false, loadS, insertS, loadSteal: stolenSince(cpu), tableBytes: await tableBytes(c), dbBytes: await databaseBytes(c) };
    log(
      `${tag} loaded in ${fmt(loadS, 1)} s (${count(Math.round(t.rows / loadS))} rows/s; inserts ${fmt(insertS, 1)} s, VACUUM (FREEZE, ANALYZE) ${fmt(loadS - insertS, 1)} s; CPU steal ${loaded.loadSteal}): ` +
        `table ${mb(loaded.tableBytes)} MB (pg_total_relation_size, ${fmt(loaded.tableBytes / t.rows, 1)} B/row), database ${mb(loaded.dbBytes)} MB (${fmt(loaded.dbBytes / t.rows, 1)} B/row)`,
    );
    return loaded;
  } finally {
    await c.end();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One run

/**
 * A module for NODE_OPTIONS that appends the process's own peak RSS to `file` when it exits. Node has no
 * getrusage(RUSAGE_CHILDREN), and runUmzug gives no pid to poll /proc with; the reporting process's parent pid picks
 * out the migrating process from any node process it may start.
 */
function rssReporter(dir: string): { file: string; nodeOption: string } {
  const file = path.join(dir, 'max-rss.jsonl');
  const module = path.join(dir, 'report-max-rss.mjs');
  writeFileSync(
    module,
    `import { appendFileSync } from 'node:fs';\n` +
      `process.on('exit', () => appendFileSync(${JSON.stringify(file)}, JSON.stringify({ pid: process.pid, ppid: process.ppid, maxRssKb: process.resourceUsage().maxRSS }) + '\\n'));\n`,
  );
  return { file, nodeOption: `--import=${pathToFileURL(module).href}` };
}

function readMaxRss(file: string): number | null {
  if (!existsSync(file)) return null;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as { ppid: number; maxRssKb: number };
    if (r.ppid === process.pid) return r.maxRssKb;
  }
  return null;
}

/** `umzug up` with the preload in NODE_OPTIONS for that one spawn. */
function runUmzugMeasured(project: string, url: string, rss: { file: string; nodeOption: string }, timeoutMs: number | undefined): Promise<CommandRun> {
  rmSync(rss.file, { force: true });
  const saved = process.env.NODE_OPTIONS;
  // runUmzug passes on this process's environment as it is at the call (the spawn is synchronous) and takes no more.
  process.env.NODE_OPTIONS = [saved, rss.nodeOption].filter((x) => x).join(' ');
  try {
    return runUmzug(project, url, ['up'], timeoutMs);
  } finally {
    if (saved === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved;
  }
}

interface StateFigures {
  rowsDone: number;
  batches: number;
  backfillS: number;
  verifyS: number;
  verifiedRows: number;
}

/** The backfill's and the verify's own record of the run, in the database's clock. */
async function stateFigures(c: pg.Client): Promise<StateFigures> {
  const s = pg.escapeIdentifier(STATE_SCHEMA);
  const r = await c.query<{ rows_done: string; batches: number; backfill_s: number; verify_s: number | null; verified_rows: string | null }>(
    `SELECT b.rows_done, b.batches,
            extract(epoch FROM b.updated_at - b.started_at)::float8 AS backfill_s,
            extract(epoch FROM ch.verified_at - greatest(b.updated_at, (SELECT max(st.finished_at) FROM ${s}.steps st WHERE st.migration = ch.migration AND st.change_index = ch.change_index)))::float8 AS verify_s,
            ch.verified_rows
       FROM ${s}.changes ch JOIN ${s}.backfills b ON b.migration = ch.migration AND b.change_index = ch.change_index AND b.phase = 'expand'`,
  );
  if (r.rows.length !== 1) throw new Error(`expected one backfill in ${STATE_SCHEMA}.backfills after the run, found ${r.rows.length}`);
  const x = r.rows[0]!;
  return { rowsDone: Number(x.rows_done), batches: x.batches, backfillS: x.backfill_s, verifyS: x.verify_s ?? NaN, verifiedRows: Number(x.verified_rows ?? NaN) };
}

async function runOnce(o: Options, loaded: Loaded, project: string, rss: { file: string; nodeOption: string }): Promise<RunResult> {
  const t = loaded.target;
  const tag = `[${t.shape} ${count(t.rows)}]`;
  const copyFrom = performance.now();
  const url = await copyOfTemplate(t.db, RUN_DB);
  const copyS = (performance.now() - copyFrom) / 1000;
  try {
    let c = await client(url, 'zdt-scale-bench');
    // The run does not pay for the copy's dirty pages.
    await c.query('CHECKPOINT');
    const tableBytesBefore = await tableBytes(c);
    // Closed during the run: the pacer counts any other recently active session of the database as an application.
    await c.end();
    log(`${tag} copy ${RUN_DB} made in ${fmt(copyS, 1)} s; umzug up…`);

    const cpu = cpuTimes();
    const started = Date.now();
    const heartbeat = setInterval(() => log(`${tag}   umzug up still running: ${fmt((Date.now() - started) / 60_000, 0)} min`), 5 * 60_000);
    let r: CommandRun;
    try {
      r = await runUmzugMeasured(project, url, rss, o.timeoutMs);
    } finally {
      clearInterval(heartbeat);
    }
    const steal = stolenSince(cpu);
    const load1 = os.loadavg()[0]!;
    if (r.code !== 0) throw new Error(`umzug up ${r.timedOut ? 'stopped at the time limit' : `failed (exit ${r.code})`}: ${r.lines.slice(-8).join(' | ')}`);
    const maxRssKb = readMaxRss(rss.file);

    c = await client(url, 'zdt-scale-bench');
    try {
      const mismatches = await checkWork(c, WORKLOAD, 'ours');
      const st = await stateFigures(c);
      const p = pacerSummary(r);
      const backfillS = p.backfillSeconds ?? st.backfillS;
      const result: RunResult = {
        shape: t.shape,
        rows: t.rows,
        copyS,
        wallS: r.wallMs / 1000,
        expandS: p.expandSeconds,
        backfillS,
        backfillRows: st.rowsDone,
        backfillBatches: st.batches,
        rowsPerS: st.rowsDone / backfillS,
        verifyS: st.verifyS,
        verifiedRows: st.verifiedRows,
        maxRssKb,
        steal,
        load1,
        mismatches,
        tableBytesBefore,
        tableBytesAfter: await tableBytes(c),
        dbBytesAfter: await databaseBytes(c),
        pacerFirst: p.first,
        pacerLines: p.paced,
        doneLine: p.done,
      };
      for (const l of describeRun(result)) log(`${tag} ${l}`);
      return result;
    } finally {
      await c.end();
    }
  } finally {
    if (!o.keepRun) await dropBenchDatabase(RUN_DB);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reporting

function describeRun(r: RunResult): string[] {
  return [
    `umzug up ${fmt(r.wallS)} s (engine's expand ${r.expandS === null ? 'n/a' : fmt(r.expandS)} s); backfill ${fmt(r.backfillS)} s, ${count(r.backfillRows)} rows in ${count(r.backfillBatches)} batches, ` +
      `${count(Math.round(r.rowsPerS))} rows/s; verify ${fmt(r.verifyS)} s (${count(r.verifiedRows)} rows); peak RSS ${r.maxRssKb === null ? 'n/a' : `${fmt(r.maxRssKb / 1024, 1)} MB`}; ` +
      `CPU steal ${r.steal}, load ${fmt(r.load1, 1)}; check ${r.mismatches === 0 ? 'ok' : `${r.mismatches} rows wrong`}`,
    `  table ${mb(r.tableBytesBefore)} MB before, ${mb(r.tableBytesAfter)} MB after (${fmt(r.tableBytesAfter / r.rows, 1)} B/row; database ${mb(r.dbBytesAfter)} MB, ${fmt(r.dbBytesAfter / r.rows, 1)} B/row); ` +
      `pacer: ${r.pacerLines} lines, first "${r.pacerFirst ?? '-'}"`,
    ...(r.doneLine ? [`  backfill: ${r.doneLine}`] : []),
  ];
}

interface Ratios {
  readonly rowsPerS: number;
  readonly verifyPerRow: number;
  readonly rss: number;
}

function ratiosAgainst(r: RunResult, base: RunResult): Ratios {
  return {
    rowsPerS: r.rowsPerS / base.rowsPerS,
    verifyPerRow: r.verifyS / r.rows / (base.verifyS / base.rows),
    rss: r.maxRssKb !== null && base.maxRssKb !== null ? r.maxRssKb / base.maxRssKb : NaN,
  };
}

function summary(loads: readonly Loaded[], runs: readonly RunResult[]): string[] {
  const out = ['', 'loaded tables (kept for later runs):', 'shape | rows | database | load s (rows/s) | table MB (pg_total_relation_size) | B/row table | B/row database'];
  for (const l of loads) {
    const t = l.target;
    out.push(
      [
        t.shape,
        count(t.rows),
        t.db,
        l.loadS === null ? 'reused' : `${fmt(l.loadS, 1)} (${count(Math.round(t.rows / l.loadS))}; inserts ${fmt(l.insertS ?? NaN, 1)} s; steal ${l.loadSteal})`,
        mb(l.tableBytes),
        fmt(l.tableBytes / t.rows, 1),
        fmt(l.dbBytes / t.rows, 1),
      ].join(' | '),
    );
  }
  out.push(
    '',
    'shape | rows | end-to-end s | backfill s | backfill rows/s | verify s | peak RSS MB | CPU steal | load avg | rows/s ÷ base | verify s/row ÷ base | RSS ÷ base',
  );
  for (const r of runs) {
    const base = runs.find((x) => x.shape === r.shape)!;
    const k = ratiosAgainst(r, base);
    out.push(
      [
        r.shape,
        count(r.rows),
        fmt(r.wallS),
        fmt(r.backfillS),
        count(Math.round(r.rowsPerS)),
        fmt(r.verifyS),
        r.maxRssKb === null ? 'n/a' : fmt(r.maxRssKb / 1024, 1),
        r.steal,
        fmt(r.load1, 1),
        fmt(k.rowsPerS),
        fmt(k.verifyPerRow),
        fmt(k.rss),
      ].join(' | '),
    );
  }
  out.push(
    '',
    'base: the smallest size of the same shape in this invocation. Flat is 1.00; rows/s ÷ base under 1: the backfill slows as the table grows; verify s/row and RSS ÷ base over 1: they grow with it',
    'end-to-end: `umzug up` from spawn to exit (start-up, expand, backfill, verify); verify: from the backfill\'s end to the verify\'s recorded end; CPU steal and load: during `umzug up`',
  );
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const o = parseOptions(argv);
  const targets = o.sizes.flatMap((rows) => o.shapes.map((shape) => targetOf(rows, shape, o.partitions)));
  const admin = await client(urlFor('postgres'), 'zdt-scale-bench');
  let existing: Existing[];
  const reusable = new Set<string>();
  let plan: DiskPlan;
  try {
    existing = await existingDatabases(admin);
    for (const t of targets) if (existing.some((e) => e.db === t.db) && (await markerMatches(t))) reusable.add(t.db);
    plan = await diskPlan(o, targets, reusable, existing, admin);
  } finally {
    await admin.end();
  }
  for (const l of plan.lines) log(l);
  if (!plan.enough) {
    log(
      `\nnot enough free disk for --sizes ${o.sizes.map(count).join(',')} --shapes ${o.shapes.join(',')}: nothing was loaded. ` +
        `Free some space, ask for fewer sizes or shapes, or drop loaded tables no longer needed (DROP DATABASE zdt_scale_…).`,
    );
    process.exitCode = 2;
    return;
  }
  if (o.planOnly) return;

  if (!FROM_SOURCE) {
    log('building the package (npm run build): ours runs as installed, from dist/');
    buildPackage();
  }
  log(
    `ours: umzug up with ${OURS_OPTIONS ? `PEER_OURS_OPTIONS ${JSON.stringify(OURS_OPTIONS)}, every other option at its default` : 'every option at its default'}, ` +
      `${FROM_SOURCE ? 'lib/ through tsx (PEER_FROM_SOURCE)' : 'the built package (dist/)'}; workload: ${WORKLOAD.title}`,
  );
  const project = ourProject(WORKLOAD);
  const rss = rssReporter(project);
  const loads: Loaded[] = [];
  const runs: RunResult[] = [];
  try {
    for (const t of targets) {
      const loaded = await ensureLoaded(t, o.partitions, reusable.has(t.db));
      loads.push(loaded);
      runs.push(await runOnce(o, loaded, project, rss));
    }
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
  process.stdout.write(summary(loads, runs).join('\n') + '\n');
  process.stdout.write(`\nloaded tables kept: ${loads.map((l) => `${l.target.db} (${gb(l.dbBytes)} GB)`).join(', ')}; drop with DROP DATABASE when done\n`);
  if (o.json) {
    const out = runs.map((r) => ({ ...r, ratios: ratiosAgainst(r, runs.find((x) => x.shape === r.shape)!) }));
    process.stdout.write(JSON.stringify({ loads, runs: out }) + '\n');
  }
}

runIfMain(import.meta.url, main);

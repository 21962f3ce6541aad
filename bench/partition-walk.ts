// A partitioned table's backfill walked two ways, side by side in one run: each leaf partition's heap pages
// (`backfill.partitionWalk: 'pages'`, the default) against the table's primary key through the parent ('key', what
// every backfill of a partitioned table did before). Workload A of bench/peer.ts (the derived column
// `full_name = first_name || ' ' || last_name`) on `users` partitioned by RANGE (id) (a key range lies in one
// partition: the key walk's best case) or by HASH (id) (every key range spreads over all partitions, as a table
// partitioned by time or tenant with an id key does), every other option at its default, in-process (lib/ through
// tsx), ABBA.
//
//   npx tsx bench/partition-walk.ts [--rows 1m] [--partitions 10] [--by range,hash] [--order key|random] [--pairs 2]
//                                   [--traffic none|pgbench] [--json]
//
// `--order random` loads each million rows in random order, so a partition's heap no longer follows the key (rows
// of a table loaded by several writers, or keyed by a random id): the key walk then reads its heap pages out of order.
// The loaded table is kept as a template database (zdt_pwalk_tpl_<by>_<order>_<rows>_<partitions>) and every run migrates a fresh
// copy of it (CREATE DATABASE … TEMPLATE), dropped afterwards. Printed per run: the expand's wall time, the backfill's
// (its first batch to its last), the verify's, rows/s; then pages ÷ key of the geometric means, and the CPU steal.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { zeroDowntime, type EngineEvent } from '../lib/index.js';
import { partitionedUsersDdl, USERS_FILL } from './peer-tools.js';
import { client, copyOfTemplate, cpuTimes, dropBenchDatabase, fillUsers, fmt, parseSize, runIfMain, startPgbenchLoad, stolenSince, urlFor } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const LIB_INDEX = path.resolve(here, '../lib/index.ts');
type Walk = 'pages' | 'key';

interface Run {
  readonly by: By;
  readonly walk: Walk;
  readonly expandS: number;
  readonly backfillS: number;
  readonly verifyS: number;
  readonly rowsPerS: number;
  readonly batches: number;
  readonly steal: string;
}

type By = 'range' | 'hash';

async function template(rows: number, partitions: number, by: By, order: 'key' | 'random'): Promise<string> {
  const name = `zdt_pwalk_tpl_${by}_${order}_${rows}_${partitions}`;
  const admin = await client(urlFor('postgres'));
  try {
    const has = await admin.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [name]);
    if (has.rowCount) {
      const c = await client(urlFor(name));
      try {
        const n = await c.query<{ n: string }>(`SELECT count(*) AS n FROM users`);
        if (Number(n.rows[0]!.n) === rows) return name;
      } catch {
        // half loaded: made again below
      } finally {
        await c.end();
      }
    }
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const c = await client(urlFor(name));
  try {
    for (const ddl of partitionedUsersDdl(rows, partitions, by)) await c.query(ddl);
    const t0 = performance.now();
    if (order === 'key') await fillUsers(c, rows);
    else {
      for (let lo = 1; lo <= rows; lo += 1_000_000) await c.query(`${USERS_FILL} ORDER BY random()`, [lo, Math.min(rows, lo + 999_999)]);
      await c.query(`SELECT setval(pg_get_serial_sequence('users', 'id'), $1)`, [rows]);
      await c.query('VACUUM (FREEZE, ANALYZE) users');
    }
    process.stderr.write(`loaded ${rows} rows into ${partitions} ${by} partitions in ${fmt((performance.now() - t0) / 1000, 1)} s\n`);
  } finally {
    await c.end();
  }
  return name;
}

function project(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zdt-pwalk-'));
  mkdirSync(path.join(dir, 'migrations'));
  writeFileSync(
    path.join(dir, 'migrations', '001.derive.ts'),
    `import { defineMigration, deriveColumn } from ${JSON.stringify(LIB_INDEX)};\nexport default defineMigration({ changes: [deriveColumn({ table: 'users', column: { name: 'full_name', type: 'text' }, from: ['first_name', 'last_name'], up: "first_name || ' ' || last_name" })] });\n`,
  );
  return dir;
}

async function once(tpl: string, by: By, walk: Walk, rows: number, traffic: boolean): Promise<Run> {
  const db = 'zdt_pwalk_run';
  const url = await copyOfTemplate(tpl, db);
  const load = traffic ? await startPgbenchLoad(db) : null;
  const dir = project();
  const stolen = cpuTimes();
  let firstBatch = 0;
  let lastBatch = 0;
  let batches = 0;
  let verifyStart = 0;
  let verifyEnd = 0;
  const umzug = zeroDowntime({
    knex: { client: 'pg', connection: url },
    cwd: dir,
    migrations: 'migrations/*.ts',
    backfill: { partitionWalk: walk },
    logger: { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} },
    onEvent: (e: EngineEvent) => {
      const now = performance.now();
      if (e.type === 'backfill' && e.progress.phase === 'expand') {
        if (!firstBatch) firstBatch = now;
        lastBatch = now;
        batches = e.progress.batches;
        if (e.progress.done && !verifyStart) verifyStart = now;
      }
      if (e.type === 'verify') verifyEnd = now;
    },
  });
  const t0 = performance.now();
  try {
    await umzug.up(); // the expand (the contract waits at its gate)
  } finally {
    await umzug.close();
    load?.kill('SIGINT');
    rmSync(dir, { recursive: true, force: true });
  }
  const expandS = (performance.now() - t0) / 1000;
  const c = await client(url);
  try {
    const bad = await c.query<{ n: string }>(`SELECT count(*) AS n FROM users WHERE full_name IS DISTINCT FROM first_name || ' ' || last_name`);
    if (Number(bad.rows[0]!.n) !== 0) throw new Error(`${walk}: ${bad.rows[0]!.n} rows not filled`);
  } finally {
    await c.end();
  }
  await dropBenchDatabase(db);
  const backfillS = (lastBatch - firstBatch) / 1000;
  return { by, walk, expandS, backfillS, verifyS: verifyEnd && verifyStart ? (verifyEnd - verifyStart) / 1000 : NaN, rowsPerS: rows / Math.max(backfillS, 1e-3), batches, steal: stolenSince(stolen) };
}

const geo = (xs: readonly number[]) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { rows: { type: 'string', default: '1m' }, partitions: { type: 'string', default: '10' }, by: { type: 'string', default: 'range,hash' }, order: { type: 'string', default: 'key' }, pairs: { type: 'string', default: '2' }, traffic: { type: 'string', default: 'none' }, json: { type: 'boolean', default: false } },
  });
  const rows = parseSize(values.rows);
  const partitions = Number(values.partitions);
  const pairs = Number(values.pairs);
  if (!(Number.isInteger(partitions) && partitions >= 2)) throw new Error(`--partitions must be 2 or more, not ${values.partitions}`);
  if (!(Number.isInteger(pairs) && pairs >= 1)) throw new Error(`--pairs must be 1 or more, not ${values.pairs}`);
  if (values.traffic !== 'none' && values.traffic !== 'pgbench') throw new Error(`--traffic takes none or pgbench, not ${values.traffic}`);
  const bys = values.by.split(',') as By[];
  if (values.order !== 'key' && values.order !== 'random') throw new Error(`--order takes key or random, not ${values.order}`);
  if (bys.some((b) => b !== 'range' && b !== 'hash')) throw new Error(`--by takes range and/or hash, not ${values.by}`);
  const all = cpuTimes();
  const runs: Run[] = [];
  for (const by of bys) {
    const tpl = await template(rows, partitions, by, values.order as 'key' | 'random');
    for (let p = 0; p < pairs; p++) {
    for (const walk of ['pages', 'key', 'key', 'pages'] as const) {
      const r = await once(tpl, by, walk, rows, values.traffic === 'pgbench');
      runs.push(r);
      if (!values.json) {
        process.stdout.write(
          `${by.padEnd(5)} ${walk.padEnd(5)} expand ${fmt(r.expandS)} s, backfill ${fmt(r.backfillS)} s in ${r.batches} batches (${Math.round(r.rowsPerS)} rows/s), verify ${fmt(r.verifyS)} s; steal ${r.steal}\n`,
        );
      }
    }
    }
  }
  const of = (by: By, w: Walk, k: 'expandS' | 'backfillS') => geo(runs.filter((r) => r.by === by && r.walk === w).map((r) => r[k]));
  const ratios = bys.map((by) => ({ by, expand: of(by, 'pages', 'expandS') / of(by, 'key', 'expandS'), backfill: of(by, 'pages', 'backfillS') / of(by, 'key', 'backfillS') }));
  const summary = { rows, order: values.order, partitions, pairs, traffic: values.traffic, ratios, steal: stolenSince(all), runs };
  if (values.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  else {
    process.stdout.write(`\n${rows} rows in ${values.order} order, ${partitions} partitions, traffic ${values.traffic}, ${pairs} ABBA pair(s); CPU steal over the run ${summary.steal}\n`);
    for (const r of ratios) process.stdout.write(`  by ${r.by}: pages ÷ key, expand ${fmt(r.expand)}, backfill ${fmt(r.backfill)}\n`);
  }
}

runIfMain(import.meta.url, main);

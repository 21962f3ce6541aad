import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { USERS_FILL } from './peer-tools.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export const PG_BASE = process.env.BENCH_PG_URL ?? process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
export const urlFor = (db: string) => `${PG_BASE}/${db}`;

export async function freshBenchDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: urlFor('postgres') });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  return urlFor(name);
}

export async function client(url: string, app = 'zd-bench'): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: app });
  await c.connect();
  return c;
}

/**
 * Rows 1..rows of the peer benches' users table (USERS_DDL, already created through `c`), then its sequence past them
 * and the table frozen and analyzed. `onSlice` hears the rows loaded so far after each slice.
 */
export async function fillUsers(c: pg.Client, rows: number, onSlice?: (loaded: number) => void): Promise<void> {
  // Filled in slices so that a 10M-row load does not need one giant transaction.
  for (let lo = 1; lo <= rows; lo += 1_000_000) {
    const hi = Math.min(rows, lo + 999_999);
    await c.query(USERS_FILL, [lo, hi]);
    onSlice?.(hi);
  }
  await c.query(`SELECT setval(pg_get_serial_sequence('users', 'id'), $1)`, [rows]);
  // Frozen and all-visible: no copy pays for hint bits or a first vacuum that the other did not.
  await c.query('VACUUM (FREEZE, ANALYZE) users');
}

/** A copy of the template for one run (FILE_COPY: a checkpoint and a file copy, so every copy starts clean). */
export async function copyOfTemplate(template: string, name: string): Promise<string> {
  const admin = await client(urlFor('postgres'));
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(template)} STRATEGY FILE_COPY`);
  } finally {
    await admin.end();
  }
  const url = urlFor(name);
  const c = await client(url);
  try {
    // Activity statistics are not copied with a database; pgroll reads its row estimate from them (else it counts).
    await c.query('ANALYZE users');
  } finally {
    await c.end();
  }
  return url;
}

/** `npm run build`, so that `umzug` run from dist/ (as a user runs it) is the code of this working tree. */
export function buildPackage(): void {
  const b = spawnSync('npm', ['run', 'build'], { cwd: path.resolve(here, '..'), stdio: ['ignore', 'ignore', 'inherit'] });
  if (b.status !== 0) throw new Error(`npm run build failed (exit ${b.status}); PEER_FROM_SOURCE=1 runs lib/ through tsx instead`);
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([km]?)$/i.exec(s.trim());
  if (!m) throw new Error(`bad size ${JSON.stringify(s)}: use e.g. 100k, 1m, 10m`);
  return Math.round(Number(m[1]) * (m[2]!.toLowerCase() === 'm' ? 1e6 : m[2]!.toLowerCase() === 'k' ? 1e3 : 1));
}

export const fmt = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

export async function dropBenchDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: urlFor('postgres') });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

export interface BenchChild {
  readonly child: ChildProcess;
  /** Every line the process printed, once it has exited 0; rejects with its last lines otherwise. */
  readonly exited: Promise<string[]>;
  /** Called with each line as it is printed. */
  onLine(f: (line: string) => void): void;
}

/** A script of bench/ in a process of its own (run by tsx), its stdout taken line by line; stdin stays open for it. */
export function spawnBenchScript(file: string, args: readonly string[]): BenchChild {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, file), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const listeners: ((line: string) => void)[] = [];
  let rest = '';
  child.stdout!.on('data', (d: Buffer) => {
    const parts = (rest + d.toString()).split('\n');
    rest = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      for (const f of listeners) f(l);
    }
  });
  const exited = new Promise<string[]>((resolve, reject) =>
    child.on('exit', (code) => {
      if (rest) lines.push(rest);
      code === 0 ? resolve(lines) : reject(new Error(`${file} exited ${code}: ${lines.slice(-5).join('\n')}`));
    }),
  );
  return { child, exited, onLine: (f) => listeners.push(f) };
}

/** The last non-empty line a bench script printed (its JSON result). */
export const lastLine = (lines: readonly string[]): string => lines.filter((l) => l.trim() !== '').pop() ?? '';

/**
 * The share of CPU time the hypervisor gave to other guests since `from` (the steal column of /proc/stat): on a shared
 * host it moves every figure here, the backfill's more than one UPDATE's, so each phase prints it. null off Linux.
 */
export function cpuTimes(): { steal: number; total: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    return { steal: f[7]!, total: f.reduce((a, b) => a + b, 0) };
  } catch {
    return null;
  }
}
export function stolenSince(from: ReturnType<typeof cpuTimes>): string {
  const now = cpuTimes();
  if (!from || !now || now.total <= from.total) return 'unknown';
  return `${((100 * (now.steal - from.steal)) / (now.total - from.total)).toFixed(1)} %`;
}

/** The value after `--name` on the command line, if any. */
export function benchArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';

/**
 * The benches' standard application traffic: pgbench's tables (scale 5) in the bench database and 2 clients at 300
 * transactions/s until killed.
 */
export async function startPgbenchLoad(dbName: string): Promise<ChildProcess> {
  const env = { ...process.env, PGHOST: '127.0.0.1', PGUSER: 'postgres' };
  await new Promise<void>((res, rej) => spawn(PGBENCH, ['-i', '-q', '-s', '5', dbName], { env, stdio: 'ignore' }).on('exit', (code) => (code === 0 ? res() : rej(new Error(`pgbench -i: ${code}`)))));
  return spawn(PGBENCH, ['-c', '2', '-j', '1', '-R', '300', '-T', '3600', dbName], { env, stdio: 'ignore' });
}

/** Runs `main` when the module at `moduleUrl` (its import.meta.url) is the script node was started with, not an import. */
export function runIfMain(moduleUrl: string, main: () => Promise<void>): void {
  if (!process.argv[1] || path.resolve(process.argv[1]) !== fileURLToPath(moduleUrl)) return;
  main().catch((e: unknown) => {
    process.stderr.write(String((e as Error).stack ?? e) + '\n');
    process.exit(1);
  });
}

// The two tools of bench/peer.ts, each run the way its users run it: our `umzug up` (node + tsx + the project's
// umzug.config.ts, a migration file with one typed change, every option at its default) and pgroll's own binary
// (`pgroll start <file>`, every flag at its default). Also the three workloads, each written for both tools, and a
// check that each tool really did its work (pgroll's `start` exits 0 without doing anything when it wants a baseline
// first, for instance).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const here = path.dirname(fileURLToPath(import.meta.url));
/**
 * What a user installs: the built package (dist/, made by `npm run build` before the runs), whose bin loads tsx only
 * for the project's own .ts files. PEER_FROM_SOURCE=1 runs lib/ through tsx instead (about a second more per command
 * here: every module of ours is compiled at each start).
 */
export const FROM_SOURCE = !!process.env.PEER_FROM_SOURCE;
/**
 * PEER_OURS_OPTIONS='{"backfill":{"canary":false}}': options merged into our umzug.config.ts, to see what a default
 * costs (the figures of record are taken without it: users get the defaults).
 */
export const OURS_OPTIONS: Record<string, unknown> | null = process.env.PEER_OURS_OPTIONS ? (JSON.parse(process.env.PEER_OURS_OPTIONS) as Record<string, unknown>) : null;
const LIB_INDEX = path.resolve(here, FROM_SOURCE ? '../lib/index.ts' : '../dist/esm/index.js');
const BIN = path.resolve(here, FROM_SOURCE ? '../lib/cli/bin.ts' : '../dist/esm/cli/bin.js');
// The project folder is elsewhere: tsx must be given by location, not by name (as test/cli-support.ts does).
const TSX = import.meta.resolve('tsx');

export type Tool = 'pgroll' | 'ours';

export interface Workload {
  readonly key: 'A' | 'B' | 'C';
  readonly title: string;
  /** pgroll's migration, as its JSON file. */
  readonly pgroll: { operations: object[] };
  /** Our migration: the `changes` of a defineMigration, as source. */
  readonly ours: { imports: string; changes: string };
  /** SQL counting what is not as it should be after the expand (0 when the tool did its work). */
  readonly check: Record<Tool, string>;
  /** Said beside the figures when the two tools do different work for it. */
  readonly note?: string;
}

export const WORKLOADS: readonly Workload[] = [
  {
    key: 'A',
    title: "derived column full_name = first_name || ' ' || last_name",
    pgroll: { operations: [{ add_column: { table: 'users', up: "first_name || ' ' || last_name", column: { name: 'full_name', type: 'text', nullable: true } } }] },
    ours: { imports: 'deriveColumn', changes: `deriveColumn({ table: 'users', column: { name: 'full_name', type: 'text' }, from: ['first_name', 'last_name'], up: "first_name || ' ' || last_name" })` },
    check: {
      pgroll: `SELECT count(*) AS n FROM users WHERE _pgroll_new_full_name IS DISTINCT FROM first_name || ' ' || last_name`,
      ours: `SELECT count(*) AS n FROM users WHERE full_name IS DISTINCT FROM first_name || ' ' || last_name`,
    },
  },
  {
    key: 'B',
    title: 'score int → bigint (not a key)',
    pgroll: { operations: [{ alter_column: { table: 'users', column: 'score', type: 'bigint', up: 'CAST(score AS bigint)', down: 'CAST(score AS integer)' } }] },
    ours: { imports: 'changeColumnType', changes: `changeColumnType({ table: 'users', column: 'score', type: 'bigint' })` },
    check: {
      pgroll: `SELECT count(*) AS n FROM users WHERE _pgroll_new_score IS DISTINCT FROM score::bigint`,
      ours: `SELECT count(*) AS n FROM users WHERE score__new IS DISTINCT FROM score::bigint`,
    },
  },
  {
    key: 'C',
    title: 'rename email → email_address',
    pgroll: { operations: [{ rename_column: { table: 'users', from: 'email', to: 'email_address' } }] },
    ours: { imports: 'renameColumn', changes: `renameColumn({ table: 'users', from: 'email', to: 'email_address' })` },
    check: {
      // pgroll renames in the new version's view only (the column is renamed at complete): nothing to count.
      pgroll: `SELECT CASE WHEN EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email_address' AND table_schema LIKE 'public\\_%') THEN 0 ELSE 1 END AS n`,
      ours: `SELECT count(*) AS n FROM users WHERE email_address IS DISTINCT FROM email`,
    },
    note: 'pgroll renames in its versioned view only (no new column, no trigger, no backfill); ours adds the new column, a two-way sync trigger, backfills and verifies',
  },
];

/** The table both tools start from, identical for every run (a template database's copy). */
export const USERS_DDL = `CREATE TABLE users (
  id bigserial PRIMARY KEY,
  first_name text NOT NULL,
  last_name text NOT NULL,
  score int,
  email text,
  city text,
  bio text
)`;

/**
 * USERS_DDL partitioned into `partitions`, by RANGE (id) in equal ranges for `rows` rows (MINVALUE and MAXVALUE at
 * the ends: inserts past the loaded ids, as the sequence goes on, still have a home) or by HASH (id).
 */
export function partitionedUsersDdl(rows: number, partitions: number, by: 'range' | 'hash' = 'range'): string[] {
  const step = Math.ceil(rows / partitions);
  const users = pg.escapeIdentifier('users');
  return [
    `${USERS_DDL} PARTITION BY ${by === 'range' ? 'RANGE' : 'HASH'} (id)`,
    ...Array.from({ length: partitions }, (_x, i) => {
      const name = pg.escapeIdentifier(`users_p${String(i).padStart(String(partitions - 1).length, '0')}`);
      const from = i === 0 ? 'MINVALUE' : String(1 + i * step);
      const to = i === partitions - 1 ? 'MAXVALUE' : String(1 + (i + 1) * step);
      return `CREATE TABLE ${name} PARTITION OF ${users} FOR VALUES ${by === 'range' ? `FROM (${from}) TO (${to})` : `WITH (MODULUS ${partitions}, REMAINDER ${i})`}`;
    }),
  ];
}

/** Rows lo..hi: about 100 bytes each on disk, payload included. */
export const USERS_FILL = `INSERT INTO users (id, first_name, last_name, score, email, city, bio)
  SELECT g, 'first' || g, 'last' || g, g % 1000, 'u' || g || '@example.com', 'city' || (g % 500), repeat('x', 30)
    FROM generate_series($1::bigint, $2::bigint) g`;

export async function checkWork(c: pg.Client, w: Workload, tool: Tool): Promise<number> {
  const r = await c.query<{ n: string | number }>(w.check[tool]);
  return Number(r.rows[0]!.n);
}

export interface CommandRun {
  readonly wallMs: number;
  readonly code: number | null;
  /** stdout and stderr, line by line, in the order they came. */
  readonly lines: string[];
  /** When each line came, ms after the spawn. */
  readonly at: number[];
  /** Stopped by the bench's time limit (SIGINT: ours stops after its current batch, keeping its progress). */
  readonly timedOut: boolean;
}

/** Runs a command and times it from spawn to its exit (the whole command, start-up included). */
export function timedCommand(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CommandRun> {
  const lines: string[] = [];
  const at: number[] = [];
  let rest = '';
  const t0 = performance.now();
  const take = (d: Buffer) => {
    const parts = (rest + d.toString()).split(/\r?\n|\r/);
    rest = parts.pop()!;
    lines.push(...parts);
    at.push(...parts.map(() => performance.now() - t0));
  };
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  let timedOut = false;
  const timers: NodeJS.Timeout[] = [];
  if (opts.timeoutMs !== undefined) {
    timers.push(
      setTimeout(() => {
        timedOut = true;
        child.kill('SIGINT');
        timers.push(setTimeout(() => child.kill('SIGKILL'), 60_000));
      }, opts.timeoutMs),
    );
  }
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = performance.now() - t0;
      timers.forEach(clearTimeout);
      if (rest) (lines.push(rest), at.push(wallMs));
      resolve({ wallMs, code, lines, at, timedOut });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Ours: a user's project folder, and `umzug up` in it.

/**
 * A throwaway project as a user has it: `node_modules/umzug-zero-downtime` (a shim re-exporting lib/index.ts, as in
 * test/cli-support.ts), the README's umzug.config.ts (contract.after left at its default) and one migration file.
 */
export function ourProject(w: Workload): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `zdt-peer-${w.key}-`));
  const shim = path.join(dir, 'node_modules', 'umzug-zero-downtime');
  mkdirSync(shim, { recursive: true });
  writeFileSync(path.join(shim, 'package.json'), JSON.stringify({ name: 'umzug-zero-downtime', exports: { import: './index.mjs', require: './index.cjs' } }));
  writeFileSync(path.join(shim, 'index.mjs'), `export * from ${JSON.stringify(LIB_INDEX)};\n`);
  writeFileSync(path.join(shim, 'index.cjs'), `module.exports = require(${JSON.stringify(LIB_INDEX)});\n`);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `peer-${w.key}`, private: true, type: 'module' }));
  writeFileSync(
    path.join(dir, 'umzug.config.ts'),
    `import { zeroDowntime } from 'umzug-zero-downtime';\n\nexport default zeroDowntime({\n  knex: { client: 'pg', connection: process.env.DATABASE_URL },\n  migrations: 'migrations/*.ts',\n${OURS_OPTIONS ? `  ...${JSON.stringify(OURS_OPTIONS)},\n` : ''}});\n`,
  );
  mkdirSync(path.join(dir, 'migrations'));
  writeFileSync(
    path.join(dir, 'migrations', `2026.01.01T00.00.00.workload-${w.key}.ts`),
    `import { defineMigration, ${w.ours.imports} } from 'umzug-zero-downtime';\n\nexport default defineMigration({\n  changes: [${w.ours.changes}],\n});\n`,
  );
  return dir;
}

/** `umzug <args>` in the project, as `npx umzug` would run it there (CI=true: plain progress lines, no bar). */
export function runUmzug(dir: string, url: string, args: readonly string[], timeoutMs?: number): Promise<CommandRun> {
  return timedCommand(process.execPath, [...(FROM_SOURCE ? ['--import', TSX] : []), BIN, ...args], {
    cwd: dir,
    env: { ...process.env, DATABASE_URL: url, CI: 'true', NO_COLOR: '1', FORCE_COLOR: '0' },
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });
}

export interface OurRunSummary {
  /** Pacing lines: how many, the first and the last. */
  readonly paced: number;
  readonly first: string | null;
  readonly last: string | null;
  /** The backfill's own closing line. */
  readonly done: string | null;
  /** The engine's time for the whole expand (Umzug's migrated event; the process start-up not included). */
  readonly expandSeconds: number | null;
  /** From the backfill's "starting" line to its "done" line, and from "done" to the migrated event (verify, mostly). */
  readonly backfillSeconds: number | null;
  readonly afterBackfillSeconds: number | null;
}

/** What `umzug up` printed, read back: the pacer's lines, the backfill's summary, and where the time went. */
export function pacerSummary(run: Pick<CommandRun, 'lines' | 'at'>): OurRunSummary {
  const { lines, at } = run;
  const strip = (l: string) => l.replace(/^.*expand backfill: /, '');
  const when = (re: RegExp) => {
    const i = lines.findIndex((l) => re.test(l));
    return i >= 0 ? at[i]! : null;
  };
  const started = when(/backfill: starting/);
  const ended = when(/backfill: done,/);
  const migrated = when(/event: 'migrated'/);
  const paced = lines.filter((l) => /backfill: (paced|held|paused|resumed)/.test(l));
  const done = lines.find((l) => /backfill: done,/.test(l));
  // The engine's own duration of the expand, from Umzug's `migrated` event (the process start-up not included).
  const dur = lines.map((l) => /durationSeconds: ([\d.]+)/.exec(l)).find((m) => m);
  return {
    paced: paced.length,
    first: paced.length ? strip(paced[0]!) : null,
    last: paced.length ? strip(paced[paced.length - 1]!) : null,
    done: done ? strip(done) : null,
    expandSeconds: dur ? Number(dur[1]) : null,
    backfillSeconds: started !== null && ended !== null ? (ended - started) / 1000 : null,
    afterBackfillSeconds: ended !== null && migrated !== null ? (migrated - ended) / 1000 : null,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// pgroll: its binary, every flag at its default but the connection.

export function pgrollUrl(url: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}sslmode=disable`;
}

export function runPgroll(bin: string, url: string, args: readonly string[], timeoutMs?: number): Promise<CommandRun> {
  return timedCommand(bin, [...args, '--postgres-url', pgrollUrl(url)], timeoutMs !== undefined ? { timeoutMs } : {});
}

/** Throws with pgroll's last words when it failed (its spinner text is noise: the last lines say what went wrong). */
export function mustSucceed(what: string, r: CommandRun): CommandRun {
  // `pgroll start` on a schema without history prints its advice and exits 0: that, too, is a failure here.
  const baselineWanted = r.lines.some((l) => /Run `pgroll baseline` first/.test(l));
  if (r.code !== 0 || baselineWanted) throw new Error(`${what} failed (exit ${r.code}): ${r.lines.slice(-4).join(' | ')}`);
  return r;
}

/**
 * What pgroll needs once per database before its first migration, untimed: `init` (its state schema) and, because
 * the table exists already, `baseline` (else `start` refuses: "non-empty but has no migration history").
 */
export async function preparePgroll(bin: string, url: string, dir: string): Promise<void> {
  mustSucceed('pgroll init', await runPgroll(bin, url, ['init']));
  mustSucceed('pgroll baseline', await runPgroll(bin, url, ['baseline', '00_baseline', dir, '--yes', '--json']));
}

/** The workload's migration as pgroll reads it; its name (and version schema) comes from the file name. */
export function pgrollMigrationFile(w: Workload, dir: string): string {
  const file = path.join(dir, `01_workload_${w.key.toLowerCase()}.json`);
  writeFileSync(file, JSON.stringify(w.pgroll, null, 2));
  return file;
}

export async function pgrollVersion(bin: string): Promise<string> {
  const r = await timedCommand(bin, ['--version']);
  return r.lines.find((l) => l.trim() !== '')?.trim() ?? 'unknown';
}

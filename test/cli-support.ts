import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compiledBin, compiledIndex } from './support/compiled-lib.js';
import { runInProcess } from './support/cli-in-process.js';

/** The real `umzug` bin, lib/ compiled (see compiled-lib.ts): run by plain node, as a user's project runs it. */
export const BIN = compiledBin();
// The project folder is elsewhere: tsx must be given by location, not by name.
export const TSX = import.meta.resolve('tsx');

/** ZDT_CLI_SPAWN=1: every `run` spawns the bin, as the suite did before runs moved in-process (a check of the harness). */
const SPAWN_ALWAYS = process.env.ZDT_CLI_SPAWN === '1';

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliProject {
  readonly dir: string;
  write(file: string, body: string): string;
  files(folder: string): string[];
  /**
   * Runs the `umzug` command line in the project folder: the bin's own `main` in this process (see
   * support/cli-in-process.ts), or the real bin in a process of its own with `{ spawn: true }` (or ZDT_CLI_SPAWN=1 for
   * every run), where what is tested is the process: its exit, its signals, its start without a project.
   */
  run(args: readonly string[], env?: Record<string, string | undefined>, how?: { spawn?: boolean }): Promise<RunResult>;
}

/**
 * A throwaway project that depends on umzug-zero-downtime the way a user's does: `node_modules/umzug-zero-downtime`
 * (here a shim re-exporting the compiled lib/index, for `import` and `require`), so the files `umzug create` writes load as-is.
 */
export function cliProject(prefix: string, pkg: { type: 'module' | 'commonjs' }, databaseUrl: string): CliProject {
  const dir = mkdtempSync(path.join(os.tmpdir(), `zdt-${prefix}-`));
  const shim = path.join(dir, 'node_modules', 'umzug-zero-downtime');
  mkdirSync(shim, { recursive: true });
  writeFileSync(path.join(shim, 'package.json'), JSON.stringify({ name: 'umzug-zero-downtime', exports: { import: './index.mjs', require: './index.cjs' } }));
  // The same compiled lib/ as the bin's, for import and require alike (Node 20.19+ requires an ES module), so the
  // project's migrations and the bin share one copy of every module.
  writeFileSync(path.join(shim, 'index.mjs'), `export * from ${JSON.stringify(compiledIndex())};\n`);
  writeFileSync(path.join(shim, 'index.cjs'), `module.exports = require(${JSON.stringify(compiledIndex())});\n`);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `app-${prefix}`, private: true, type: pkg.type }));
  return {
    dir,
    write(file, body) {
      const full = path.join(dir, file);
      mkdirSync(path.dirname(full), { recursive: true });
      writeFileSync(full, body);
      return full;
    },
    files(folder) {
      try {
        return readdirSync(path.join(dir, folder)).sort();
      } catch {
        return [];
      }
    },
    async run(args, env = {}, how = {}) {
      const fullEnv = { DATABASE_URL: databaseUrl, NO_COLOR: '1', FORCE_COLOR: '0', ...env };
      const r = (!how.spawn && !SPAWN_ALWAYS ? await runInProcess(dir, args, fullEnv) : null) ?? (await runSpawned(dir, args, fullEnv));
      // Whatever the test goes on to check, a --json run whose stdout is not all JSON lines fails here.
      if (args.includes('--json')) jsonLines(r.stdout, r.stderr);
      return r;
    },
  };
}

/** The real `umzug` bin run to its end in `cwd`, `env` laid over this process's. */
function runSpawned(cwd: string, args: readonly string[], env: Record<string, string | undefined>): Promise<RunResult> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // 'close', not 'exit': after it every byte of both pipes has been read.
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/**
 * The real `umzug` bin started in `cwd` against `url` (CI=true), left running: the test signals or awaits it.
 * `output()` is stdout and stderr as they came so far.
 */
export function spawnBin(cwd: string, url: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, DATABASE_URL: url, CI: 'true', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => ((out += d.toString()), (stdout += d.toString())));
  child.stderr.on('data', (d: Buffer) => ((out += d.toString()), (stderr += d.toString())));
  // 'close', not 'exit': after it every byte of both pipes has been read, so the --json check sees all of stdout.
  const exited = new Promise<number | null>((res, rej) =>
    child.on('close', (code) => {
      try {
        if (args.includes('--json')) jsonLines(stdout, stderr);
        res(code);
      } catch (e) {
        rej(e as Error);
      }
    }),
  );
  return { child, exited, output: () => out, stdout: () => stdout };
}

/**
 * Every line of a --json command's stdout, each parsed as one JSON document. A line that is not JSON (a logger's
 * object literal, a warning, a pretty-printed document) fails with the line and both streams, so the test names the
 * writer rather than a parse position.
 */
export function jsonLines<T = unknown>(stdout: string, stderr = ''): T[] {
  const lines = stdout.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.map((line, i) => {
    try {
      return JSON.parse(line) as T;
    } catch (e) {
      throw new Error(`--json stdout line ${i + 1} is not JSON (${(e as Error).message}): ${JSON.stringify(line)}\n--- stdout:\n${stdout}\n--- stderr:\n${stderr}`);
    }
  });
}

/**
 * The one JSON document a `--json` command printed: every stdout line must be JSON, and besides the progress events
 * of its backfills (lines with an `event`, as `up`/`down` print them) there must be exactly one.
 */
export function jsonOut<T>(r: RunResult | string): T {
  const { stdout, stderr } = typeof r === 'string' ? { stdout: r, stderr: '' } : r;
  const docs = jsonLines<T>(stdout, stderr).filter((d) => !(d && typeof d === 'object' && !Array.isArray(d) && 'event' in d));
  if (docs.length !== 1) throw new Error(`expected one JSON document on stdout, got ${docs.length}:\n${stdout}\n--- stderr:\n${stderr}`);
  return docs[0]!;
}

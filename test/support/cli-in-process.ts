import { compiledBin, compiledModule } from './compiled-lib.js';

export interface InProcessResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

type Write = typeof process.stdout.write;
type Main = (argv: readonly string[]) => Promise<number>;

let main: Promise<Main> | null = null;
let busy = false;

/**
 * The bin's own `main` (the compiled lib/cli/main.js, the module the bin calls), run in this mocha worker with the
 * project folder as the current directory, `env` laid over process.env and both output streams captured. A spawned
 * bin costs 1.5–2 CPU-seconds of module loading, and the suite ran some 200 of them: half its CPU on 2 cores. What a
 * spawn adds (node's start, the exit code, signals, a handle left open that would keep the process alive) is covered
 * by the tests that spawn on purpose (`spawnBin`, `run(…, { spawn: true })`, ZDT_CLI_SPAWN=1 for every run).
 *
 * Returns null while another in-process run is in progress in this worker (cwd, env and the streams are the
 * process's own): the caller spawns that one, so two commands a test runs at once still run at once.
 */
export async function runInProcess(cwd: string, args: readonly string[], env: Record<string, string | undefined>): Promise<InProcessResult | null> {
  if (busy) return null;
  busy = true;
  try {
    const run = await (main ??= import(compiledModule('cli/main')).then((m: { main: Main }) => m.main));
    return await captured(cwd, env, () => run(args));
  } finally {
    busy = false;
  }
}

async function captured(cwd: string, env: Record<string, string | undefined>, fn: () => Promise<number>): Promise<InProcessResult> {
  const saved = { cwd: process.cwd(), argv1: process.argv[1], exitCode: process.exitCode, env: new Map<string, string | undefined>() };
  const out: string[] = [];
  const err: string[] = [];
  const sink =
    (into: string[]): Write =>
    ((chunk: string | Uint8Array, encoding?: unknown, callback?: unknown) => {
      into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      const done = typeof encoding === 'function' ? encoding : callback;
      if (typeof done === 'function') queueMicrotask(() => (done as () => void)());
      return true;
    }) as Write;
  const stdoutWrite = process.stdout.write;
  const stderrWrite = process.stderr.write;
  for (const [k, v] of Object.entries(env)) {
    saved.env.set(k, process.env[k]);
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  process.chdir(cwd);
  process.argv[1] = compiledBin();
  process.exitCode = undefined;
  process.stdout.write = sink(out);
  process.stderr.write = sink(err);
  let code: number;
  try {
    code = await fn();
  } catch (e) {
    // What the bin does with an error main() lets through.
    err.push(`umzug: ${(e as Error)?.stack ?? String(e)}\n`);
    code = 1;
  } finally {
    process.stdout.write = stdoutWrite;
    process.stderr.write = stderrWrite;
    process.exitCode = saved.exitCode;
    process.argv[1] = saved.argv1!;
    process.chdir(saved.cwd);
    for (const [k, v] of saved.env) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  return { code, stdout: out.join(''), stderr: err.join('') };
}

import { spawn } from 'node:child_process';
import { compiledSupport } from './compiled-lib.js';

export interface Child {
  readonly exited: Promise<number | null>;
  readonly output: () => string;
  kill(signal: NodeJS.Signals): void;
}

/** Starts test/support/backfill-child.ts, compiled (see compiled-lib.ts), in a process of its own. */
export function spawnBackfill(url: string, opts: unknown): Child {
  return spawnSupport('backfill-child', [url, JSON.stringify(opts)]);
}

/**
 * Starts test/support/up-child.ts, compiled: `up` for the project in `dir` with these backfill settings, in a process
 * of its own that a test can kill (SIGKILL) mid-way.
 */
export function spawnUp(url: string, dir: string, batchSize: number, pauseMs: number, more?: object): Child {
  return spawnSupport('up-child', [url, dir, String(batchSize), String(pauseMs), ...(more ? [JSON.stringify(more)] : [])]);
}

function spawnSupport(name: string, args: readonly string[]): Child {
  const child = spawn(process.execPath, [compiledSupport(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code, sig) => res(code ?? (sig ? 128 : null))));
  return { exited, output: () => out, kill: (s) => child.kill(s) };
}

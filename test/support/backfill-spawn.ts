import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface Child {
  readonly exited: Promise<number | null>;
  readonly output: () => string;
  kill(signal: NodeJS.Signals): void;
}

/** Starts test/support/backfill-child.ts (through tsx, like `npx tsx`) in a process of its own. */
export function spawnBackfill(url: string, opts: unknown): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'backfill-child.ts'), url, JSON.stringify(opts)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code, sig) => res(code ?? (sig ? 128 : null))));
  return { exited, output: () => out, kill: (s) => child.kill(s) };
}

import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A PostgreSQL server of the test's own, from the machine's binaries, in a temporary folder on a free port: for what
 * the shared server cannot give a test (replication connections, a preloaded library) and a test must not change in
 * the machine's config. Trust authentication on loopback and the folder's socket; fsync off.
 */
export interface ThrowawayCluster {
  readonly url: string;
  readonly port: number;
  /** The temporary folder (data directory, socket, log). */
  readonly dir: string;
  /** The PostgreSQL binaries' folder. */
  readonly bin: string;
  /** Stops the server (if it still runs) and removes its folder; synchronous, so it also works in an 'exit' handler. */
  remove(): void;
}

export interface ClusterOptions {
  /** Name prefix of the temporary folder. */
  readonly prefix: string;
  /** Lines added to postgresql.conf after the port, addresses, socket, fsync, synchronous_commit and shared_buffers. */
  readonly conf?: readonly string[];
  /** pg_hba.conf in full; the default trusts local and 127.0.0.1 connections. */
  readonly hba?: readonly string[];
  /** Called once the folder exists, before initdb (extra folders the test needs). */
  readonly prepare?: (dir: string) => void;
}

const bindir = (): string => execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();

/** A TCP port free on loopback now (the OS picks it), for a server a test starts of its own. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** initdb and pg_ctl refuse to run as root: run them as the postgres system user then. */
function asServerUser(cmd: string, args: string[]): void {
  if (process.getuid?.() === 0) execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe' });
  else execFileSync(cmd, args, { stdio: 'pipe' });
}

export async function startThrowawayCluster(o: ClusterOptions): Promise<ThrowawayCluster> {
  const bin = bindir();
  const dir = mkdtempSync(path.join(os.tmpdir(), `${o.prefix}-`));
  chmodSync(dir, 0o777);
  o.prepare?.(dir);
  const data = path.join(dir, 'data');
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres', dir]);
  const port = await freePort();
  asServerUser(path.join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions']);
  const conf = [
    `port = ${port}`,
    `listen_addresses = '127.0.0.1'`,
    `unix_socket_directories = '${dir}'`,
    'fsync = off',
    'synchronous_commit = off',
    'shared_buffers = 32MB',
    ...(o.conf ?? []),
  ];
  const hba = o.hba ?? ['local all all trust', 'host all all 127.0.0.1/32 trust'];
  asServerUser('/bin/sh', [
    '-c',
    `cat >> '${data}/postgresql.conf' <<'EOF'\n${conf.join('\n')}\nEOF\ncat > '${data}/pg_hba.conf' <<'EOF'\n${hba.join('\n')}\nEOF`,
  ]);
  asServerUser(path.join(bin, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  const remove = () => {
    try {
      asServerUser(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // already stopped
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, port, dir, bin, remove };
}

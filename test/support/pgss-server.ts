import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A PostgreSQL server of the test's own with pg_stat_statements preloaded (the shared server has it neither loaded
 * nor may a test change its shared_preload_libraries), started from the machine's binaries in a temporary folder on a
 * free port, as test/support/replica.ts does for its primary. `pg_stat_statements.track = top`, the default.
 */
export interface StatementsServer {
  readonly url: string;
  stop(): Promise<void>;
}

const bindir = (): string => execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();

async function freePort(): Promise<number> {
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

export async function startStatementsServer(): Promise<StatementsServer> {
  const bin = bindir();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zdt-pgss-'));
  chmodSync(dir, 0o777);
  const data = path.join(dir, 'data');
  if (process.getuid?.() === 0) execFileSync('chown', ['postgres', dir]);
  const port = await freePort();
  asServerUser(path.join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions']);
  asServerUser('/bin/sh', [
    '-c',
    `cat >> '${data}/postgresql.conf' <<'EOF'
port = ${port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '${dir}'
fsync = off
synchronous_commit = off
shared_buffers = 32MB
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = top
EOF`,
  ]);
  asServerUser(path.join(bin, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  const removeServer = () => {
    try {
      asServerUser(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // already stopped
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // mocha exits without running `after` hooks that time out: never leave a server running behind.
  process.once('exit', removeServer);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      process.off('exit', removeServer);
      removeServer();
    },
  };
}

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A PostgreSQL server of the test's own, started from the machine's binaries in a temporary folder, that accepts
 * replication connections (the shared server's pg_hba does not, and a test must not edit the machine's config), and
 * a WAL receiver (pg_receivewal) streaming from it: a real entry in pg_stat_replication whose lag the test controls
 * by stopping and continuing the receiver (SIGSTOP/SIGCONT).
 */
export interface ReplicatedServer {
  readonly url: string;
  /** Freezes the receiver: it reads and acknowledges nothing until resume(). */
  pause(): void;
  resume(): void;
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
  const root = process.getuid?.() === 0;
  if (root) execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe' });
  else execFileSync(cmd, args, { stdio: 'pipe' });
}

export async function startReplicatedServer(): Promise<ReplicatedServer> {
  const bin = bindir();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zdt-replica-'));
  chmodSync(dir, 0o777);
  const data = path.join(dir, 'data');
  const wal = path.join(dir, 'wal');
  mkdirSync(wal);
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
wal_level = replica
max_wal_senders = 4
shared_buffers = 32MB
EOF
cat > '${data}/pg_hba.conf' <<'EOF'
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
EOF`,
  ]);
  asServerUser(path.join(bin, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;

  const receiver: ChildProcess = spawn(
    path.join(bin, 'pg_receivewal'),
    ['-D', wal, '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '--status-interval=1', '--no-loop', '--no-password'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  receiver.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));

  /** Stops the server (if it still runs) and removes its folder; synchronous, so it also works in an 'exit' handler. */
  const removeServer = () => {
    try {
      asServerUser(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // already stopped
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // mocha exits without running `after` hooks that time out: never leave a server running behind.
  const onExit = () => {
    receiver.kill('SIGKILL');
    removeServer();
  };
  process.once('exit', onExit);
  const stop = async () => {
    process.off('exit', onExit);
    if (receiver.exitCode === null) {
      receiver.kill('SIGCONT');
      receiver.kill('SIGKILL');
      await new Promise((r) => receiver.once('exit', r));
    }
    removeServer();
  };
  receiver.once('exit', (code) => {
    if (code !== null && code !== 0 && stderr) process.stderr.write(`pg_receivewal exited ${code}: ${stderr}\n`);
  });
  return {
    url,
    pause: () => void receiver.kill('SIGSTOP'),
    resume: () => void receiver.kill('SIGCONT'),
    stop,
  };
}

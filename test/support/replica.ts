import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startThrowawayCluster } from './throwaway-cluster.js';

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

export async function startReplicatedServer(): Promise<ReplicatedServer> {
  const cluster = await startThrowawayCluster({
    prefix: 'zdt-replica',
    conf: ['wal_level = replica', 'max_wal_senders = 4'],
    hba: ['local all all trust', 'host all all 127.0.0.1/32 trust', 'host replication all 127.0.0.1/32 trust'],
    prepare: (dir) => mkdirSync(path.join(dir, 'wal')),
  });
  const { url, port, bin } = cluster;
  const wal = path.join(cluster.dir, 'wal');

  const receiver: ChildProcess = spawn(
    path.join(bin, 'pg_receivewal'),
    ['-D', wal, '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '--status-interval=1', '--no-loop', '--no-password'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  receiver.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));

  const removeServer = cluster.remove;
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

// The standard application traffic of bench/peer.ts: pgbench with custom scripts against the benchmark's own
// `users` table, so the traffic touches the rows the migration backfills (its UPDATEs can wait on a batch's row
// locks, which traffic on pgbench's own tables never does).
//
// pgbench runs in short segments (`-T segmentSeconds`) one after another until stopped: each segment exits normally
// and so flushes its per-transaction log, whereas a pgbench killed mid-run loses what its stdio still buffered.
// Every transaction is then filed by the time it ended, so one recording gives both the window without a migration
// (before) and the window during it.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { percentile } from './support.js';

const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';

/** Script numbers as pgbench logs them: the order of the -f options below. */
const SCRIPTS = [
  { file: 'read.sql', weight: 5, kind: 'read', body: '\\set id random(1, :rows)\nSELECT * FROM users WHERE id = :id;\n' },
  // Any UPDATE fires both tools' row triggers; one on a row inside a running batch waits for that batch's commit.
  { file: 'update.sql', weight: 4, kind: 'write', body: '\\set id random(1, :rows)\nUPDATE users SET score = score + 1 WHERE id = :id;\n' },
  {
    file: 'insert.sql',
    weight: 1,
    kind: 'write',
    body:
      '\\set r random(1, 1000000000)\n' +
      "INSERT INTO users (first_name, last_name, score, email, city, bio) VALUES ('first' || :r, 'last' || :r, :r % 1000, 'u' || :r || '@example.com', 'city' || (:r % 500), repeat('x', 30));\n",
  },
] as const;

export interface TrafficOptions {
  readonly dbName: string;
  /** Keys 1..rows exist: the reads and updates pick one of them at random. */
  readonly rows: number;
  /** Total transactions per second over all clients (pgbench -R). */
  readonly rate: number;
  readonly clients: number;
  readonly segmentSeconds: number;
  /** A folder of its own for the scripts and logs. */
  readonly dir: string;
}

/** One transaction from the log: when it ended (epoch ms), its kind, its service time and its time from schedule. */
interface Txn {
  readonly endMs: number;
  readonly kind: 'read' | 'write';
  /** From its start to its end (the log's latency less its schedule lag): what the server made it wait. */
  readonly serviceMs: number;
  /** From its scheduled start: includes waiting for the client's previous transaction (a blocked write holds it). */
  readonly latencyMs: number;
}

export interface LatencyStats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  /** p99 of the latency from the scheduled start (queueing behind a slow transaction on the same client included). */
  readonly p99FromSchedule: number;
}
export interface WindowStats {
  readonly reads: LatencyStats;
  readonly writes: LatencyStats;
}

export class Traffic {
  private running = false;
  private loop: Promise<void> | null = null;
  private segment = 0;
  /** Segments that ended in an error (a client aborted on a failed statement): printed with the figures. */
  readonly errors: string[] = [];

  constructor(private readonly opts: TrafficOptions) {
    mkdirSync(opts.dir, { recursive: true });
    for (const s of SCRIPTS) writeFileSync(path.join(opts.dir, s.file), s.body);
  }

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        const failed = this.errors.length;
        await this.runSegment(this.segment++);
        // A segment that fails at once (a bad script, no database) must not turn into a busy loop.
        if (this.errors.length > failed) await new Promise((r) => setTimeout(r, 1000));
      }
    })();
  }

  /** Stops after the running segment (at most segmentSeconds): its transactions are logged in full. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private runSegment(n: number): Promise<void> {
    const o = this.opts;
    const args = [
      '-n', // no vacuum of pgbench's own tables (there are none here)
      '-c', String(o.clients),
      '-j', String(o.clients),
      '-R', String(o.rate),
      '-T', String(o.segmentSeconds),
      '-D', `rows=${o.rows}`,
      '-l', `--log-prefix=${path.join(o.dir, `seg${n}`)}`,
      ...SCRIPTS.flatMap((s) => ['-f', `${path.join(o.dir, s.file)}@${s.weight}`]),
      o.dbName,
    ];
    const env = { ...process.env, PGHOST: '127.0.0.1', PGUSER: 'postgres' };
    return new Promise((resolve) => {
      let err = '';
      const p = spawn(PGBENCH, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      // A failed statement aborts its client (the traffic thins out for the rest of the segment): kept and reported,
      // the next segment starts with all clients again.
      p.on('exit', (code) => {
        if (code !== 0) this.errors.push(`pgbench segment ${n} exited ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`);
        resolve();
      });
    });
  }

  /** Every logged transaction so far (the logs of finished segments). */
  private transactions(): Txn[] {
    const out: Txn[] = [];
    for (const f of readdirSync(this.opts.dir)) {
      if (!f.startsWith('seg')) continue;
      for (const line of readFileSync(path.join(this.opts.dir, f), 'utf8').split('\n')) {
        // client_id transaction_no time_us script_no epoch_s epoch_us schedule_lag_us (PostgreSQL 15, with -R)
        const p = line.trim().split(/\s+/);
        if (p.length < 7) continue;
        const latencyUs = Number(p[2]);
        const script = SCRIPTS[Number(p[3])];
        if (!script || !Number.isFinite(latencyUs)) continue;
        out.push({
          endMs: Number(p[4]) * 1000 + Number(p[5]) / 1000,
          kind: script.kind,
          serviceMs: (latencyUs - Number(p[6])) / 1000,
          latencyMs: latencyUs / 1000,
        });
      }
    }
    return out;
  }

  /** p50 and p99 of reads and of writes that ended in [fromMs, toMs] (epoch ms). */
  window(fromMs: number, toMs: number): WindowStats {
    const inWindow = this.transactions().filter((t) => t.endMs >= fromMs && t.endMs <= toMs);
    const stats = (kind: 'read' | 'write'): LatencyStats => {
      const ts = inWindow.filter((t) => t.kind === kind);
      const service = ts.map((t) => t.serviceMs);
      return { n: ts.length, p50: percentile(service, 50), p99: percentile(service, 99), p99FromSchedule: percentile(ts.map((t) => t.latencyMs), 99) };
    };
    return { reads: stats('read'), writes: stats('write') };
  }
}

/** What the traffic is, in words, for the report. */
export function describeTraffic(o: Pick<TrafficOptions, 'rate' | 'clients' | 'segmentSeconds'>): string {
  const total = SCRIPTS.reduce((a, s) => a + s.weight, 0);
  const mix = SCRIPTS.map((s) => `${Math.round((100 * s.weight) / total)} % ${s.file.replace('.sql', '')}`).join(', ');
  return `pgbench -R ${o.rate} -c ${o.clients} on public.users (${mix}), in ${o.segmentSeconds} s segments`;
}

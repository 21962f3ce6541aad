import { Counter, Gauge, Histogram, Registry, Summary } from 'prom-client';

/**
 * The Prometheus metrics of a migration run, in a registry of their own (two ZeroDowntimeUmzug instances in one
 * process must not collide in prom-client's global one). Serve `await metrics.registry.metrics()` on your /metrics,
 * or merge it: `Registry.merge([register, umzug.monitor.metrics.registry])`.
 */
export class MonitorMetrics {
  readonly registry: Registry;
  readonly progressRatio: Gauge<'migration' | 'change'>;
  readonly rowsDone: Gauge<'migration' | 'change'>;
  readonly rowsPerSecond: Gauge<'migration' | 'change'>;
  readonly batchDuration: Histogram<'migration' | 'change'>;
  readonly consistencyRatio: Gauge<'migration' | 'change'>;
  readonly dualWriteLag: Gauge<'source'>;
  readonly canaryLatency: Summary<'migration' | 'change'>;
  readonly canaryP50: Gauge<'migration' | 'change'>;
  readonly canaryP99: Gauge<'migration' | 'change'>;
  readonly canaryBaseline: Gauge<'migration' | 'change'>;
  readonly lockRetries: Counter<'migration' | 'phase' | 'code'>;
  readonly errors: Counter<'kind'>;
  readonly steps: Counter<'phase' | 'status'>;
  readonly breached: Gauge<'threshold' | 'migration'>;
  readonly paused: Gauge<'migration' | 'change'>;
  readonly rollbacks: Counter<'migration'>;

  constructor(registry?: Registry, prefix = 'umzug_zd_') {
    const r = (this.registry = registry ?? new Registry());
    const mc = ['migration', 'change'] as const;
    this.progressRatio = new Gauge({ name: `${prefix}backfill_progress_ratio`, help: 'Rows walked / estimated rows of the running backfill (0–1)', labelNames: mc, registers: [r] });
    this.rowsDone = new Gauge({ name: `${prefix}backfill_rows_done`, help: 'Rows walked by the backfill so far (all workers, all machines)', labelNames: mc, registers: [r] });
    this.rowsPerSecond = new Gauge({ name: `${prefix}backfill_rows_per_second`, help: 'Backfill rate over the last 10 seconds', labelNames: mc, registers: [r] });
    this.batchDuration = new Histogram({
      name: `${prefix}backfill_batch_duration_seconds`,
      help: 'Time from a batch being allowed to start until its commit (this process)',
      labelNames: mc,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10],
      registers: [r],
    });
    this.consistencyRatio = new Gauge({ name: `${prefix}verify_consistency_ratio`, help: 'Share of rows where old and new agree at the last verify (0–1)', labelNames: mc, registers: [r] });
    this.dualWriteLag = new Gauge({ name: `${prefix}dual_write_lag_seconds`, help: 'How far the new store trails the old one, as reported by a dual writer', labelNames: ['source'], registers: [r] });
    this.canaryLatency = new Summary({
      name: `${prefix}canary_latency_seconds`,
      help: 'Canary read latency while a backfill runs',
      labelNames: mc,
      percentiles: [0.5, 0.99],
      maxAgeSeconds: 60,
      ageBuckets: 6,
      registers: [r],
    });
    this.canaryP50 = new Gauge({ name: `${prefix}canary_p50_seconds`, help: 'Canary median over the monitor window', labelNames: mc, registers: [r] });
    this.canaryP99 = new Gauge({ name: `${prefix}canary_p99_seconds`, help: 'Canary p99 over the monitor window (the threshold compares this)', labelNames: mc, registers: [r] });
    this.canaryBaseline = new Gauge({ name: `${prefix}canary_baseline_p99_seconds`, help: 'Canary baseline p99: of the application load between batches (the first ones, then rolling)', labelNames: mc, registers: [r] });
    this.lockRetries = new Counter({ name: `${prefix}lock_retries_total`, help: 'DDL steps retried after a lock timeout or deadlock', labelNames: ['migration', 'phase', 'code'], registers: [r] });
    this.errors = new Counter({ name: `${prefix}errors_total`, help: 'Errors counted by the error-rate threshold', labelNames: ['kind'], registers: [r] });
    this.steps = new Counter({ name: `${prefix}steps_total`, help: 'Steps run or skipped (already done)', labelNames: ['phase', 'status'], registers: [r] });
    this.breached = new Gauge({ name: `${prefix}threshold_breached`, help: '1 while a threshold is breached', labelNames: ['threshold', 'migration'], registers: [r] });
    this.paused = new Gauge({ name: `${prefix}backfill_paused`, help: '1 while the monitor holds the backfill', labelNames: mc, registers: [r] });
    this.rollbacks = new Counter({ name: `${prefix}auto_rollbacks_total`, help: 'Changes reverted by autoRollback', labelNames: ['migration'], registers: [r] });
  }

  /** The exposition text, for a /metrics endpoint or a file. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}

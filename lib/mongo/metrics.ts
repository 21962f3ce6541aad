import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Dual-write health, as Prometheus metrics: the lag between the MongoDB write and its PostgreSQL copy (histogram),
 * the writes still pending in the outbox and the age of the oldest (gauges, refreshed by reconcile() and
 * refreshPending()), and failed secondary writes (counter). Labelled by move (`schema.table`).
 */
export class DualWriteMetrics {
  readonly registry: Registry;
  readonly lag: Histogram<'move' | 'via'>;
  readonly pending: Gauge<'move'>;
  readonly oldestPendingSeconds: Gauge<'move'>;
  readonly failures: Counter<'move'>;

  constructor(registry?: Registry) {
    this.registry = registry ?? new Registry();
    const registers = [this.registry];
    this.lag = new Histogram({
      name: 'zd_mongo_dual_write_lag_seconds',
      help: 'Time from the MongoDB write to its PostgreSQL copy (via: inline write or reconcile)',
      labelNames: ['move', 'via'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.pending = new Gauge({ name: 'zd_mongo_dual_write_pending', help: 'Writes whose PostgreSQL copy is not confirmed yet (outbox entries)', labelNames: ['move'], registers });
    this.oldestPendingSeconds = new Gauge({
      name: 'zd_mongo_dual_write_oldest_pending_seconds',
      help: 'Age of the oldest outbox entry (0 when none)',
      labelNames: ['move'],
      registers,
    });
    this.failures = new Counter({ name: 'zd_mongo_dual_write_failures_total', help: 'PostgreSQL writes that failed and were left to the reconciler', labelNames: ['move'], registers });
  }
}

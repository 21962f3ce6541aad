import type { Knex } from 'knex';
import { BackfillInterrupted, type BackfillProgress } from '../backfill/keyset.js';
import type { Engine, EngineEvent } from '../runner.js';
import type { Change } from '../migration.js';
import { keyProbeSql, ctidProbeSql, type KeyColumn } from '../postgres/batch-sql.js';
import { sampleProbeTargets, wakeMs } from '../backfill/canary.js';
import { tableLabel } from '../postgres/identifiers.js';
import { MonitorMetrics } from './metrics.js';
import { LatencyProbe, type ProbeOptions, type ProbeTarget } from './probe.js';
import { RelativeWatch, type RelativeSettings, type RelativeWindow } from './relative.js';
import type { BreachAction, MonitorStore } from './store.js';
import { canaryLimitMs, canaryOver, checkCanary, checkErrors, checkMismatch, checkStall, type Finding, type ResolvedThresholds, type ThresholdName, type XactCounters } from './thresholds.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { sleep } from '../db/timing.js';

export interface MonitorSettings {
  readonly thresholds: ResolvedThresholds;
  /** On a breach, revert the in-flight change with its generated down (undo expand) instead of pausing. */
  readonly autoRollback: boolean;
  /** The monitor's canary probe; false = none (the canary threshold then never trips). */
  readonly canary: (ProbeOptions & { readonly sql?: string; readonly rebaselineAfterMs: number }) | false;
  /** How often a running backfill's figures are written to the state schema for status and the report. */
  readonly sampleEveryMs: number;
  /** How often thresholds are looked at between batches (stalls, a canary that recovers while paused). */
  readonly evaluateEveryMs: number;
  /** The relative triggers (the application's top queries and error rate against a baseline before the phase); false = off. */
  readonly relative?: RelativeSettings | false;
}

export interface OpenBreach extends Finding {
  readonly migration: string;
  readonly changeIndex: number | null;
  readonly at: Date;
  action: BreachAction;
}

export type MonitorEvent =
  | { readonly type: 'breach'; readonly breach: OpenBreach }
  | { readonly type: 'resolved'; readonly breach: OpenBreach; readonly resolution: string }
  | { readonly type: 'baseline'; readonly migration: string; readonly changeIndex: number; readonly p99Ms: number }
  | { readonly type: 'paused'; readonly migration: string; readonly changeIndex: number; readonly reasons: readonly string[] }
  | { readonly type: 'resumed'; readonly migration: string; readonly changeIndex: number; readonly pausedMs: number }
  | { readonly type: 'rolled-back'; readonly migration: string; readonly breaches: readonly OpenBreach[] }
  | { readonly type: 'rollback-failed'; readonly migration: string; readonly error: Error };

/** A change stopped (and, with autoRollback, reverted) because a threshold was crossed; the message says which and why. */
export class ThresholdBreachedError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'threshold-breached';
  override name = 'ThresholdBreachedError';
  constructor(
    message: string,
    readonly breaches: readonly OpenBreach[],
    readonly rolledBack: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface Watch {
  readonly migration: string;
  readonly changeIndex: number;
  progress: BackfillProgress;
  lastProgressAt: number;
  readonly rate: { at: number; rows: number }[];
  probe: LatencyProbe | null;
  ready: Promise<void>;
  /** The canary probe's start, which no batch waits for. */
  probeReady: Promise<void>;
  readonly batchStarts: number[];
  /** When the last batch ended (performance.now()) and how long its wake lasts: probes then are not baseline. */
  lastBatchEnd: number;
  lastWake: number;
  /** Since when the canary has been over its limit without a break (Date.now()), or null. */
  overSince: number | null;
  pausedWorkers: number;
  pausedSince: number;
  lastSampleAt: number;
  done: boolean;
  /** The relative triggers of this phase (null: off, or not started). */
  relative: RelativeWatch | null;
  relativeAt: number;
  relativeBusy: boolean;
}

const watchKey = (migration: string, changeIndex: number) => `${migration}#${changeIndex}`;

/**
 * Watches what the engine does (events) and stands before every backfill batch (a batch guard): keeps the Prometheus
 * metrics, runs a canary, compares everything to the thresholds, and on a breach pauses the backfill, or, with
 * autoRollback, stops it and reverts the change. Breaches and samples go to the state schema, so status and the
 * report show them from anywhere.
 */
export class Monitor {
  readonly metrics: MonitorMetrics;
  private engine: Engine | null = null;
  private changesOf: ((migration: string) => Promise<readonly Change[] | null>) | null = null;
  private readonly watches = new Map<string, Watch>();
  private readonly open = new Map<string, OpenBreach & { id: Promise<number | null> }>();
  private readonly errors: { at: number; kind: string }[] = [];
  private readonly listeners = new Set<(e: MonitorEvent) => void>();
  private current: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private queue: Promise<void> = Promise.resolve();
  private detach: (() => void)[] = [];
  private canarySuspended = 0;
  /** Our own transactions (batches, probes, state writes) and rollbacks (retries, failed probes): not the application's. */
  private readonly own = { commits: 0, rollbacks: 0 };

  constructor(
    private readonly knex: Knex,
    readonly store: MonitorStore,
    readonly settings: MonitorSettings,
    metrics?: MonitorMetrics,
    private readonly log: (message: Record<string, unknown>) => void = () => {},
  ) {
    this.metrics = metrics ?? new MonitorMetrics();
  }

  /**
   * No canary probe for the backfills that start until the returned function is called (`--canary off`: an emergency
   * rollback must not be held by the application's read latency). Probes already running go on.
   */
  suspendCanary(): () => void {
    this.canarySuspended++;
    let resumed = false;
    return () => {
      if (!resumed) this.canarySuspended--;
      resumed = true;
    };
  }

  /** Starts watching an engine; `changesOf` finds a migration's changes (to pick the canary's table). */
  attach(engine: Engine, changesOf: (migration: string) => Promise<readonly Change[] | null>): () => void {
    this.engine = engine;
    this.changesOf = changesOf;
    this.detach.push(engine.subscribe((e) => this.onEvent(e)));
    this.detach.push(engine.addBatchGuard((p) => this.guard(p)));
    return () => this.close();
  }

  on(listener: (e: MonitorEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** An error the application (or a dual writer) saw, counted by the error-rate threshold. */
  recordError(kind: string): void {
    const now = Date.now();
    this.errors.push({ at: now, kind });
    this.metrics.errors.inc({ kind });
    while (this.errors.length > 0 && this.errors[0]!.at < now - this.settings.thresholds.errorWindowMs) this.errors.shift();
  }

  /** How far a second store trails the first, from a dual writer (the PostgreSQL sync triggers have none: same transaction). */
  recordDualWriteLag(seconds: number, source = 'default'): void {
    this.metrics.dualWriteLag.set({ source }, seconds);
  }

  /** Breaches crossed in this process and not resolved yet. */
  openBreaches(migration?: string): OpenBreach[] {
    return [...this.open.values()].filter((b) => migration === undefined || b.migration === migration);
  }

  /** Waits until every breach and sample has been written to the state schema. */
  async flush(): Promise<void> {
    await this.queue;
  }

  async close(): Promise<void> {
    for (const d of this.detach.splice(0)) d();
    await this.stopWatches();
    await this.flush();
  }

  // ---- the engine's side --------------------------------------------------------------------------------------

  /**
   * Runs an expand under watch. When it fails with a breach open, the error says which threshold and why; with
   * autoRollback the change is first reverted with its generated down, inside the same migration lock.
   */
  async runExpand(migration: string, changes: readonly Change[], run: () => Promise<void>): Promise<void> {
    // Breaches of an earlier attempt stay on record (status shows them) but do not judge this one.
    for (const [k, b] of this.open) if (b.migration === migration) this.open.delete(k);
    try {
      await run();
      // Breaches left open by an earlier attempt (a rollback, a stop) are over once the expand has finished.
      await this.persist(() => this.store.resolveMigration(migration, 'the expand finished'));
    } catch (err) {
      await this.flush();
      const breaches = this.openBreaches().filter((b) => b.migration === migration || b.threshold === 'error-rate');
      if (breaches.length === 0 || err instanceof BackfillInterrupted) throw err;
      const why = breaches.map((b) => `  - ${b.threshold}: ${b.message}`).join('\n');
      if (!this.settings.autoRollback) {
        throw new ThresholdBreachedError(
          `${migration}: stopped because a threshold was crossed:\n${why}\nNothing was reverted (autoRollback is off): ${(err as Error).message}`,
          breaches,
          false,
          { cause: err },
        );
      }
      if (!this.engine) throw err;
      try {
        await this.engine.undoExpand(migration, changes);
      } catch (rbErr) {
        for (const b of breaches) this.setAction(b, 'rollback-failed');
        this.emit({ type: 'rollback-failed', migration, error: rbErr as Error });
        await this.flush();
        throw new ThresholdBreachedError(
          `${migration}: stopped because a threshold was crossed:\n${why}\nautoRollback tried to revert the change and failed: ${(rbErr as Error).message}\n` +
            'The steps that did run are recorded in the state schema; run `umzug up` to resume, or fix the cause first.',
          breaches,
          false,
          { cause: err },
        );
      }
      for (const b of breaches) this.setAction(b, 'rolled-back');
      this.metrics.rollbacks.inc({ migration });
      this.emit({ type: 'rolled-back', migration, breaches });
      this.log({ event: 'auto-rollback', migration, breaches: breaches.map((b) => b.message) });
      await this.flush();
      throw new ThresholdBreachedError(
        `${migration}: reverted by autoRollback because a threshold was crossed:\n${why}\n` +
          'The change was undone with its generated down: the schema is as it was before it, and the migration is pending again. ' +
          'Fix the cause, then run `umzug up`.',
        breaches,
        true,
        { cause: err },
      );
    } finally {
      await this.stopWatches(migration);
    }
  }

  private onEvent(e: EngineEvent): void {
    switch (e.type) {
      case 'step':
        this.current = e.migration;
        this.metrics.steps.inc({ phase: e.phase, status: e.status });
        break;
      case 'lock-retry':
        this.current = e.migration;
        this.metrics.lockRetries.inc({ migration: e.migration, phase: e.phase, code: e.retry.code });
        this.recordError(`lock retry (${e.retry.code})`);
        this.own.rollbacks++;
        break;
      case 'backfill-retry':
        // A batch that met a lock timeout, deadlock, serialization failure or lost connection: the same signal as a
        // DDL lock retry (someone else holds the rows), counted towards the error rate.
        this.metrics.lockRetries.inc({ migration: e.migration, phase: e.phase, code: e.retry.code });
        this.recordError(`backfill batch retry (${e.retry.code})`);
        this.own.rollbacks++;
        break;
      case 'backfill':
        this.onProgress(e.progress);
        break;
      case 'verify': {
        this.current = e.migration;
        const labels = { migration: e.migration, change: String(e.changeIndex) };
        const r = e.result;
        this.metrics.consistencyRatio.set(labels, r.rowsChecked > 0 ? 1 - r.mismatches / r.rowsChecked : 1);
        const f = checkMismatch(r, this.settings.thresholds, `${e.migration} change #${e.changeIndex + 1}`);
        if (f) this.breach(f, e.migration, e.changeIndex, 'stopped');
        break;
      }
      case 'phase':
        if (e.phase === 'expand' && e.status === 'done') {
          for (const [k, b] of this.open) {
            if (b.migration === e.migration && b.changeIndex === e.changeIndex) this.resolve(k, 'the expand finished after all');
          }
        }
        break;
      default:
        break;
    }
  }

  private onProgress(p: BackfillProgress): void {
    this.current = p.migration;
    const w = this.watches.get(watchKey(p.migration, p.changeIndex));
    const now = Date.now();
    const labels = { migration: p.migration, change: String(p.changeIndex) };
    if (w) {
      const started = w.batchStarts.shift();
      if (started !== undefined) {
        const ended = performance.now();
        this.metrics.batchDuration.observe(labels, (ended - started) / 1000);
        w.lastBatchEnd = ended;
        w.lastWake = wakeMs(ended - started);
      }
      w.progress = p;
      w.lastProgressAt = now;
      w.rate.push({ at: now, rows: p.rowsDone });
      const stall = this.open.get(this.breachKey('no-progress', p.migration, p.changeIndex));
      if (stall) this.resolve(this.breachKey('no-progress', p.migration, p.changeIndex), 'the backfill moved again');
    }
    this.metrics.rowsDone.set(labels, p.rowsDone);
    this.metrics.progressRatio.set(labels, p.done ? 1 : p.totalEstimate > 0 ? Math.min(1, p.rowsDone / p.totalEstimate) : 0);
    if (w) this.metrics.rowsPerSecond.set(labels, rate(w) ?? 0);
    if (p.done && w && !w.done) {
      w.done = true;
      this.sample(w, true);
      void this.stopWatch(w);
    }
  }

  private async guard(p: BackfillProgress): Promise<void> {
    const w = this.watch(p);
    await w.ready;
    this.own.commits++;
    w.progress = p;
    this.evaluate();
    let blocking = this.blocking(w);
    if (blocking.length > 0) {
      if (this.settings.autoRollback) {
        for (const b of blocking) this.setAction(b, 'stopped');
        throw new ThresholdBreachedError(`backfill stopped: ${blocking.map((b) => b.message).join(' ')}`, blocking, false);
      }
      const started = Date.now();
      if (w.pausedWorkers++ === 0) {
        w.pausedSince = started;
        this.metrics.paused.set({ migration: w.migration, change: String(w.changeIndex) }, 1);
        for (const b of blocking) if (b.action !== 'paused') this.setAction(b, 'paused');
        this.emit({ type: 'paused', migration: w.migration, changeIndex: w.changeIndex, reasons: blocking.map((b) => b.message) });
        this.log({ event: 'backfill-paused', migration: w.migration, change: w.changeIndex, reasons: blocking.map((b) => b.message) });
        this.sample(w, true);
      }
      try {
        while (blocking.length > 0) {
          // The engine's stop, SIGINT's included (withSignal), not only options.signal: Ctrl-C during a pause stops it.
          if (this.engine?.stopping) throw new BackfillInterrupted('stopped while paused by a threshold breach; progress so far is kept');
          await sleep(Math.min(200, this.settings.evaluateEveryMs));
          this.evaluate();
          blocking = this.blocking(w);
          this.rebaselineIfOurPauseDidNotHelp(w, blocking, started);
          this.rebaselineRelativeIfOurPauseDidNotHelp(w, blocking, started);
          if (blocking.length > 0 && this.settings.autoRollback) {
            throw new ThresholdBreachedError(`backfill stopped: ${blocking.map((b) => b.message).join(' ')}`, blocking, false);
          }
        }
      } finally {
        if (--w.pausedWorkers === 0) {
          this.metrics.paused.set({ migration: w.migration, change: String(w.changeIndex) }, 0);
          w.lastProgressAt = Date.now(); // a pause of ours is not a stall
          this.emit({ type: 'resumed', migration: w.migration, changeIndex: w.changeIndex, pausedMs: Date.now() - started });
          this.sample(w, true);
        }
      }
    }
    w.batchStarts.push(performance.now());
    if (w.batchStarts.length > 64) w.batchStarts.shift();
  }

  /**
   * Reads that stay slow for long with the backfill paused are slow for reasons of their own (more traffic, another
   * job): holding the backfill would stall it for good. The canary's baseline moves to what it measures now, the
   * breach is closed saying so, and the backfill goes on, still watched against the new baseline.
   */
  private rebaselineIfOurPauseDidNotHelp(w: Watch, blocking: readonly OpenBreach[], pausedAt: number): void {
    const c = this.settings.canary;
    if (c === false || !w.probe || Date.now() - pausedAt < c.rebaselineAfterMs) return;
    if (blocking.length !== 1 || blocking[0]!.threshold !== 'canary') return;
    const recent = w.probe.recent();
    if (!recent) return;
    const was = w.probe.baselineP99Ms;
    w.probe.baselineP99Ms = recent.p99Ms;
    w.overSince = null;
    w.probe.frozen = false;
    this.metrics.canaryBaseline.set({ migration: w.migration, change: String(w.changeIndex) }, recent.p99Ms / 1000);
    this.resolve(
      this.breachKey('canary', w.migration, w.changeIndex),
      `reads stayed slow (p99 ${recent.p99Ms.toFixed(2)} ms) for ${Math.round((Date.now() - pausedAt) / 1000)} s with the backfill paused, so the backfill is not the cause: ` +
        `the new baseline is ${recent.p99Ms.toFixed(2)} ms (was ${was.toFixed(2)} ms)`,
    );
  }

  /**
   * Breaches that hold this backfill: its canary and relative triggers, and the error rate. A mismatch stops the phase
   * itself; a stall is only told.
   */
  private blocking(w: Watch): OpenBreach[] {
    return [...this.open.values()].filter(
      (b) =>
        ((b.threshold === 'canary' || b.threshold === 'query-latency' || b.threshold === 'error-ratio') && b.migration === w.migration && b.changeIndex === w.changeIndex) ||
        b.threshold === 'error-rate',
    );
  }

  /**
   * The relative triggers' counterpart of the canary's rebaseline: the application's queries (or its error rate)
   * still over with the backfill paused for rebaselineAfter are so for reasons of their own; the last window becomes
   * their baseline and the backfill goes on.
   */
  private rebaselineRelativeIfOurPauseDidNotHelp(w: Watch, blocking: readonly OpenBreach[], pausedAt: number): void {
    const r = w.relative;
    if (!r || Date.now() - pausedAt < r.settings.rebaselineAfterMs || blocking.length === 0) return;
    if (!blocking.every((b) => b.threshold === 'query-latency' || b.threshold === 'error-ratio')) return;
    // Only on a window measured entirely while paused.
    if (w.relativeAt - r.settings.windowMs < pausedAt) return;
    const moved = r.rebaseline(this.settings.thresholds);
    const why = `still over after ${Math.round((Date.now() - pausedAt) / 1000)} s with the backfill paused, so the backfill is not the cause: the last window is the new baseline (${moved})`;
    r.last = null;
    for (const b of blocking) this.resolve(this.breachKey(b.threshold, w.migration, w.changeIndex), why);
  }

  // ---- watching ----------------------------------------------------------------------------------------------

  private watch(p: BackfillProgress): Watch {
    const k = watchKey(p.migration, p.changeIndex);
    let w = this.watches.get(k);
    if (w) return w;
    const now = Date.now();
    w = {
      migration: p.migration,
      changeIndex: p.changeIndex,
      progress: p,
      lastProgressAt: now,
      rate: [{ at: now, rows: p.rowsDone }],
      probe: null,
      ready: Promise.resolve(),
      probeReady: Promise.resolve(),
      batchStarts: [],
      lastBatchEnd: -Infinity,
      lastWake: 0,
      overSince: null,
      pausedWorkers: 0,
      pausedSince: 0,
      lastSampleAt: 0,
      done: false,
      relative: null,
      relativeAt: 0,
      relativeBusy: false,
    };
    this.watches.set(k, w);
    const watch = w;
    // The first batch waits for the relative triggers' baseline (pg_stat_statements before the backfill), not for the
    // canary's start: picking its targets reads the change again and samples the table (a quarter of a second on a
    // 1M-row table), and a canary without a baseline can breach nothing anyway.
    w.probeReady = this.startProbe(watch).catch((e: unknown) => this.log({ event: 'canary-unavailable', migration: p.migration, reason: (e as Error).message }));
    w.ready = this.startRelative(watch).catch((e: unknown) => this.log({ event: 'relative-unavailable', migration: p.migration, reason: (e as Error).message }));
    this.startTimer();
    return w;
  }

  private async startProbe(w: Watch): Promise<void> {
    const c = this.settings.canary;
    // PGlite has one connection: a probe beside the backfill is not possible there.
    if (c === false || this.canarySuspended > 0 || this.engine?.db.isEmbedded) return;
    const target = c.sql ? { label: 'the canary query', sql: c.sql, params: [] } : await this.defaultTarget(w);
    if (!target) return;
    const labels = { migration: w.migration, change: String(w.changeIndex) };
    const probe = new LatencyProbe(
      this.knex,
      target,
      { ...c, sessionSettings: this.engine?.db.pooling !== 'transaction', onConnect: (pid) => this.engine?.db.ownPids.add(pid) },
      (ms) => {
        this.own.commits++;
        this.metrics.canaryLatency.observe(labels, ms / 1000);
      },
      () => {
        this.own.commits--;
        this.own.rollbacks++;
        this.recordError('canary probe failed');
      },
    );
    // Same split as the pacer's canary: probes during a batch or its wake measure the backfill, the others the application.
    probe.busy = () => w.batchStarts.length > 0 || performance.now() - w.lastBatchEnd < w.lastWake;
    probe.onBaseline = (p99Ms) => {
      this.metrics.canaryBaseline.set(labels, p99Ms / 1000);
      this.emit({ type: 'baseline', migration: w.migration, changeIndex: w.changeIndex, p99Ms });
    };
    if (!(await probe.start())) return;
    w.probe = probe;
  }

  /**
   * The relative triggers' baseline, before the first batch: the application's top queries in pg_stat_statements and
   * its error ratio. Without pg_stat_statements only the error ratio is watched (the log and status say so).
   */
  private async startRelative(w: Watch): Promise<void> {
    const r = this.settings.relative;
    if (!r || !this.engine || this.engine.db.isEmbedded) return;
    const watch: RelativeWatch = new RelativeWatch(this.engine.db, r, this.store.stateSchema, (): XactCounters => ({
      commits: this.own.commits + watch.ownReads,
      rollbacks: this.own.rollbacks,
    }));
    await watch.start();
    if (watch.note) this.log({ event: 'relative-note', migration: w.migration, change: w.changeIndex, note: watch.note });
    w.relative = watch;
    w.relativeAt = Date.now();
  }

  /** Reads the relative triggers' counters once a window has passed, and judges it. */
  private tickRelative(w: Watch): void {
    const r = w.relative;
    if (!r || w.relativeBusy || w.done || Date.now() - w.relativeAt < r.settings.windowMs) return;
    w.relativeBusy = true;
    w.relativeAt = Date.now();
    void r
      .tick(this.settings.thresholds)
      .then((win) => {
        this.recordRelative(w, win);
        this.evaluate();
      })
      .catch((e: unknown) => this.log({ event: 'relative-failed', migration: w.migration, reason: (e as Error).message }))
      .finally(() => {
        w.relativeBusy = false;
      });
  }

  private recordRelative(w: Watch, win: RelativeWindow): void {
    const t = this.settings.thresholds;
    const base = { migration: w.migration, changeIndex: w.changeIndex };
    const rows = [
      ...win.latencies.map((q) => ({ ...base, kind: 'query' as const, queryid: q.queryid, query: q.query, value: q.meanMs, baseline: q.baselineMeanMs, limit: Math.max(q.baselineMeanMs * t.queryLatencyFactor, q.baselineMeanMs + t.queryLatencyMinIncreaseMs), calls: q.calls })),
      ...(win.error ? [{ ...base, kind: 'errors' as const, queryid: null, query: null, value: win.error.ratio, baseline: win.error.baseline, limit: win.error.baseline + t.errorRateIncrease, calls: win.error.xacts }] : []),
    ];
    void this.persist(() => this.store.addQuerySamples(rows));
  }

  /** A read by key of the table the backfill walks, over keys from a block sample (no full scan). */
  private async defaultTarget(w: Watch): Promise<ProbeTarget | null> {
    if (!this.engine || !this.changesOf) return null;
    const changes = await this.changesOf(w.migration);
    const change = changes?.[w.changeIndex];
    const st = change ? await this.engine.state.getChange(w.migration, w.changeIndex) : null;
    if (!change || !st) return null;
    // A repair walks the expand's backfill again.
    const plan = change.describe(st.snapshot, this.engine.ctx)[w.progress.phase === 'repair' ? 'expand' : w.progress.phase];
    const table = plan.backfill?.table;
    if (!table) return null;
    let keys: KeyColumn[] | 'ctid';
    try {
      keys = this.engine.keyColumns(st.snapshot, table);
    } catch {
      keys = 'ctid';
    }
    const targets = await sampleProbeTargets(this.engine.db, table, keys);
    if (targets.length === 0) return null;
    return {
      label: `a read of one ${tableLabel(table)} row by key`,
      sql: keys === 'ctid' ? ctidProbeSql(table) : keyProbeSql(table, keys),
      params: targets,
    };
  }

  private startTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.evaluate();
      for (const w of this.watches.values()) this.tickRelative(w);
      for (const w of this.watches.values()) if (!w.done && Date.now() - w.lastSampleAt >= this.settings.sampleEveryMs) this.sample(w, false);
    }, this.settings.evaluateEveryMs);
    this.timer.unref();
  }

  private async stopWatch(w: Watch): Promise<void> {
    this.watches.delete(watchKey(w.migration, w.changeIndex));
    await w.ready;
    await w.probeReady;
    await w.probe?.stop();
    w.probe = null;
    for (const name of ['canary', 'query-latency', 'error-ratio'] as const) {
      const k = this.breachKey(name, w.migration, w.changeIndex);
      if (this.open.get(k)?.action === 'paused') this.resolve(k, 'the backfill ended');
    }
    if (this.watches.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Stops the canaries (of one migration, or all): the command that ran the backfills is over. */
  async stopWatches(migration?: string): Promise<void> {
    for (const w of [...this.watches.values()]) if (migration === undefined || w.migration === migration) await this.stopWatch(w);
  }

  // ---- thresholds ------------------------------------------------------------------------------------------

  /** Compares the current figures with the thresholds; opens and resolves breaches. */
  evaluate(): void {
    const t = this.settings.thresholds;
    const now = Date.now();
    for (const w of this.watches.values()) {
      const labels = { migration: w.migration, change: String(w.changeIndex) };
      const recent = w.probe?.recent();
      const ck = this.breachKey('canary', w.migration, w.changeIndex);
      // No canary judgement before the first baseline (the first idle probes, a second or two).
      if (w.probe && recent && w.probe.baselineP99Ms > 0) {
        const baselineMs = w.probe.baselineP99Ms;
        this.metrics.canaryP50.set(labels, recent.p50Ms / 1000);
        this.metrics.canaryP99.set(labels, recent.p99Ms / 1000);
        this.metrics.canaryBaseline.set(labels, baselineMs / 1000);
        const over = canaryOver({ p99Ms: recent.p99Ms, baselineMs }, t);
        w.probe.frozen = over;
        w.overSince = over ? (w.overSince ?? now) : null;
        // One slow spell stays in the window for a whole window; over for several windows running, reads really are
        // slower than the pacer's budget allows, which the pacer alone is meant to prevent: that is a breach.
        const overForMs = w.overSince === null ? 0 : now - w.overSince;
        const sustained = over && overForMs >= (t.canarySustainedWindows - 1) * w.probe.windowMs;
        const f = sustained ? checkCanary({ ...recent, baselineMs, windowMs: w.probe.windowMs, probe: w.probe.target.label, overForMs: overForMs + w.probe.windowMs }, t) : null;
        if (f) this.breach(f, w.migration, w.changeIndex, this.holdAction());
        // A breach that stopped or reverted the change stays open (status red) until the change runs through.
        else if (!over && this.open.get(ck)?.action === 'paused') this.resolve(ck, `the canary is back to ${recent.p99Ms.toFixed(2)} ms at p99`);
      }
      const win = w.relative?.last;
      if (win) {
        for (const [name, f, back] of [
          ['query-latency', win.latency, "the application's top queries are back within their limit"],
          ['error-ratio', win.error?.finding ?? null, "the application's error rate is back within its limit"],
        ] as const) {
          const k = this.breachKey(name, w.migration, w.changeIndex);
          if (f) this.breach(f, w.migration, w.changeIndex, this.holdAction());
          else if (this.open.get(k)?.action === 'paused') this.resolve(k, back);
        }
      }
      if (!w.done && w.pausedWorkers === 0) {
        const f = checkStall({ lastProgressAt: w.lastProgressAt, now, rowsDone: w.progress.rowsDone, totalEstimate: w.progress.totalEstimate, what: `${w.migration} change #${w.changeIndex + 1}` }, t);
        if (f) this.breach(f, w.migration, w.changeIndex, 'reported');
      }
    }
    while (this.errors.length > 0 && this.errors[0]!.at < now - t.errorWindowMs) this.errors.shift();
    const byKind = new Map<string, number>();
    for (const e of this.errors) byKind.set(e.kind, (byKind.get(e.kind) ?? 0) + 1);
    const f = checkErrors(byKind, t);
    const open = this.open.has(this.breachKey('error-rate', '', null));
    if (f && !open) this.breach(f, this.current ?? '(none)', null, this.holdAction());
    else if (!f && this.open.get(this.breachKey('error-rate', '', null))?.action === 'paused') this.resolve(this.breachKey('error-rate', '', null), 'the error rate is back under the limit');
  }

  /** What a breach that holds the backfill does: pause it, or (autoRollback) stop it for the revert. */
  private holdAction(): BreachAction {
    return this.settings.autoRollback ? 'stopped' : 'paused';
  }

  private breachKey(threshold: ThresholdName, migration: string, changeIndex: number | null): string {
    // Errors are counted for the whole process, not per migration: one breach at a time.
    if (threshold === 'error-rate') return threshold;
    return `${threshold}|${migration}|${changeIndex ?? ''}`;
  }

  private breach(f: Finding, migration: string, changeIndex: number | null, action: BreachAction): void {
    const k = this.breachKey(f.threshold, migration, changeIndex);
    if (this.open.has(k)) return;
    const b: OpenBreach & { id: Promise<number | null> } = { ...f, migration, changeIndex, at: new Date(), action, id: Promise.resolve(null) };
    b.id = this.persist(() => this.store.addBreach({ migration, changeIndex, threshold: f.threshold, message: f.message, value: f.value, limit: f.limit, action }));
    this.open.set(k, b);
    this.metrics.breached.set({ threshold: f.threshold, migration }, 1);
    this.emit({ type: 'breach', breach: b });
    this.log({ event: 'threshold-breached', threshold: f.threshold, migration, change: changeIndex, message: f.message });
  }

  private setAction(b: OpenBreach, action: BreachAction): void {
    b.action = action;
    const id = (b as { id?: Promise<number | null> }).id;
    if (id) void this.persist(async () => {
      const n = await id;
      if (n !== null) await this.store.setAction(n, action);
    });
  }

  private resolve(k: string, resolution: string): void {
    const b = this.open.get(k);
    if (!b) return;
    this.open.delete(k);
    this.metrics.breached.set({ threshold: b.threshold, migration: b.migration }, 0);
    void this.persist(async () => {
      const n = await b.id;
      if (n !== null) await this.store.resolve(n, resolution);
    });
    this.emit({ type: 'resolved', breach: b, resolution });
  }

  private sample(w: Watch, force: boolean): void {
    const now = Date.now();
    if (!force && now - w.lastSampleAt < this.settings.sampleEveryMs) return;
    w.lastSampleAt = now;
    const recent = w.probe?.recent() ?? null;
    const base = w.probe && w.probe.baselineP99Ms > 0 ? w.probe.baselineP99Ms : null;
    const p = w.progress;
    void this.persist(() =>
      this.store.addSample({
        migration: w.migration,
        changeIndex: w.changeIndex,
        rowsDone: p.rowsDone,
        totalEstimate: p.totalEstimate,
        rowsPerSecond: rate(w),
        canaryP50Ms: recent?.p50Ms ?? null,
        canaryP99Ms: recent?.p99Ms ?? null,
        canaryBaselineMs: base,
        canaryLimitMs: base === null ? null : canaryLimitMs(base, this.settings.thresholds),
        paused: w.pausedWorkers > 0,
      }),
    );
  }

  /** Writes go one after another, and a failed write (a lost connection) never fails the migration it describes. */
  private persist<T>(fn: () => Promise<T>): Promise<T | null> {
    this.own.commits++;
    const p = this.queue.then(fn).catch((e: unknown) => {
      this.log({ event: 'monitor-write-failed', reason: (e as Error).message });
      return null;
    });
    this.queue = p.then(() => undefined);
    return p;
  }

  private emit(e: MonitorEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a listener's failure must not fail the migration
      }
    }
  }
}

/** Rows per second over the last 10 s, measured up to now (a paused backfill falls to 0). */
function rate(w: Watch, now = Date.now()): number | null {
  // One point from before the window stays, as the base of the difference.
  while (w.rate.length > 1 && w.rate[1]!.at < now - 10_000) w.rate.shift();
  const a = w.rate[0];
  const b = w.rate[w.rate.length - 1];
  if (!a || !b || now <= a.at) return null;
  return ((b.rows - a.rows) * 1000) / (now - a.at);
}

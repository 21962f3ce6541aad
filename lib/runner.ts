import { runKeysetBackfill, DEFAULT_BACKFILL, type BackfillOptions, type BackfillProgress } from './backfill/keyset.js';
import type { BackfillSpec, Change, ChangeDescription, PhasePlan, Precondition, ResolveContext, Step, TaskSpec } from './migration.js';
import type { ThrottleEvent } from './backfill/throttle.js';
import { readCatalog, tableInfo, columnInfo, type CatalogSnapshot } from './postgres/catalog.js';
import { ChangeInputError, qualified, tableLabel, type TableName } from './postgres/identifiers.js';
import { LIVE_PARTITIONS_SQL } from './postgres/partitions.js';
import type { KeyColumn } from './postgres/batch-sql.js';
import { verifyConsistency, type VerifyResult } from './verify/consistency.js';
import type { Db } from './db/db.js';
import { formatDuration } from './db/duration.js';
import { DEFAULT_LOCK_SAFETY, runStepLockSafe, type LockSafetyOptions, type RetryEvent } from './engine/executor.js';
import { StateStore, type PhaseName } from './engine/state.js';
import type { LeaseTiming } from './engine/lease.js';
import type { KnexHistoryTable } from './postgres/knex-history.js';
import { countConversionErrors, forgetConversionErrors, isUndoableFailure, preflightMessage, PreflightFailedError, runPreflight, settleConversionErrors } from './engine/preflight.js';
import { VerificationFailedError, ZeroDowntimeError, type ZeroDowntimeErrorCode } from './db/errors.js';

export type EngineEvent =
  | { readonly type: 'step'; readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName; readonly step: string; readonly status: 'done' | 'skipped' }
  | { readonly type: 'lock-retry'; readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName; readonly retry: RetryEvent }
  | { readonly type: 'backfill'; readonly progress: BackfillProgress }
  | { readonly type: 'backfill-retry'; readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName; readonly retry: { readonly attempt: number; readonly code: string; readonly delayMs: number } }
  | { readonly type: 'backfill-throttle'; readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName; readonly throttle: ThrottleEvent }
  | { readonly type: 'verify'; readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName; readonly result: VerifyResult }
  | { readonly type: 'phase'; readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName; readonly status: 'done' }
  | { readonly type: 'task'; readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName; readonly task: string; readonly kind: string; readonly status: 'progress' | 'done' | 'skipped'; readonly progress?: TaskProgress };

/** Progress a task runner reports: items done of an estimated total, and a line for people. */
export interface TaskProgress {
  readonly done: number;
  readonly total: number | null;
  readonly message?: string;
  /** A task that walks rows reports them like a backfill too, so the monitor and progress bars follow it. */
  readonly backfill?: BackfillProgress;
}

/** What a task runner gets: where it runs, the engine (its Db and state), and a way to report progress. */
export interface TaskContext {
  readonly engine: Engine;
  readonly migration: string;
  readonly changeIndex: number;
  readonly phase: PhaseName;
  readonly snapshot: CatalogSnapshot;
  readonly signal?: AbortSignal;
  progress(p: TaskProgress): void;
  /** Batch guards (throttle, canary, thresholds), for runners that work in batches. */
  beforeBatch(progress: BackfillProgress): Promise<void>;
}

export type TaskRunner = (task: TaskSpec, ctx: TaskContext) => Promise<void>;

export interface EngineOptions {
  readonly stateSchema: string;
  readonly defaultSchema: string;
  readonly lock: LockSafetyOptions;
  readonly backfill: BackfillOptions;
  readonly verifyChunkSize: number;
  /**
   * Timing of the leases behind a transaction pooler (`lock.leaseTimeout`): the migration lock's, and the backfill
   * workers' (a dead worker's chunks are free once its lease has timed out). Default DEFAULT_LEASE_TIMING.
   */
  readonly leaseTiming?: LeaseTiming;
  /** A Knex project's migrations table, kept as part of the history (see StateStore). */
  readonly knexHistory?: KnexHistoryTable | null;
  readonly onEvent?: (e: EngineEvent) => void;
  readonly signal?: AbortSignal;
}

export const DEFAULT_ENGINE_OPTIONS: EngineOptions = Object.freeze({
  stateSchema: 'zero_downtime',
  defaultSchema: 'public',
  lock: DEFAULT_LOCK_SAFETY,
  backfill: DEFAULT_BACKFILL,
  verifyChunkSize: 10_000,
});

/** An expand that failed and was undone; `cause` is the failure. */
export class ExpandUndoneError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'expand-undone';
  override name = 'ExpandUndoneError';
  constructor(
    message: string,
    override readonly cause: unknown,
  ) {
    super(message);
  }
}

/**
 * Moves a change's rows during its expand, behind one face for `umzug backfill`, `status` and `verify` (the way a
 * Kysely dialect supplies an adapter): the keyset backfill is built in; others (the MongoDB copy) register with
 * `registerMover`, and the first whose `handles` accepts a change moves it.
 */
export interface Mover {
  readonly kind: string;
  handles(change: Change): boolean;
  /** A label for the progress display when the change's copy can run now (its expand steps done, its copy not), else null. */
  pending(engine: Engine, migration: string, changeIndex: number, change: Change): Promise<string | null>;
  /** Runs or joins the copy outside `up` (`umzug backfill`), resumable; a stop throws BackfillInterrupted. */
  run(engine: Engine, migration: string, changeIndex: number, change: Change, opts: MoverRunOptions): Promise<BackfillProgress>;
  /** A full comparison of source and target, recorded for the contract gate; null when there is nothing to compare. */
  verify(engine: Engine, migration: string, changeIndex: number, change: Change): Promise<MoverVerification | null>;
  /**
   * Re-syncs the rows a verification found different (`verify --repair`); null when the change has no copy to run
   * again. A mover without it cannot repair: `verify --repair` says so and what to do instead.
   */
  repair?(engine: Engine, migration: string, changeIndex: number, change: Change, opts: MoverRunOptions): Promise<BackfillProgress | null>;
  /** Counts of a copy from another system, for `status`; null when the mover has none to add. */
  status(engine: Engine, change: Change): Promise<CopyStatus | null>;
}

export interface MoverRunOptions {
  readonly options?: Partial<BackfillOptions>;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: BackfillProgress) => void;
}

export interface MoverVerification extends VerifyResult {
  /** Counts on both sides, for a copy from another system. */
  readonly source?: SourceCounts;
}

/** A validation of a copy from another system: its counts on both sides. */
export interface SourceCounts {
  /** The source system, as people name it (`MongoDB`). */
  readonly system: string;
  readonly sourceCount: number;
  readonly targetCount: number;
  readonly quarantineCount: number;
  readonly mismatchRate: number;
  readonly chunks: number;
  readonly bisections: number;
}

/** A copy from another system as `status` shows it: items read from the source, rows written, items set aside. */
export interface CopyStatus {
  readonly system: string;
  /** What the source holds (`documents`). */
  readonly items: string;
  readonly read: number;
  readonly written: number;
  readonly quarantined: number;
}

/** The built-in mover: the change's expand BackfillSpec, walked in keyset batches; verified by its VerifySpec. */
const keysetMover: Mover = {
  kind: 'keyset',
  handles: () => true,
  async pending(engine, migration, changeIndex, change) {
    const st = await engine.state.getChange(migration, changeIndex);
    if (!st || st.expandFinishedAt) return null;
    const plan = change.describe(st.snapshot, engine.ctx).expand;
    if (!plan.backfill) return null;
    const bf = await engine.state.getBackfill(migration, changeIndex, 'expand');
    if (bf?.done) return null;
    const done = await engine.state.doneSteps(migration, changeIndex, 'expand');
    if (!plan.steps.every((s) => done.has(s.id))) return null; // its column or trigger does not exist yet
    return `${migration.replace(/:expand$/, '')} #${changeIndex + 1} ${tableLabel(plan.backfill.table)}`;
  },
  async run(engine, migration, changeIndex, change, opts) {
    const st = await engine.state.getChange(migration, changeIndex);
    if (!st) throw new Error(`${migration}: change #${changeIndex + 1} has not started; run \`umzug up\` first.`);
    const spec = change.describe(st.snapshot, engine.ctx).expand.backfill;
    if (!spec) throw new Error(`${migration}: change #${changeIndex + 1} (${change.kind}) has no backfill to run.`);
    return engine.runBackfill({ migration, changeIndex, phase: 'expand' }, spec, st.snapshot, opts);
  },
  verify: (engine, migration, changeIndex, change) => engine.verify(migration, changeIndex, change),
  repair: (engine, migration, changeIndex, change, opts) => engine.repair(migration, changeIndex, change, opts),
  status: async () => null,
};

export interface GateStatus {
  readonly open: boolean;
  /** Plain-words reasons the contract must wait; empty when open. */
  readonly reasons: readonly string[];
  readonly opensAt: Date | null;
}

export interface GateOptions {
  readonly safetyWindowMs: number;
  readonly now?: Date;
  /** Current rollout of a read flag, 0–100; undefined when the flag store is not configured. */
  readonly flagPercent?: (name: string) => Promise<number | undefined>;
  /** When a read flag last reached 100 % (null when below): the flag must then stay there for the safety window. */
  readonly flagFullSince?: (name: string) => Promise<Date | null>;
}

/** Runs the phases of typed changes; the changes only describe, this is the one place that executes. */
export class Engine {
  readonly state: StateStore;
  readonly ctx: ResolveContext;
  private readonly listeners = new Set<(e: EngineEvent) => void>();
  private readonly batchGuards = new Set<(p: BackfillProgress) => Promise<void>>();
  private readonly taskRunners = new Map<string, TaskRunner>();
  private readonly movers: Mover[] = [];

  constructor(
    readonly db: Db,
    readonly options: EngineOptions = DEFAULT_ENGINE_OPTIONS,
  ) {
    this.state = new StateStore(db, options.stateSchema, options.knexHistory ?? null);
    this.ctx = { defaultSchema: options.defaultSchema, stateSchema: options.stateSchema };
    if (options.onEvent) this.listeners.add(options.onEvent);
  }

  private interruptSignal: AbortSignal | undefined;
  private backfillOverrides: Partial<BackfillOptions> = {};

  /**
   * Runs `f` with backfill options on top of the configured ones (the bin's `--canary off`, `--pace`), for every
   * backfill it starts: an expand's, a contract's archive fill, an undo's restore.
   */
  async withBackfillOptions<T>(overrides: Partial<BackfillOptions>, f: () => Promise<T>): Promise<T> {
    const previous = this.backfillOverrides;
    this.backfillOverrides = { ...previous, ...overrides };
    try {
      return await f();
    } finally {
      this.backfillOverrides = previous;
    }
  }

  /**
   * Runs `f` with a stop signal for the backfills and tasks it starts (the bin's `up` passes SIGINT's), on top of
   * `options.signal`: a stopped backfill ends after its current batch, with its progress committed.
   */
  async withSignal<T>(signal: AbortSignal, f: () => Promise<T>): Promise<T> {
    const previous = this.interruptSignal;
    this.interruptSignal = previous ? AbortSignal.any([previous, signal]) : signal;
    try {
      return await f();
    } finally {
      this.interruptSignal = previous;
    }
  }

  /** Whether a stop was asked for (options.signal, or the signal of the withSignal() running now: the bin's SIGINT). */
  get stopping(): boolean {
    return this.stopSignal()?.aborted === true;
  }

  private stopSignal(): AbortSignal | undefined {
    const own = this.options.signal;
    const extra = this.interruptSignal;
    return own && extra ? AbortSignal.any([own, extra]) : (own ?? extra);
  }

  /** Listens to every step, retry, backfill batch and verification; returns the function that stops listening. */
  subscribe(listener: (e: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Adds a check awaited before every backfill batch (throttle, health check, threshold); returns its remover. */
  addBatchGuard(guard: (p: BackfillProgress) => Promise<void>): () => void {
    this.batchGuards.add(guard);
    return () => this.batchGuards.delete(guard);
  }

  /** Registers a mover, asked before the ones registered earlier and the built-in keyset backfill; returns its remover. */
  registerMover(mover: Mover): () => void {
    this.movers.unshift(mover);
    return () => void this.movers.splice(this.movers.indexOf(mover), 1);
  }

  /** The mover of a change's rows: a registered one that handles it, else the keyset backfill. */
  moverFor(change: Change): Mover {
    return this.movers.find((m) => m.handles(change)) ?? keysetMover;
  }

  /** Registers the runner of a kind of TaskSpec (e.g. `mongo-backfill`); returns its remover. */
  registerTaskRunner(kind: string, runner: TaskRunner): () => void {
    this.taskRunners.set(kind, runner);
    return () => this.taskRunners.delete(kind);
  }

  private async runTasks(migration: string, changeIndex: number, phase: PhaseName, tasks: readonly TaskSpec[], snapshot: CatalogSnapshot, done: ReadonlySet<string>): Promise<void> {
    for (const task of tasks) {
      const id = `task:${task.id}`;
      const base = { type: 'task' as const, migration, changeIndex, phase, task: task.description, kind: task.kind };
      if (done.has(id)) {
        this.emit({ ...base, status: 'skipped' });
        continue;
      }
      const runner = this.taskRunners.get(task.kind);
      if (!runner) {
        throw new Error(
          `${migration}: change #${changeIndex + 1} needs a "${task.kind}" task runner (${task.description}), and none is registered. ` +
            'The steps before it are done and recorded; configure what it needs (e.g. `mongo: { url }` in zeroDowntime()) and run again.',
        );
      }
      const signal = this.stopSignal();
      await runner(task, {
        engine: this,
        migration,
        changeIndex,
        phase,
        snapshot,
        ...(signal ? { signal } : {}),
        progress: (progress) => {
          this.emit({ ...base, status: 'progress', progress });
          if (progress.backfill) this.emit({ type: 'backfill', progress: progress.backfill });
        },
        beforeBatch: async (progress) => {
          for (const guard of this.batchGuards) await guard(progress);
        },
      });
      await this.db.transaction((conn) => this.state.recordStep(conn, migration, changeIndex, phase, id, task.description));
      this.emit({ ...base, status: 'done' });
    }
  }

  private emit(e: EngineEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a listener's failure must not fail the migration it watches
      }
    }
  }

  /** Checks input against the live catalog; throws ChangeInputError listing every problem, having changed nothing. */
  async prepare(migration: string, changeIndex: number, change: Change): Promise<{ description: ChangeDescription; snapshot: CatalogSnapshot }> {
    await this.state.ensure();
    const existing = await this.state.getChange(migration, changeIndex);
    if (existing) return { description: change.describe(existing.snapshot, this.ctx), snapshot: existing.snapshot };
    const snapshot = await this.db.withConnection((c) => readCatalog(c, change.tables(this.ctx)));
    const problems = checkPreconditions(snapshot, change.preconditions(this.ctx));
    if (problems.length > 0) {
      throw new ChangeInputError(
        `${migration}: change #${changeIndex + 1} (${change.kind}) cannot run: ${problems.join('; ')}. Nothing was changed in the database; fix the migration and run again.`,
      );
    }
    const description = change.describe(snapshot, this.ctx);
    return { description, snapshot };
  }

  async expand(migration: string, changes: readonly Change[]): Promise<void> {
    // Check every change first, so that bad input in change #3 does not leave #1 and #2 half-applied.
    const prepared = [];
    for (const [i, change] of changes.entries()) prepared.push(await this.prepare(migration, i, change));
    // Rows the changes' expressions cannot convert, before anything is installed (a change already started was checked
    // when it started).
    for (const [i, change] of changes.entries()) {
      if (await this.state.getChange(migration, i)) continue;
      const { description, snapshot } = prepared[i]!;
      for (const check of description.expand.preflight ?? []) {
        const info = tableInfo(snapshot, check.table);
        const keys = info && info.primaryKey.length > 0 ? this.keyColumns(snapshot, check.table) : [];
        const result = await runPreflight(this.db, check, keys);
        if (result.failing > 0) throw new PreflightFailedError(preflightMessage(`${migration}: change #${i + 1} (${change.kind}) cannot run`, check, result), result);
      }
    }
    try {
      for (const [i, change] of changes.entries()) {
        const { description, snapshot } = prepared[i]!;
        await this.state.startChange(migration, i, change.kind, description.summary, snapshot);
        await this.runPhase(migration, i, 'expand', description.expand, snapshot);
        await this.state.markChange(migration, i, 'expand_finished_at', 'now');
      }
    } catch (err) {
      // An interruption (SIGINT, a lost connection or lock, a lock timeout) keeps what is done, to be resumed; a
      // real failure leaves nothing behind that could break the running application (pgroll does the same).
      if (this.stopSignal()?.aborted || !isUndoableFailure(err)) throw err;
      await this.undoFailedExpand(migration, changes, err);
    }
  }

  /** Undoes every started change of a migration whose expand failed, newest first, and rethrows in plain words. */
  private async undoFailedExpand(migration: string, changes: readonly Change[], err: unknown): Promise<never> {
    const what = (err as Error).message;
    try {
      await this.undoExpand(migration, changes);
    } catch (undoErr) {
      throw new Error(
        `${migration}: expand failed: ${what} Undoing it automatically failed too: ${(undoErr as Error).message} ` +
          'What was undone is forgotten; the rest is recorded in the state table: run `umzug down` to finish undoing it, then fix the cause and run `umzug up`.',
        { cause: err },
      );
    }
    throw new ExpandUndoneError(
      `${migration}: expand failed and was undone automatically: ${what} ` +
        'Every step it had finished was reverted and its state forgotten, so the schema is as it was before and the running application is unaffected. ' +
        'Fix the cause (the data, or the migration), then run `umzug up` again; it starts from scratch.',
      err,
    );
  }

  async contract(migration: string, changes: readonly Change[]): Promise<void> {
    for (const [i, change] of changes.entries()) {
      const st = await this.requireChange(migration, i, 'contract');
      if (st.contractFinishedAt) continue;
      const description = change.describe(st.snapshot, this.ctx);
      // Even past the gate (a rehearsal bypasses it): the contract would drop the only good copy of those values.
      const log = description.expand.conversionLog;
      const unconverted = log ? await countConversionErrors(this.db, this.options.stateSchema, log) : 0;
      if (unconverted > 0) {
        throw new Error(
          `${migration}: cannot contract change #${i + 1} (${change.kind}): ${unconverted} rows of ${tableLabel(log!.table)} hold values the sync trigger could not convert ` +
            `(recorded in ${this.options.stateSchema}.conversion_errors; their ${log!.target} is NULL). Nothing was changed. Fix those rows, run \`umzug verify\`, then contract.`,
        );
      }
      await this.runPhase(migration, i, 'contract', description.contract, st.snapshot);
      await this.state.markChange(migration, i, 'contract_finished_at', 'now');
      await this.state.clearPhases(migration, i, ['undoContract']);
    }
  }

  async undoContract(migration: string, changes: readonly Change[]): Promise<void> {
    for (let i = changes.length - 1; i >= 0; i--) {
      const st = await this.state.getChange(migration, i);
      if (!st || !st.contractFinishedAt) continue;
      const description = changes[i]!.describe(st.snapshot, this.ctx);
      await this.runPhase(migration, i, 'undoContract', description.undoContract, st.snapshot);
      await this.state.markChange(migration, i, 'contract_finished_at', null);
      await this.state.clearPhases(migration, i, ['contract', 'undoContract']);
    }
  }

  async undoExpand(migration: string, changes: readonly Change[]): Promise<void> {
    for (let i = changes.length - 1; i >= 0; i--) {
      const st = await this.state.getChange(migration, i);
      if (!st) continue;
      if (st.contractFinishedAt) {
        throw new Error(
          `${migration}: change #${i + 1} is contracted; undo its contract first (umzug down reverts phases newest first). Nothing was changed.`,
        );
      }
      const description = changes[i]!.describe(st.snapshot, this.ctx);
      await this.runPhase(migration, i, 'undoExpand', description.undoExpand, st.snapshot);
      if (description.expand.conversionLog) await forgetConversionErrors(this.db, this.options.stateSchema, description.expand.conversionLog);
      await this.state.forgetChange(migration, i);
    }
  }

  /** Whether a migration's contract may run now, and if not, why, in plain words. */
  async gate(migration: string, changes: readonly Change[], opts: GateOptions): Promise<GateStatus> {
    const now = opts.now ?? new Date();
    const reasons: string[] = [];
    let opensAt: Date | null = null;
    for (const [i, change] of changes.entries()) {
      const st = await this.state.getChange(migration, i);
      const label = `change #${i + 1} (${change.kind})`;
      if (!st || !st.expandFinishedAt) {
        reasons.push(`${label}: expand has not finished`);
        continue;
      }
      if (st.contractFinishedAt) continue;
      const description = change.describe(st.snapshot, this.ctx);
      // A contract with nothing to do (addIndex, addForeignKey, a nullable addColumn…) removes nothing the old
      // version needs: no window, no flag, nothing to wait for.
      if (isEmptyPhase(description.contract)) continue;
      if (description.expand.backfill) {
        const bf = await this.state.getBackfill(migration, i, 'expand');
        if (!bf?.done) reasons.push(`${label}: backfill is not complete (${bf?.rowsDone ?? 0} rows done)`);
      }
      if (description.expand.conversionLog) {
        const n = await countConversionErrors(this.db, this.options.stateSchema, description.expand.conversionLog);
        if (n > 0) reasons.push(`${label}: ${n} rows could not be converted (recorded in ${this.options.stateSchema}.conversion_errors); fix them and run \`umzug verify\``);
      }
      if (description.expand.verify && st.verifyMismatches !== 0) {
        reasons.push(
          st.verifyMismatches == null ? `${label}: not verified yet` : `${label}: verify found ${st.verifyMismatches} mismatching rows`,
        );
      }
      const windowEnds = new Date(st.expandFinishedAt.getTime() + opts.safetyWindowMs);
      if (windowEnds > now) {
        reasons.push(`${label}: safety window until ${windowEnds.toISOString()} (${formatDuration(windowEnds.getTime() - now.getTime())} left)`);
        if (!opensAt || windowEnds > opensAt) opensAt = windowEnds;
      }
      if (description.readFlag) {
        const pct = opts.flagPercent ? await opts.flagPercent(description.readFlag) : undefined;
        if (pct !== 100) reasons.push(`${label}: read flag "${description.readFlag}" is at ${pct ?? 0} %, needs 100 %`);
        const fullSince = pct === 100 && opts.flagFullSince ? await opts.flagFullSince(description.readFlag) : null;
        const flagWindowEnds = fullSince ? new Date(fullSince.getTime() + opts.safetyWindowMs) : null;
        if (flagWindowEnds && flagWindowEnds > now) {
          reasons.push(
            `${label}: read flag "${description.readFlag}" reached 100 % at ${fullSince!.toISOString()}; it must stay there for the safety window, until ${flagWindowEnds.toISOString()} (${formatDuration(flagWindowEnds.getTime() - now.getTime())} left)`,
          );
          if (!opensAt || flagWindowEnds > opensAt) opensAt = flagWindowEnds;
        }
      }
    }
    return { open: reasons.length === 0, reasons, opensAt };
  }

  /**
   * Runs the expand's backfill again, as a phase of its own ('repair', resumable like any backfill), writing only
   * rows that differ from what the backfill would write: the rows a verify found different, and nothing else. A copy
   * into another table (split, merge) upserts instead of skipping rows already there. A repair that finished is
   * started afresh by the next one.
   */
  async repair(migration: string, changeIndex: number, change: Change, opts: MoverRunOptions = {}): Promise<BackfillProgress | null> {
    const st = await this.requireChange(migration, changeIndex, 'repair');
    const spec = change.describe(st.snapshot, this.ctx).expand.backfill;
    if (!spec) return null;
    if ((await this.state.getBackfill(migration, changeIndex, 'repair'))?.done) await this.state.clearPhases(migration, changeIndex, ['repair']);
    const repairSpec: BackfillSpec = spec.copy?.mode === 'insert' ? { ...spec, copy: { ...spec.copy, mode: 'upsert' } } : spec;
    return this.runBackfill({ migration, changeIndex, phase: 'repair' }, repairSpec, st.snapshot, opts);
  }

  /** Re-runs the verification of an expanded change and records the result. */
  async verify(migration: string, changeIndex: number, change: Change): Promise<VerifyResult | null> {
    const st = await this.requireChange(migration, changeIndex, 'verify');
    const plan = change.describe(st.snapshot, this.ctx).expand;
    if (!plan.verify) return null;
    const result = await this.verifyWithConversions(plan, st.snapshot);
    await this.state.recordVerify(migration, changeIndex, result.rowsChecked, result.mismatches, [...result.sampleKeys]);
    return result;
  }

  /**
   * The verify of a phase; rows its sync trigger could not convert count as mismatches (the contract must not run
   * while the new column lacks their values), first among the sample keys.
   */
  private async verifyWithConversions(plan: PhasePlan, snapshot: CatalogSnapshot): Promise<VerifyResult & { readonly conversionErrors: number; readonly conversionError: string | null }> {
    const spec = plan.verify!;
    const result = await verifyConsistency(this.db, spec, this.keyColumns(snapshot, spec.table), this.options.verifyChunkSize);
    if (!plan.conversionLog) return { ...result, conversionErrors: 0, conversionError: null };
    const errs = await settleConversionErrors(this.db, this.options.stateSchema, plan.conversionLog, this.keyColumns(snapshot, plan.conversionLog.table));
    return {
      ...result,
      mismatches: result.mismatches + errs.count,
      sampleKeys: [...errs.sampleKeys, ...result.sampleKeys].slice(0, Math.max(5, result.sampleKeys.length)),
      conversionErrors: errs.count,
      conversionError: errs.firstError,
    };
  }

  private async requireChange(migration: string, i: number, what: string) {
    const st = await this.state.getChange(migration, i);
    if (!st || !st.expandFinishedAt) {
      throw new Error(`${migration}: cannot ${what} change #${i + 1}: its expand has not finished. Run \`umzug up\` first.`);
    }
    return st;
  }

  keyColumns(snapshot: CatalogSnapshot, table: TableName): KeyColumn[] {
    const info = tableInfo(snapshot, table);
    if (!info || info.primaryKey.length === 0) {
      throw new ChangeInputError(`${tableLabel(table)} has no primary key to walk in batches`);
    }
    return info.primaryKey.map((name) => ({ name, type: columnInfo(snapshot, table, name)!.type }));
  }

  /**
   * Runs (or joins, or resumes) one backfill with the engine's options, events and batch guards; `umzug backfill`
   * calls it with its own worker count and stop signal. A table without a primary key is walked by a unique NOT NULL
   * index or by ctid ranges (see lib/backfill/walk-key.ts).
   */
  async runBackfill(
    key: { readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName },
    spec: BackfillSpec,
    snapshot: CatalogSnapshot,
    overrides: { readonly options?: Partial<BackfillOptions>; readonly signal?: AbortSignal; readonly onProgress?: (p: BackfillProgress) => void } = {},
  ): Promise<BackfillProgress> {
    const info = tableInfo(snapshot, spec.table);
    const signal = overrides.signal ?? this.stopSignal();
    let walked = false;
    const end = await runKeysetBackfill({
      db: this.db,
      state: this.state,
      key,
      spec,
      keys: info && info.primaryKey.length > 0 ? this.keyColumns(snapshot, spec.table) : [],
      totalEstimate: info?.estimatedRows ?? 0,
      options: { ...this.options.backfill, ...this.backfillOverrides, ...overrides.options },
      lock: this.options.lock,
      ...(this.options.leaseTiming ? { leaseTiming: this.options.leaseTiming } : {}),
      ...(signal ? { signal } : {}),
      onProgress: (progress) => {
        walked = true;
        this.emit({ type: 'backfill', progress });
        overrides.onProgress?.(progress);
      },
      onThrottle: (throttle) => this.emit({ type: 'backfill-throttle', ...key, throttle }),
      onRetry: (retry) => this.emit({ type: 'backfill-retry', ...key, retry }),
      beforeBatch: async (progress) => {
        for (const guard of this.batchGuards) await guard(progress);
      },
    });
    // The batches report done: false up to the last (the phase is marked done after them). Listeners that keep
    // something per backfill (the monitor's watch, its canary connection and open breaches) learn here that it ended;
    // otherwise only an expand's ended (runExpand stops its watches), and a contract's or an undo's watch, with its
    // baseline and breaches, lived on into the next backfill of the same change.
    // A backfill found done already walked nothing here and says nothing.
    if (end.done && walked) this.emit({ type: 'backfill', progress: end });
    return end;
  }

  private async runPhase(migration: string, changeIndex: number, phase: PhaseName, plan: PhasePlan, snapshot: CatalogSnapshot): Promise<void> {
    const done = await this.state.doneSteps(migration, changeIndex, phase);
    await this.runSteps(migration, changeIndex, phase, plan.steps, done, '');
    if (plan.backfill) {
      await this.runBackfill({ migration, changeIndex, phase }, plan.backfill, snapshot);
      await this.backfillLatePartitions(migration, changeIndex, plan.backfill, snapshot);
    }
    await this.runSteps(migration, changeIndex, phase, plan.afterBackfill ?? [], done, 'after:');
    if (plan.tasks) await this.runTasks(migration, changeIndex, phase, plan.tasks, snapshot, done);
    if (plan.verify) {
      const result = await this.verifyWithConversions(phase === 'expand' ? plan : { ...plan, conversionLog: undefined }, snapshot);
      if (phase === 'expand') await this.state.recordVerify(migration, changeIndex, result.rowsChecked, result.mismatches, [...result.sampleKeys]);
      // Rows that could not be converted are reported below on their own: to the monitor's mismatch threshold they
      // would look like writes around the trigger.
      this.emit({ type: 'verify', migration, changeIndex, phase, result: { ...result, mismatches: result.mismatches - result.conversionErrors } });
      if (result.conversionErrors > 0) {
        throw new VerificationFailedError(
          `${migration}: change #${changeIndex + 1}: ${result.conversionErrors} rows of ${tableLabel(plan.conversionLog!.table)} were written with values the sync trigger could not convert ` +
            `(sample keys ${JSON.stringify(result.sampleKeys.slice(0, 5))}; first error: ${result.conversionError}). The writes went through; those rows are recorded in ` +
            `${this.options.stateSchema}.conversion_errors and their ${plan.conversionLog!.target} is NULL, so the contract stays closed. ` +
            'Fix those rows (or make the application stop writing such values) and run `umzug up` or `umzug verify` again, or `umzug down` to remove the change.',
          result,
        );
      }
      if (result.mismatches > 0) {
        throw new VerificationFailedError(
          `${migration}: verify of change #${changeIndex + 1} found ${result.mismatches} of ${result.rowsChecked} rows where old and new disagree ` +
            `(sample keys ${JSON.stringify(result.sampleKeys.slice(0, 5))}). Nothing was removed; the new structure stays in place and is kept in sync. ` +
            'Fix the cause (a writer bypassing the triggers, a wrong up/down expression) and run `umzug up` again, or `umzug down` to remove it.',
          result,
        );
      }
    }
    this.emit({ type: 'phase', migration, changeIndex, phase, status: 'done' });
  }

  /**
   * The backfill walks the partitioned table by its key as it is at each batch, so rows of a table attached as a
   * partition since the change read the catalog can sit behind its cursor, never written (a partition created since
   * starts empty, and the sync trigger PostgreSQL clones onto it writes every row it gets). Each such partition is
   * walked once more on its own, by the same spec, as a repair would: only rows that differ are written. Its progress
   * is kept as the change's repair, cleared once it is done (a later `umzug backfill --repair` starts afresh). A copy
   * into another table (split, merge) is not walked again here; its verify names the rows it misses.
   */
  private async backfillLatePartitions(migration: string, changeIndex: number, spec: BackfillSpec, snapshot: CatalogSnapshot): Promise<void> {
    const info = tableInfo(snapshot, spec.table);
    if (!info?.partitioning || spec.copy) return;
    const known = new Set(info.partitioning.partitions.map((p) => tableLabel(p.table)));
    const late = (await this.db.query<{ schema: string; name: string; relkind: string }>(LIVE_PARTITIONS_SQL, [qualified(spec.table)])).rows.filter(
      (r) => r.relkind === 'r' && !known.has(tableLabel(r)),
    );
    for (const p of late) {
      const table = { schema: p.schema, name: p.name };
      const rows = await this.db.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${qualified(table)}) AS any`);
      if (!rows.rows[0]?.any) continue;
      // The partition has the table's columns and primary key (PostgreSQL requires both of a partition).
      const own: CatalogSnapshot = { ...snapshot, tables: { ...snapshot.tables, [tableLabel(table)]: { ...info, table, partitioning: undefined } } };
      await this.state.clearPhases(migration, changeIndex, ['repair']);
      await this.runBackfill({ migration, changeIndex, phase: 'repair' }, { ...spec, table }, own);
      await this.state.clearPhases(migration, changeIndex, ['repair']);
    }
  }

  private async runSteps(
    migration: string,
    changeIndex: number,
    phase: PhaseName,
    steps: readonly Step[],
    done: ReadonlySet<string>,
    prefix: string,
  ): Promise<void> {
    for (const step of steps) {
      const id = prefix + step.id;
      if (done.has(id)) {
        this.emit({ type: 'step', migration, changeIndex, phase, step: step.description, status: 'skipped' });
        continue;
      }
      await runStepLockSafe(
        this.db,
        step,
        this.options.lock,
        (conn) => this.state.recordStep(conn, migration, changeIndex, phase, id, step.description),
        (retry) => this.emit({ type: 'lock-retry', migration, changeIndex, phase, retry }),
      );
      this.emit({ type: 'step', migration, changeIndex, phase, step: step.description, status: 'done' });
    }
  }
}

export function checkPreconditions(snapshot: CatalogSnapshot, preconditions: readonly Precondition[]): string[] {
  const problems: string[] = [];
  for (const p of preconditions) {
    const info = tableInfo(snapshot, p.table);
    const t = JSON.stringify(tableLabel(p.table));
    switch (p.kind) {
      case 'table-exists':
        if (!info) problems.push(`table ${t} does not exist`);
        break;
      case 'has-primary-key':
        if (info && info.primaryKey.length === 0) problems.push(`table ${t} has no primary key (needed to backfill in batches)`);
        break;
      case 'column-exists':
        if (info && !info.columns.some((c) => c.name === p.column)) problems.push(`column ${JSON.stringify(p.column)} does not exist in ${t}`);
        break;
      case 'column-absent':
        if (info && info.columns.some((c) => c.name === p.column)) problems.push(`column ${JSON.stringify(p.column)} already exists in ${t}`);
        break;
      case 'relation-absent': {
        const kind = info ? 'r' : snapshot.others?.[tableLabel(p.table)];
        if (kind) problems.push(`${t} already exists (${RELKIND_WORDS[kind] ?? `relkind ${kind}`})`);
        break;
      }
      case 'index-exists':
        if (info && !(info.indexes ?? []).some((x) => x.name === p.index)) problems.push(`index ${JSON.stringify(p.index)} does not exist on ${t}`);
        break;
      case 'constraint-absent':
        if (info && (info.tableConstraints ?? []).some((x) => x.name === p.constraint)) problems.push(`constraint ${JSON.stringify(p.constraint)} already exists on ${t}`);
        break;
    }
  }
  return [...new Set(problems)];
}

const RELKIND_WORDS: Readonly<Record<string, string>> = { r: 'a table', p: 'a partitioned table', v: 'a view', m: 'a materialized view', i: 'an index', I: 'a partitioned index', S: 'a sequence', f: 'a foreign table', c: 'a composite type' };


/** A phase that runs nothing: no step (before or after a backfill), no backfill, no task, no verification. */
export function isEmptyPhase(p: PhasePlan): boolean {
  return p.steps.length === 0 && !p.backfill && (p.afterBackfill?.length ?? 0) === 0 && (p.tasks?.length ?? 0) === 0 && !p.verify;
}

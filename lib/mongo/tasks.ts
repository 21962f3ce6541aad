import type { MongoClient } from 'mongodb';
import type { BackfillProgress } from '../backfill/keyset.js';
import type { CopyStatus, Engine, Mover, MoverVerification, TaskContext } from '../runner.js';
import type { PhaseName } from '../engine/state.js';
import type { Change, PhasePlan, TaskSpec } from '../migration.js';
import { ident, tableLabel, type TableName } from '../postgres/identifiers.js';
import { purgeTombstonesSql } from './sql.js';
import { runMongoBackfill } from './backfill.js';
import { connectMongo, loadMongoDriver } from './driver.js';
import type { MongoConnectionConfig } from './connection.js';
import { isMongoMove, moveId, targetTable, type MongoDocument, type MongoMove } from './move.js';
import { PostgresSink } from './sink.js';
import { validateMove, type MoveValidation } from './validate.js';
import { VerificationFailedError } from '../db/errors.js';
import { relationExists } from '../postgres/catalog.js';

function paramsOf(task: TaskSpec): { move: MongoMove; table: TableName } {
  const { move, table } = task.params as { move?: unknown; table?: TableName };
  if (!isMongoMove(move) || !table) throw new Error(`task ${task.id} (${task.kind}) has no move in its params: it must come from mongoToPostgres()`);
  return { move, table };
}

async function withCollection<T>(config: MongoConnectionConfig | undefined, move: MongoMove, f: (client: MongoClient, db: string | undefined) => Promise<T>): Promise<T> {
  if (!config?.url) {
    throw new Error(
      `moving ${move.collection.name} needs a MongoDB connection: add \`mongo: { url: 'mongodb://…', database: '…' }\` to zeroDowntime({ … }). ` +
        'The steps before this task are done and recorded; run again once it is configured.',
    );
  }
  const client = await connectMongo(config);
  try {
    return await f(client, move.collection.database ?? config.database);
  } finally {
    await client.close();
  }
}

/** The `mongo` config each engine was registered with, so the CLI (`umzug backfill`, `verify`) reaches the same server. */
const CONFIGS = new WeakMap<Engine, MongoConnectionConfig | undefined>();

interface BackfillHooks {
  readonly signal?: AbortSignal;
  readonly beforeBatch?: (p: BackfillProgress) => Promise<void>;
  readonly onProgress?: (p: BackfillProgress | null, message: string, read: number, total: number) => void;
}

/** Copies (or resumes copying) a move's collection, keeping the engine's backfill row in step for `umzug status`. */
async function backfillMove(
  engine: Engine,
  move: MongoMove,
  table: TableName,
  key: { readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName },
  hooks: BackfillHooks,
): Promise<BackfillProgress | null> {
  const stateSchema = engine.options.stateSchema;
  const bson = await loadMongoDriver();
  let last: BackfillProgress | null = null;
  await withCollection(CONFIGS.get(engine), move, async (client, dbName) => {
    const collection = client.db(dbName).collection<MongoDocument>(move.collection.name);
    await runMongoBackfill({
      db: engine.db,
      stateSchema,
      sink: new PostgresSink(move, table, stateSchema, bson),
      collection,
      bson,
      engineKey: key,
      ...(hooks.signal ? { signal: hooks.signal } : {}),
      ...(hooks.beforeBatch ? { beforeBatch: hooks.beforeBatch } : {}),
      onProgress: (p, backfill) => {
        last = backfill;
        hooks.onProgress?.(backfill, `${p.read} documents read, ${p.written} written, ${p.quarantined} quarantined (${p.bracket} _ids)`, p.read, p.totalEstimate);
      },
    });
  });
  return last;
}

/** Validates a move (full: counts, chunked checksums, bisection) and records the result where the gate and status read it. */
async function validateAndRecord(
  engine: Engine,
  move: MongoMove,
  table: TableName,
  migration: string,
  changeIndex: number,
  opts: { readonly signal?: AbortSignal; readonly onChunk?: (checked: number, mismatches: number) => void },
): Promise<MoveValidation> {
  const stateSchema = engine.options.stateSchema;
  const bson = await loadMongoDriver();
  const result = await withCollection(CONFIGS.get(engine), move, async (client, dbName) => {
    const collection = client.db(dbName).collection<MongoDocument>(move.collection.name);
    return validateMove({
      db: engine.db,
      sink: new PostgresSink(move, table, stateSchema, bson),
      collection,
      bson,
      stateSchema,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onChunk ? { onChunk: opts.onChunk } : {}),
    });
  });
  await engine.state.recordVerify(migration, changeIndex, result.checked, result.mismatches, sampleKeys(result));
  return result;
}

/** The first mismatches as `[key, kind]`, as verify and status show them. */
function sampleKeys(v: MoveValidation): string[][] {
  return v.details.slice(0, 10).map((d) => [d.key, d.kind]);
}

/** The move of a mongoToPostgres() change; null for every other kind. */
function moveOfChange(change: Change): MongoMove | null {
  const move = (change as { move?: unknown }).move;
  return change.kind === 'mongoToPostgres' && isMongoMove(move) ? move : null;
}

/** The expand task of this kind of a move's change, with its expand plan, as described when the change first ran. */
async function expandTask(
  engine: Engine,
  migration: string,
  changeIndex: number,
  change: Change,
  kind: string,
): Promise<{ task: TaskSpec; move: MongoMove; table: TableName; plan: PhasePlan; finished: boolean } | null> {
  const st = await engine.state.getChange(migration, changeIndex);
  if (!st) return null;
  const plan = change.describe(st.snapshot, engine.ctx).expand;
  const task = plan.tasks?.find((t) => t.kind === kind);
  return task ? { task, plan, finished: st.expandFinishedAt !== null, ...paramsOf(task) } : null;
}

/**
 * A move's copy that `umzug backfill` can run: its expand steps (state tables, target table) are done and its
 * backfill task is not. Returns the label the progress display shows, or null.
 */
async function pendingMongoBackfill(engine: Engine, migration: string, changeIndex: number, change: Change): Promise<string | null> {
  if (!moveOfChange(change)) return null;
  const found = await expandTask(engine, migration, changeIndex, change, 'mongo-backfill');
  if (!found || found.finished) return null;
  const done = await engine.state.doneSteps(migration, changeIndex, 'expand');
  if (done.has(`task:${found.task.id}`) || !found.plan.steps.every((s) => done.has(s.id))) return null;
  return `${migration.replace(/:expand$/, '')} #${changeIndex + 1} ${found.move.collection.name} → ${tableLabel(found.table)}`;
}

/**
 * Runs or resumes a move's copy outside `umzug up` (the `umzug backfill` command), then records the task as done so
 * `up` goes on with the validation. A stop (signal) throws BackfillInterrupted like the keyset backfill, with the
 * progress committed.
 */
async function runMongoChangeBackfill(
  engine: Engine,
  migration: string,
  changeIndex: number,
  change: Change,
  opts: { readonly signal?: AbortSignal; readonly onProgress?: (p: BackfillProgress) => void } = {},
): Promise<BackfillProgress> {
  const found = await expandTask(engine, migration, changeIndex, change, 'mongo-backfill');
  if (!found) throw new Error(`${migration}: change #${changeIndex + 1} is not a MongoDB move whose expand has started; run \`umzug up\` first.`);
  const key = { migration, changeIndex, phase: 'expand' as const };
  const last = await backfillMove(engine, found.move, found.table, key, {
    ...(opts.signal ? { signal: opts.signal } : {}),
    onProgress: (p) => {
      if (p) opts.onProgress?.(p);
    },
  });
  await engine.db.withConnection((c) => engine.state.recordStep(c, migration, changeIndex, 'expand', `task:${found.task.id}`, found.task.description));
  return last ?? { ...key, rowsDone: 0, rowsUpdated: 0, totalEstimate: 0, batches: 0, done: true };
}

/**
 * `umzug verify` for a move: a full validation, recorded like the expand's. rowsChecked counts documents; a sample
 * key is `[key, kind]` (missing-in-postgres, extra-in-postgres, different, not-quarantined). Null for other kinds.
 */
async function verifyMongoChange(engine: Engine, migration: string, changeIndex: number, change: Change): Promise<MoverVerification | null> {
  if (!moveOfChange(change)) return null;
  const found = await expandTask(engine, migration, changeIndex, change, 'mongo-verify');
  if (!found) return null;
  const v = await validateAndRecord(engine, found.move, found.table, migration, changeIndex, {});
  return {
    rowsChecked: v.checked,
    mismatches: v.mismatches,
    sampleKeys: sampleKeys(v),
    source: { system: 'MongoDB', sourceCount: v.mongoCount, targetCount: v.postgresCount, quarantineCount: v.quarantineCount, mismatchRate: v.mismatchRate, chunks: v.chunks, bisections: v.bisections },
  };
}

/** What `umzug status` adds for a move: documents read, rows written, documents quarantined. Null for other kinds. */
async function mongoChangeStatus(engine: Engine, change: Change): Promise<CopyStatus | null> {
  const move = moveOfChange(change);
  if (!move) return null;
  const s = ident(engine.options.stateSchema);
  if (!(await relationExists(engine.db, `${s}.mongo_backfill`))) return null;
  const id = moveId(targetTable(move, engine.ctx.defaultSchema));
  const r = await engine.db.query<{ read: string; written: string; quarantined: string }>(
    `SELECT coalesce(sum(read), 0)::text AS read, coalesce(sum(written), 0)::text AS written,
            (SELECT count(*) FROM ${s}.mongo_quarantine WHERE move = $1)::text AS quarantined
       FROM ${s}.mongo_backfill WHERE move = $1`,
    [id],
  );
  const x = r.rows[0]!;
  return { system: 'MongoDB', items: 'documents', read: Number(x.read), written: Number(x.written), quarantined: Number(x.quarantined) };
}

/** A mongoToPostgres() change's rows move by a cursor over the collection in _id order: one worker, whatever --workers says. */
export const mongoMover: Mover = {
  kind: 'mongo',
  handles: (change) => moveOfChange(change) !== null,
  pending: pendingMongoBackfill,
  run: (engine, migration, changeIndex, change, opts) =>
    runMongoChangeBackfill(engine, migration, changeIndex, change, { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) }),
  verify: verifyMongoChange,
  status: mongoChangeStatus,
};

/**
 * Registers the runners of the tasks mongoToPostgres() describes. Done by zeroDowntime() for every engine: the
 * driver is only loaded when a task of a move actually runs.
 */
export function registerMongoTasks(engine: Engine, config: MongoConnectionConfig | undefined): void {
  CONFIGS.set(engine, config);
  engine.registerMover(mongoMover);

  engine.registerTaskRunner('mongo-backfill', async (task, ctx: TaskContext) => {
    const { move, table } = paramsOf(task);
    await backfillMove(
      engine,
      move,
      table,
      { migration: ctx.migration, changeIndex: ctx.changeIndex, phase: ctx.phase },
      {
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        beforeBatch: (p) => ctx.beforeBatch(p),
        onProgress: (backfill, message, read, total) => ctx.progress({ done: read, total, message, ...(backfill ? { backfill } : {}) }),
      },
    );
  });

  engine.registerTaskRunner('mongo-verify', async (task, ctx) => {
    const { move, table } = paramsOf(task);
    const result = await validateAndRecord(engine, move, table, ctx.migration, ctx.changeIndex, {
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      onChunk: (checked, mismatches) => ctx.progress({ done: checked, total: null, message: `validated ${checked} documents, ${mismatches} suspect` }),
    });
    ctx.progress({
      done: result.checked,
      total: result.checked,
      message: `MongoDB ${result.mongoCount} documents, PostgreSQL ${result.postgresCount} rows + ${result.quarantineCount} quarantined; ${result.mismatches} mismatches`,
    });
    if (result.mismatchRate > move.maxMismatchRate) {
      throw new VerificationFailedError(
        `${ctx.migration}: ${moveId(table)} disagrees with ${move.collection.name} for ${result.mismatches} of ${result.checked} documents ` +
          `(${(result.mismatchRate * 100).toFixed(3)} %, allowed ${(move.maxMismatchRate * 100).toFixed(3)} %; first: ${JSON.stringify(result.details.slice(0, 5))}). ` +
          `Nothing was removed; the ${ctx.phase === 'contract' ? 'cutover waits' : 'expand stays unfinished'}. Check that every writer goes through the dual-writer, ` +
          'run its reconcile(), and run `umzug up` again.',
        result,
      );
    }
  });

  engine.registerTaskRunner('mongo-purge-tombstones', async (task) => {
    const { move, table } = paramsOf(task);
    for (;;) {
      const r = await engine.db.query(purgeTombstonesSql(table, move.key.column), [5000]);
      if (r.rowCount === 0) return;
    }
  });

  engine.registerTaskRunner('mongo-forget', async (task) => {
    const { table } = paramsOf(task);
    const s = ident(engine.options.stateSchema);
    if (!(await relationExists(engine.db, `${s}.mongo_backfill`))) return;
    await engine.db.transaction(async (c) => {
      for (const t of ['mongo_backfill', 'mongo_quarantine', 'mongo_outbox']) await c.query(`DELETE FROM ${s}.${ident(t)} WHERE move = $1`, [moveId(table)]);
    });
  });
}

import type { MongoClient } from 'mongodb';
import type { Engine, TaskContext } from '../engine/runner.js';
import type { TaskSpec } from '../migration.js';
import { ident, type TableName } from '../postgres/identifiers.js';
import { purgeTombstonesSql } from '../postgres/mongo-sql.js';
import { runMongoBackfill } from './backfill.js';
import { connectMongo, loadMongoDriver, type MongoConnectionConfig } from './driver.js';
import { isMongoMove, moveId, type MongoDocument, type MongoMove } from './move.js';
import { PostgresSink } from './sink.js';
import { validateMove, type MoveValidation } from './validate.js';

export class MongoValidationFailedError extends Error {
  override name = 'MongoValidationFailedError';
  constructor(
    message: string,
    readonly result: MoveValidation,
  ) {
    super(message);
  }
}

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

/**
 * Registers the runners of the tasks mongoToPostgres() describes. Done by zeroDowntime() for every engine: the
 * driver is only loaded when a task of a move actually runs.
 */
export function registerMongoTasks(engine: Engine, config: MongoConnectionConfig | undefined): void {
  const stateSchema = engine.options.stateSchema;

  engine.registerTaskRunner('mongo-backfill', async (task, ctx: TaskContext) => {
    const { move, table } = paramsOf(task);
    const bson = await loadMongoDriver();
    await withCollection(config, move, async (client, dbName) => {
      const collection = client.db(dbName).collection<MongoDocument>(move.collection.name);
      const sink = new PostgresSink(move, table, stateSchema, bson);
      await runMongoBackfill({
        db: engine.db,
        stateSchema,
        sink,
        collection,
        bson,
        engineKey: { migration: ctx.migration, changeIndex: ctx.changeIndex, phase: ctx.phase },
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        beforeBatch: (p) => ctx.beforeBatch(p),
        onProgress: (p, backfill) =>
          ctx.progress({
            done: p.read,
            total: p.totalEstimate,
            message: `${p.read} documents read, ${p.written} written, ${p.quarantined} quarantined (${p.bracket} _ids)`,
            ...(backfill ? { backfill } : {}),
          }),
      });
    });
  });

  engine.registerTaskRunner('mongo-verify', async (task, ctx) => {
    const { move, table } = paramsOf(task);
    const bson = await loadMongoDriver();
    const result = await withCollection(config, move, async (client, dbName) => {
      const collection = client.db(dbName).collection<MongoDocument>(move.collection.name);
      const sink = new PostgresSink(move, table, stateSchema, bson);
      return validateMove({
        db: engine.db,
        sink,
        collection,
        bson,
        stateSchema,
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        onChunk: (checked, mismatches) => ctx.progress({ done: checked, total: null, message: `validated ${checked} documents, ${mismatches} suspect` }),
      });
    });
    await engine.state.recordVerify(ctx.migration, ctx.changeIndex, result.checked, result.mismatches, result.details.slice(0, 10).map((d) => [d.key, d.kind]));
    ctx.progress({
      done: result.checked,
      total: result.checked,
      message: `MongoDB ${result.mongoCount} documents, PostgreSQL ${result.postgresCount} rows + ${result.quarantineCount} quarantined; ${result.mismatches} mismatches`,
    });
    if (result.mismatchRate > move.maxMismatchRate) {
      throw new MongoValidationFailedError(
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
    const s = ident(stateSchema);
    const exists = await engine.db.query<{ t: string | null }>(`SELECT to_regclass($1)::text AS t`, [`${s}.mongo_backfill`]);
    if (!exists.rows[0]?.t) return;
    await engine.db.transaction(async (c) => {
      for (const t of ['mongo_backfill', 'mongo_quarantine', 'mongo_outbox']) await c.query(`DELETE FROM ${s}.${ident(t)} WHERE move = $1`, [moveId(table)]);
    });
  });
}

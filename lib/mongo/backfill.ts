import type { Collection } from 'mongodb';
import { BackfillInterrupted, type BackfillProgress } from '../backfill/keyset.js';
import { isConnectionLost, type Db } from '../db/db.js';
import type { PhaseName } from '../engine/state.js';
import { ident } from '../postgres/identifiers.js';
import { keyVersionsSql, quarantinedVersionsSql } from './sql.js';
import { bsonKind } from './bson.js';
import { isTransientMongoError, serverTraits, type MongoModule } from './driver.js';
import type { MongoDocument } from './move.js';
import type { PostgresSink } from './sink.js';
import { sleep } from '../db/timing.js';

/**
 * MongoDB sorts `_id`s of different BSON types by type first (this order), and `$gt` only matches values of the same
 * type bracket. So the walk is one cursor over the whole collection sorted by `_id`, and resuming after `last` asks
 * for `_id > last` (same bracket) OR `_id` of a bracket sorting after it. Numbers (Int32, Int64, Double, Decimal128)
 * share one bracket, as do strings and symbols.
 */
export const BRACKET_ORDER = ['minKey', 'null', 'number', 'string', 'object', 'array', 'binData', 'objectId', 'bool', 'date', 'timestamp', 'regex', 'maxKey'] as const;
export type IdBracket = (typeof BRACKET_ORDER)[number];

const BRACKET_TYPES: Record<IdBracket, readonly string[]> = {
  minKey: ['minKey'],
  null: ['null', 'undefined'],
  number: ['number'],
  string: ['string', 'symbol'],
  object: ['object'],
  array: ['array'],
  binData: ['binData'],
  objectId: ['objectId'],
  bool: ['bool'],
  date: ['date'],
  timestamp: ['timestamp'],
  regex: ['regex'],
  maxKey: ['maxKey'],
};

export function bracketOf(id: unknown): IdBracket {
  switch (bsonKind(id)) {
    case 'minKey':
      return 'minKey';
    case 'missing':
    case 'null':
    case 'undefined':
      return 'null';
    case 'int32':
    case 'int64':
    case 'double':
    case 'decimal128':
      return 'number';
    case 'string':
    case 'symbol':
      return 'string';
    case 'array':
      return 'array';
    case 'binary':
      return 'binData';
    case 'objectId':
      return 'objectId';
    case 'boolean':
      return 'bool';
    case 'date':
      return 'date';
    case 'timestamp':
      return 'timestamp';
    case 'regex':
      return 'regex';
    case 'maxKey':
      return 'maxKey';
    default:
      return 'object';
  }
}

/** Type aliases some servers do not know (FerretDB, which cannot store these types either). */
const EXOTIC = new Set(['minKey', 'maxKey', 'symbol', 'undefined']);

/** Whether the server knows every $type alias (MongoDB) or only the common ones (FerretDB). */
export async function knowsExoticTypes(collection: Collection<MongoDocument>): Promise<boolean> {
  try {
    await collection.find({ _id: { $type: [...EXOTIC] } } as never).limit(1).toArray();
    return true;
  } catch (e) {
    if (/type (name alias|code)/i.test((e as Error).message)) return false;
    throw e;
  }
}

/** The filter of the walk after `last` (none: from the start). */
export function afterFilter(last: unknown, exotic = true): Record<string, unknown> {
  if (last === undefined) return {};
  const b = bracketOf(last);
  const later = BRACKET_ORDER.slice(BRACKET_ORDER.indexOf(b) + 1)
    .flatMap((x) => BRACKET_TYPES[x])
    .filter((t) => exotic || !EXOTIC.has(t));
  const same = b === 'minKey' || b === 'maxKey' || b === 'null' ? [] : [{ _id: { $gt: last } }];
  const or = [...same, ...(later.length > 0 ? [{ _id: { $type: later } }] : [])];
  return or.length === 0 ? { _id: { $exists: false } } : or.length === 1 ? or[0]! : { $or: or };
}

export interface MongoBackfillProgress {
  readonly read: number;
  readonly written: number;
  readonly quarantined: number;
  readonly totalEstimate: number;
  readonly bracket: IdBracket;
  readonly done: boolean;
}

export interface MongoBackfillRun {
  readonly db: Db;
  readonly stateSchema: string;
  readonly sink: PostgresSink;
  readonly collection: Collection<MongoDocument>;
  readonly bson: MongoModule;
  readonly batchSize?: number;
  readonly signal?: AbortSignal;
  /** The engine's own backfill row to keep in step, so `umzug status` shows the progress bar. */
  readonly engineKey?: { readonly migration: string; readonly changeIndex: number; readonly phase: PhaseName };
  readonly onProgress?: (p: MongoBackfillProgress, engine: BackfillProgress | null) => void;
  readonly beforeBatch?: (p: BackfillProgress) => Promise<void>;
  /** How long to keep retrying while MongoDB or PostgreSQL is unreachable. Default 120 s. */
  readonly outageBudgetMs?: number;
}

/** A stopped move copy is a stopped backfill: every caller that handles one (CLI, monitor) handles the other. */
export class MongoBackfillInterrupted extends BackfillInterrupted {
  override name = 'MongoBackfillInterrupted';
}

interface BracketState {
  lastId: string | null;
  done: boolean;
}

/**
 * Copies a collection into the target table in batches; each batch's rows, quarantine entries and progress row commit
 * in one PostgreSQL transaction, so a crash or a stop resumes after the last committed batch and a batch is never
 * half-applied. MongoDB: one cursor sorted by `_id`, from the last committed `_id`; a lost connection (server restart)
 * reopens it there. FerretDB: one cursor in storage order (its sort reads the whole collection before the first
 * document); a resumed or reopened walk starts over and skips what PostgreSQL already has at its version. Upserts
 * are version-guarded, so rows the dual-writer wrote meanwhile are never overwritten with older documents.
 */
export async function runMongoBackfill(run: MongoBackfillRun): Promise<MongoBackfillProgress> {
  const { db, sink, collection, bson } = run;
  const s = ident(run.stateSchema);
  const batch = run.batchSize ?? sink.move.batchSize;
  const budget = run.outageBudgetMs ?? 120_000;
  await db.query(`INSERT INTO ${s}.mongo_backfill (move, bracket) VALUES ($1, '*') ON CONFLICT DO NOTHING`, [sink.id]);
  if (run.engineKey) {
    const k = run.engineKey;
    await db.query(
      `INSERT INTO ${s}.backfills (migration, change_index, phase, total_estimate) VALUES ($1, $2, $3, 0) ON CONFLICT (migration, change_index, phase) DO NOTHING`,
      [k.migration, k.changeIndex, k.phase],
    );
  }
  const { ferretdb } = await withRetry(() => serverTraits(collection), budget, run.signal);
  // The count only sizes the progress bar. MongoDB answers estimatedDocumentCount from metadata; FerretDB reads every
  // document for it (5.5 s at 100 000 documents, as much reading as the copy itself), but answers collStats from its
  // storage's statistics (0.1 s). The copy starts without it either way and the estimate arrives when it is ready.
  let totalEstimate = 0;
  const count = ferretdb
    ? () => collection.db.command({ collStats: collection.collectionName }).then((r) => Number(r.count ?? 0))
    : () => collection.estimatedDocumentCount();
  const counting = withRetry(count, budget, run.signal).then(
    async (n) => {
      totalEstimate = n;
      const k = run.engineKey;
      if (k) {
        await db.query(`UPDATE ${s}.backfills SET total_estimate = greatest(total_estimate, $4) WHERE migration = $1 AND change_index = $2 AND phase = $3`, [k.migration, k.changeIndex, k.phase, n]);
      }
    },
    () => undefined, // a failed count leaves the estimate at the documents read so far
  );
  const totals = async () => {
    const r = await db.query<{ read: string; written: string; quarantined: string }>(
      `SELECT coalesce(sum(read), 0)::text AS read, coalesce(sum(written), 0)::text AS written, coalesce(sum(quarantined), 0)::text AS quarantined FROM ${s}.mongo_backfill WHERE move = $1`,
      [sink.id],
    );
    const x = r.rows[0]!;
    return { read: Number(x.read), written: Number(x.written), quarantined: Number(x.quarantined) };
  };
  let counts = await totals();
  let batches = 0;
  const engineProgress = (bracket: IdBracket, done: boolean): BackfillProgress | null =>
    run.engineKey
      ? { ...run.engineKey, rowsDone: counts.read, rowsUpdated: counts.written, totalEstimate: Math.max(totalEstimate, counts.read), batches, done, batchSize: batch }
      : null;
  const report = (bracket: IdBracket, done: boolean) =>
    run.onProgress?.({ ...counts, totalEstimate: Math.max(totalEstimate, counts.read), bracket, done }, engineProgress(bracket, done));

  let state = await loadState(db, s, sink.id);
  const exotic = ferretdb ? false : await withRetry(() => knowsExoticTypes(collection), budget, run.signal);
  let bracket: IdBracket = 'minKey';
  const parseId = (text: string): unknown => bson.BSON.EJSON.parse(text, { relaxed: false, useBigInt64: true } as never);
  while (!state.done) {
    if (run.signal?.aborted) throw new MongoBackfillInterrupted(`stopped after ${counts.read} documents; progress is saved, run it again to resume`);
    // MongoDB: one cursor over everything in _id order (the _id index), reopened after the last committed _id when the
    // server goes away. FerretDB sorts (and filters on anything but an exact _id) by reading the whole collection
    // before it returns a first document, so there the cursor takes the storage's order from the start, and a walk
    // that already committed something skips the documents PostgreSQL has at their version (see alreadyCopied).
    const resuming = ferretdb && state.lastId !== null;
    const cursor = ferretdb
      ? collection.find({}).batchSize(batch)
      : collection.find(afterFilter(state.lastId === null ? undefined : parseId(state.lastId), exotic)).sort({ _id: 1 }).batchSize(batch);
    let inflight: Promise<void> | null = null;
    const settle = async () => {
      const f = inflight;
      inflight = null;
      if (f) await f;
    };
    try {
      let pending: MongoDocument[] = [];
      const flush = async (final: boolean) => {
        const docs = pending;
        pending = [];
        const eng = engineProgress(bracket, false);
        if (eng && run.beforeBatch) await run.beforeBatch(eng);
        const lastId = docs.length > 0 ? sink.docId(docs[docs.length - 1]!._id) : state.lastId;
        if (docs.length > 0) bracket = bracketOf(docs[docs.length - 1]!._id);
        const expected = state.lastId;
        const res = await withRetry(
          () =>
            db.transaction(async (c) => {
              const w = docs.length > 0 ? await sink.write(c, docs, 'backfill') : { written: 0, quarantined: 0, resolved: 0 };
              const u = await c.query(
                `UPDATE ${s}.mongo_backfill SET last_id = $2, done = $3, read = read + $4, written = written + $5, quarantined = quarantined + $6, updated_at = now()
                  WHERE move = $1 AND bracket = '*' AND last_id IS NOT DISTINCT FROM $7 AND NOT done`,
                [sink.id, lastId, final, docs.length, w.written, w.quarantined, expected],
              );
              if (u.rowCount !== 1) return null; // another runner moved on: this batch is rolled back
              if (run.engineKey) {
                const k = run.engineKey;
                await c.query(
                  `UPDATE ${s}.backfills SET rows_done = rows_done + $4, rows_updated = rows_updated + $5, batches = batches + 1, last_key = $6::jsonb, updated_at = now()
                    WHERE migration = $1 AND change_index = $2 AND phase = $3`,
                  [k.migration, k.changeIndex, k.phase, docs.length, w.written, JSON.stringify([lastId ?? ''])],
                );
              }
              return w;
            }),
          budget,
          run.signal,
        );
        if (res === null) {
          state = await loadState(db, s, sink.id);
          throw new RestartWalk();
        }
        batches++;
        counts = { read: counts.read + docs.length, written: counts.written + res.written, quarantined: counts.quarantined + res.quarantined };
        state = { lastId, done: final };
        report(bracket, false);
      };
      // The next batch is read from MongoDB while the previous one commits in PostgreSQL (the two servers work at the
      // same time instead of taking turns); at most one batch is in flight, so batches still commit in _id order.
      const submit = async () => {
        await settle();
        const f = flush(false);
        f.catch(() => undefined); // raised where it is awaited (settle)
        inflight = f;
      };
      let unchecked: MongoDocument[] = [];
      const check = async () => {
        const docs = unchecked;
        unchecked = [];
        const copied = await withRetry(() => alreadyCopied(db, run.stateSchema, sink, docs), budget, run.signal);
        for (const d of docs) if (!copied.has(d)) pending.push(d);
      };
      for await (const doc of cursor) {
        if (resuming) {
          unchecked.push(doc);
          if (unchecked.length >= batch) await check();
        } else pending.push(doc);
        if (pending.length >= batch) await submit();
        if (run.signal?.aborted) break;
      }
      if (unchecked.length > 0 && !run.signal?.aborted) await check();
      await settle();
      if (run.signal?.aborted) {
        if (pending.length > 0) await flush(false);
        continue;
      }
      await flush(true);
    } catch (e) {
      if (e instanceof RestartWalk) continue;
      if (isTransientMongoError(e)) {
        await waitForMongo(collection, budget, run.signal, e);
        continue;
      }
      throw e;
    } finally {
      // A batch still committing when the cursor failed: let it finish (or fail) before the walk reopens after it.
      await settle().catch(() => undefined);
      await cursor.close().catch(() => undefined);
    }
  }
  counts = await totals();
  if (run.engineKey) {
    const k = run.engineKey;
    await db.query(`UPDATE ${s}.backfills SET done = true, rows_done = $4, rows_updated = $5, updated_at = now() WHERE migration = $1 AND change_index = $2 AND phase = $3`, [
      k.migration,
      k.changeIndex,
      k.phase,
      counts.read,
      counts.written,
    ]);
  }
  await counting;
  report(bracket, true);
  return { ...counts, totalEstimate: Math.max(totalEstimate, counts.read), bracket, done: true };
}

class RestartWalk extends Error {}

/**
 * The documents of `docs` PostgreSQL already has at their version or newer, as a row (tombstones included: a
 * quarantined document leaves one at its version, a deleted one was dual-written) or in the quarantine: a walk that
 * starts over (FerretDB cannot seek to the last committed `_id`) neither writes nor counts them again.
 */
async function alreadyCopied(db: Db, stateSchema: string, sink: PostgresSink, docs: readonly MongoDocument[]): Promise<Set<MongoDocument>> {
  const keyed = new Map<string, { doc: MongoDocument; version: bigint }[]>();
  const byDocId = new Map<string, { doc: MongoDocument; version: bigint }>();
  for (const doc of docs) {
    const v = sink.mapper.versionOf(doc);
    const version = typeof v === 'bigint' ? v : 0n;
    const k = sink.mapper.keyOf(doc._id);
    if ('key' in k) keyed.set(k.key, [...(keyed.get(k.key) ?? []), { doc, version }]);
    byDocId.set(sink.docId(doc._id), { doc, version });
  }
  const out = new Set<MongoDocument>();
  const move = sink.move;
  if (keyed.size > 0) {
    const r = await db.query<{ k: string; v: string }>(keyVersionsSql(sink.table, move.key.column, move.key.type), [[...keyed.keys()]]);
    for (const row of r.rows) for (const e of keyed.get(row.k) ?? []) if (BigInt(row.v) >= e.version) out.add(e.doc);
  }
  const r = await db.query<{ doc_id: string; v: string }>(quarantinedVersionsSql(stateSchema), [sink.id, [...byDocId.keys()]]);
  for (const row of r.rows) {
    const e = byDocId.get(row.doc_id);
    if (e && BigInt(row.v) >= e.version) out.add(e.doc);
  }
  return out;
}

async function loadState(db: Db, s: string, move: string): Promise<BracketState> {
  const r = await db.query<{ last_id: string | null; done: boolean }>(`SELECT last_id, done FROM ${s}.mongo_backfill WHERE move = $1 AND bracket = '*'`, [move]);
  const x = r.rows[0];
  return { lastId: x?.last_id ?? null, done: x?.done ?? false };
}


/** Retries what fails because a server is away (MongoDB restarting, PostgreSQL connection lost) within a time budget. */
export async function withRetry<T>(f: () => Promise<T>, budgetMs: number, signal?: AbortSignal): Promise<T> {
  const start = Date.now();
  for (let i = 0; ; i++) {
    try {
      return await f();
    } catch (e) {
      const transient = isTransientMongoError(e) || isConnectionLost(e);
      if (!transient || Date.now() - start > budgetMs || signal?.aborted) throw e;
      await sleep(Math.min(2000, 50 * 2 ** i) * (0.5 + Math.random() / 2), signal);
    }
  }
}

async function waitForMongo(collection: Collection<MongoDocument>, budgetMs: number, signal: AbortSignal | undefined, cause: unknown): Promise<void> {
  try {
    await withRetry(() => collection.findOne({}, { projection: { _id: 1 } }), budgetMs, signal);
  } catch (e) {
    throw new Error(
      `MongoDB stayed unreachable for ${Math.round(budgetMs / 1000)} s (${(cause as Error).message}; then ${(e as Error).message}). ` +
        'Every batch up to the last committed one is in PostgreSQL; run the backfill again to resume from there.',
    );
  }
}

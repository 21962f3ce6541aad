import type { Collection } from 'mongodb';
import type { Connection, Db } from '../db/db.js';
import { ChangeInputError, ident, type TableName } from '../postgres/identifiers.js';
import { reversePageSql, reverseRowSql, tombstoneNextSql } from './sql.js';
import { bsonKind, describeBson } from './bson.js';
import { convert, type MongoColumnType } from './column-types.js';
import { isTransientMongoError, serverTraits, type MongoModule } from './driver.js';
import { compactJson, fromBson, parseJson } from './json.js';
import { toBson } from './json-to-bson.js';
import { DocumentMapper } from './mapper.js';
import { allColumns, DELETED_COLUMN, VERSION_COLUMN, moveId, type MongoDocument, type MongoMove } from './move.js';

/**
 * The reverse direction, PostgreSQL → MongoDB, for rolling back after the write flip: PostgreSQL is the primary then,
 * MongoDB the copy kept in sync. Row → document is the inverse of the type rules: numeric → Decimal128, bigint →
 * Int64, double precision → Double, timestamptz → Date (milliseconds; microseconds written directly in PostgreSQL are
 * cut), uuid → Binary subtype 4, bytea → Binary, jsonb → its BSON values, NULL → a missing field (jsonb null stays
 * null; with an unmapped-fields column, a field that was null comes back null from it). A move with your own `map`
 * function has no inverse, so it has no reverse direction. Decimal128 is the only exact form of numeric: a server
 * without it (FerretDB) cannot take the reverse of a numeric column.
 */
export function rowToDocument(move: MongoMove, texts: readonly (string | null)[], version: bigint, bson: MongoModule): MongoDocument {
  if (move.map) throw new Error(`the move ${move.collection.name} → ${typeof move.table === 'string' ? move.table : JSON.stringify(move.table)} maps documents with your own function, which has no inverse: the reverse direction needs a columns-only move`);
  const cols = allColumns(move);
  const doc: MongoDocument = {};
  const rest = typeof move.unmapped === 'object' ? move.unmapped.column : null;
  const restIndex = rest === null ? -1 : cols.length - 1;
  doc._id = pieceToBson(cols[0]!.type, texts[0] ?? null, bson);
  // The unmapped fields first, the columns over them: a column changed in PostgreSQL after the copy wins over a null
  // (or an empty embedded document) the unmapped-fields column recorded for its path back then.
  const restText = restIndex >= 0 ? (texts[restIndex] ?? null) : null;
  if (restText !== null) deepMerge(doc, toBson(parseJson(restText), bson) as MongoDocument);
  cols.forEach((c, i) => {
    const text = texts[i] ?? null;
    if (i === 0 || i === restIndex || text === null) return;
    setPath(doc, move.columns[i - 1]!.from, pieceToBson(c.type, text, bson));
  });
  // Version 0 is a document that never had a version field (the backfill copied it as it was): leave it out, so a
  // legacy document comes back exactly as it was.
  if (version !== 0n) doc[move.versionField] = version;
  return doc;
}

export function pieceToBson(t: MongoColumnType, text: string | null, bson: MongoModule): unknown {
  if (text === null) return null;
  switch (t) {
    case 'objectid':
      return bson.ObjectId.createFromHexString(text);
    case 'text':
      return text;
    case 'uuid':
      return new bson.UUID(text);
    case 'integer':
      return Number(text);
    case 'bigint':
      return BigInt(text);
    case 'numeric':
      return bson.Decimal128.fromString(text);
    case 'double precision':
      return new bson.Double(Buffer.from(text, 'hex').readDoubleBE(0));
    case 'boolean':
      return text === 'true';
    case 'timestamptz': {
      if (!/^-?\d+$/.test(text)) throw new Error(`timestamp ${text} has no BSON Date`);
      const micros = BigInt(text);
      const ms = micros / 1000n - (micros % 1000n < 0n ? 1n : 0n);
      return new Date(Number(ms));
    }
    case 'jsonb':
      return toBson(parseJson(text), bson);
    case 'bytea':
      return new bson.Binary(Buffer.from(text, 'hex'), 0);
  }
}

function setPath(doc: MongoDocument, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = doc;
  for (const p of parts.slice(0, -1)) {
    const next = node[p];
    if (bsonKind(next) !== 'object') node[p] = {};
    node = node[p] as MongoDocument;
  }
  node[parts[parts.length - 1]!] = value;
}

function deepMerge(into: MongoDocument, from: MongoDocument): void {
  for (const [k, v] of Object.entries(from)) {
    if (bsonKind(v) === 'object' && bsonKind(into[k]) === 'object') deepMerge(into[k] as MongoDocument, v as MongoDocument);
    else into[k] = v;
  }
}

interface ReverseRow {
  readonly texts: (string | null)[];
  readonly version: bigint;
  readonly deleted: boolean;
}

function readRow(r: Record<string, unknown>, n: number): ReverseRow {
  const texts: (string | null)[] = [];
  for (let i = 0; i < n; i++) texts.push((r[`c${i}`] as string | null) ?? null);
  return { texts, version: BigInt(String(r.v)), deleted: Boolean(r.deleted) };
}

/** What MongoDB holds for a key, read beforehand: absent, or present at a version (a missing version field is 0). */
export type KnownDocument = { readonly exists: false } | { readonly exists: true; readonly version: bigint };

/**
 * Writes one row's state into MongoDB, never leaving it over a newer document. With `known` (the document's version
 * read beforehand), a document already at the row's version is not written at all and a missing one is inserted with
 * a plain insert. Two ways to write the rest:
 * - guarded (MongoDB): `replaceOne({ _id, version < v }, doc, upsert)` / `deleteOne({ _id, version < v })`, which the
 *   `_id` index answers for one document;
 * - by `_id` alone (`idOnly`, FerretDB, which reads the whole collection for any filter beyond `_id`): replace or
 *   delete by `_id`, then look at what was displaced; a newer document a concurrent writer put there is put back at
 *   once (the newest of those seen wins), so the newer version is what stays.
 * Returns what happened.
 */
export async function applyRowToMongo(
  coll: Collection<MongoDocument>,
  move: MongoMove,
  row: ReverseRow,
  bson: MongoModule,
  known?: KnownDocument,
  idOnly = false,
): Promise<'written' | 'deleted' | 'newer-kept'> {
  if (known?.exists && known.version >= row.version) return 'newer-kept';
  if (known && !known.exists && row.deleted) return 'newer-kept';
  const doc = rowToDocument(move, row.texts, row.version, bson);
  const vf = move.versionField;
  if (idOnly) return applyById(coll, doc, row, known, versionReader(move));
  // A document without a version field counts as version 0 (as the forward mapping reads it): older than any row the
  // dual-writer touched, but not older than a version-0 row, e.g. the tombstone of a quarantined legacy document,
  // which must not delete that document.
  const older = { _id: doc._id, $or: [{ [vf]: { $lt: row.version } }, ...(row.version > 0n ? [{ [vf]: null }] : [])] } as Record<string, unknown>;
  if (row.deleted) {
    const r = await coll.deleteOne(older);
    return r.deletedCount === 1 ? 'deleted' : 'newer-kept';
  }
  if (await insertIfUnknown(coll, doc, known)) return 'written';
  try {
    const r = await coll.replaceOne(older, doc, { upsert: true });
    return r.matchedCount + r.upsertedCount > 0 ? 'written' : 'newer-kept';
  } catch (e) {
    if ((e as { code?: number }).code === 11000) return 'newer-kept';
    throw e;
  }
}

/**
 * Inserts a document the version read said MongoDB lacks; false when it was there after all (inserted meanwhile by
 * another writer: the caller's guarded or checked replace decides which version stays) or its absence is not known.
 */
async function insertIfUnknown(coll: Collection<MongoDocument>, doc: MongoDocument, known: KnownDocument | undefined): Promise<boolean> {
  if (!known || known.exists) return false;
  try {
    await coll.insertOne(doc);
    return true;
  } catch (e) {
    if ((e as { code?: number }).code !== 11000) throw e;
    return false;
  }
}

const MAPPERS = new WeakMap<MongoMove, DocumentMapper>();

/** A document's version as the forward mapping reads it (Int32, Int64, integral Double); missing or unusable is 0. */
function versionReader(move: MongoMove): (d: MongoDocument) => bigint {
  let mapper = MAPPERS.get(move);
  if (!mapper) MAPPERS.set(move, (mapper = new DocumentMapper(move)));
  const m = mapper;
  return (d) => {
    const v = m.versionOf(d);
    return typeof v === 'bigint' ? v : 0n;
  };
}

async function applyById(
  coll: Collection<MongoDocument>,
  doc: MongoDocument,
  row: ReverseRow,
  known: KnownDocument | undefined,
  versionOf: (d: MongoDocument) => bigint,
): Promise<'written' | 'deleted' | 'newer-kept'> {
  const byId = { _id: doc._id } as Record<string, unknown>;
  if (row.deleted) {
    const gone = (await coll.findOneAndDelete(byId)) as MongoDocument | null;
    if (!gone) return 'newer-kept';
    if (versionOf(gone) < row.version) return 'deleted';
    // Not older than the tombstone (re-created meanwhile): it was not ours to delete.
    await putBack(coll, gone, versionOf);
    return 'newer-kept';
  }
  if (await insertIfUnknown(coll, doc, known)) return 'written';
  const displaced = (await coll.findOneAndReplace(byId, doc, { upsert: true, returnDocument: 'before' })) as MongoDocument | null;
  if (!displaced || versionOf(displaced) < row.version) return 'written';
  // Not older: a concurrent writer's, or (same version) the document as it was, which the guarded write leaves alone
  // too (a legacy document's BSON types may differ from what the row maps back to).
  await putBack(coll, displaced, versionOf);
  return 'newer-kept';
}

/** Puts a displaced newer document back; whatever it displaces in turn is put back if newer still. */
async function putBack(coll: Collection<MongoDocument>, newer: MongoDocument, versionOf: (d: MongoDocument) => bigint): Promise<void> {
  let best = newer;
  for (let i = 0; i < 20; i++) {
    const displaced = (await coll.findOneAndReplace({ _id: best._id } as Record<string, unknown>, best, { upsert: true, returnDocument: 'before' })) as MongoDocument | null;
    if (!displaced || versionOf(displaced) <= versionOf(best)) return;
    best = displaced;
  }
  throw new Error(`document ${String(newer._id)} kept changing while a newer copy was put back (20 attempts); run reverseSync or reconcile() again`);
}

/** The versions MongoDB holds for these `_id`s, by key text (one query by `_id`, which MongoDB answers by index). */
async function knownVersions(coll: Collection<MongoDocument>, move: MongoMove, ids: readonly unknown[], mapper: DocumentMapper): Promise<Map<string, bigint>> {
  const docs = await coll.find({ _id: { $in: ids } } as never, { projection: { [move.versionField]: 1 } }).toArray();
  return versionMap(docs, mapper);
}

function versionMap(docs: Iterable<MongoDocument>, mapper: DocumentMapper, into = new Map<string, bigint>()): Map<string, bigint> {
  for (const d of docs) {
    const k = mapper.keyOf(d._id);
    const v = mapper.versionOf(d);
    if ('key' in k) into.set(k.key, typeof v === 'bigint' ? v : 0n);
  }
  return into;
}

/**
 * Every document's version, in one pass in the server's own order (FerretDB: a page's `$in` would read the whole
 * collection once per page, so a sync got slower as the collection grew). Holds one entry per document in memory.
 */
async function versionSnapshot(coll: Collection<MongoDocument>, move: MongoMove, mapper: DocumentMapper): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  const cursor = coll.find({}, { projection: { [move.versionField]: 1 } }).batchSize(5000);
  try {
    for await (const d of cursor) versionMap([d], mapper, out);
  } finally {
    await cursor.close().catch(() => undefined);
  }
  return out;
}

export interface ReverseSyncResult {
  readonly rows: number;
  readonly written: number;
  readonly deleted: number;
  /** Rows whose document MongoDB already had at the row's version or newer (or, for a tombstone, no longer had). */
  readonly newerKept: number;
}

/**
 * Walks the PostgreSQL table in key order and brings every document in MongoDB to the row's version: what a rollback
 * after the write flip runs once, before the application reads MongoDB again. Tombstones delete their documents.
 */
export async function reverseSync(opts: {
  readonly db: Db;
  readonly table: TableName;
  readonly move: MongoMove;
  readonly collection: Collection<MongoDocument>;
  readonly bson: MongoModule;
  readonly batchSize?: number;
  readonly signal?: AbortSignal;
  /** Called after each page with the totals so far. */
  readonly onProgress?: (soFar: ReverseSyncResult) => void;
}): Promise<ReverseSyncResult> {
  const cols = allColumns(opts.move);
  const batch = opts.batchSize ?? 500;
  let last: string | null = null;
  const out = { rows: 0, written: 0, deleted: 0, newerKept: 0 };
  const mapper = new DocumentMapper(opts.move);
  const { ferretdb } = await withMongoRetry(() => serverTraits(opts.collection));
  const snapshot = ferretdb ? await withMongoRetry(() => versionSnapshot(opts.collection, opts.move, mapper)) : null;
  for (;;) {
    if (opts.signal?.aborted) throw new Error(`reverse sync stopped after ${out.rows} rows; run it again to go on (it is idempotent)`);
    const r: { rows: Record<string, unknown>[] } =
      last === null
        ? await opts.db.query<Record<string, unknown>>(reversePageSql(opts.table, cols, opts.move.key.column, opts.move.key.type, false), [batch])
        : await opts.db.query<Record<string, unknown>>(reversePageSql(opts.table, cols, opts.move.key.column, opts.move.key.type, true), [last, batch]);
    if (r.rows.length === 0) return out;
    const rows = r.rows.map((raw) => readRow(raw, cols.length));
    const known = snapshot ?? (await withMongoRetry(() => knownVersions(opts.collection, opts.move, rows.map((x) => pieceToBson(cols[0]!.type, x.texts[0]!, opts.bson)), mapper)));
    for (const row of rows) {
      const v = known.get(row.texts[0]!);
      const what = await withMongoRetry(() => applyRowToMongo(opts.collection, opts.move, row, opts.bson, v === undefined ? { exists: false } : { exists: true, version: v }, ferretdb));
      out.rows++;
      if (what === 'written') out.written++;
      else if (what === 'deleted') out.deleted++;
      else out.newerKept++;
      last = row.texts[0]!;
    }
    opts.onProgress?.({ ...out });
  }
}

async function withMongoRetry<T>(f: () => Promise<T>, attempts = 30): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (i >= attempts || !isTransientMongoError(e)) throw e;
      await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** i)));
    }
  }
}

export interface ReverseWrite {
  /**
   * Column values as the application has them: strings as PostgreSQL reads them (bigint and numeric as strings stay
   * exact), or BSON/JavaScript values converted by the same rules as the forward mapping (ObjectId, bigint, Date,
   * Binary/Buffer, UUID); a jsonb value is JSON text if it is a string, else converted like a document's field (Int64
   * and Decimal128 exactly, ObjectId and Date in Extended JSON).
   */
  readonly [column: string]: unknown;
}

export interface ReverseWriteResult {
  /** The row's version after the write; null when there was nothing to change (no such live row). */
  readonly version: bigint | null;
  /** false when the MongoDB copy failed and waits in the outbox for reconcile(). */
  readonly synced: boolean;
}

/**
 * The application's writer after the write flip: PostgreSQL first (the row's version goes up by one, and an outbox
 * entry commits in the same transaction), then MongoDB with that version. A failed or never-attempted MongoDB write
 * (crash) stays in the outbox until reconcile() applies it: the rollback path loses nothing.
 */
export class ReverseDualWriter {
  private readonly cols: { name: string; type: MongoColumnType }[];
  private readonly mapper: DocumentMapper;
  constructor(
    private readonly opts: {
      readonly db: Db;
      readonly table: TableName;
      readonly move: MongoMove;
      readonly collection: Collection<MongoDocument>;
      readonly bson: MongoModule;
      readonly stateSchema?: string;
    },
  ) {
    this.cols = allColumns(opts.move);
    this.mapper = new DocumentMapper(opts.move);
  }

  private get outbox(): string {
    return `${ident(this.opts.stateSchema ?? 'zero_downtime')}.mongo_outbox`;
  }

  /**
   * Inside the write's transaction: the row must map back by the move's rules (else the write is refused, so MongoDB
   * never gets a document the forward direction would quarantine), and the unmapped-fields column is brought to what
   * the forward mapping gives for the document now, e.g. the null it recorded for a path a column now has a value for.
   * So a later validation compares like with like.
   */
  private async settle(c: Connection, keyText: string): Promise<void> {
    const { move, table, bson } = this.opts;
    const r = await c.query<Record<string, unknown>>(reverseRowSql(table, this.cols, move.key.column, move.key.type), [keyText]);
    const row = readRow(r.rows[0]!, this.cols.length);
    const mapped = this.mapper.map(rowToDocument(move, row.texts, row.version, bson));
    if (!mapped.ok) {
      throw new ChangeInputError(
        `write to ${moveId(table)} refused: key ${keyText} would not map back to a document the move accepts (${mapped.reason}). Nothing was written.`,
      );
    }
    const rest = typeof move.unmapped === 'object' ? this.cols.length - 1 : -1;
    if (rest < 0 || mapped.row.cells[rest]!.piece === row.texts[rest]) return;
    const cast = move.key.type === 'objectid' ? 'text' : move.key.type;
    await c.query(`UPDATE ${this.qualifiedTable} SET ${ident(this.cols[rest]!.name)} = $2::jsonb WHERE ${ident(move.key.column)} = $1::${cast}`, [keyText, mapped.row.cells[rest]!.param]);
  }

  private get qualifiedTable(): string {
    return `${ident(this.opts.table.schema)}.${ident(this.opts.table.name)}`;
  }

  /** A value for a column of type `t` as a query parameter (see ReverseWrite). */
  private param(t: MongoColumnType, v: unknown, column: string): string | Buffer | null {
    if (v === undefined || v === null) return null;
    if (typeof v === 'string') return v;
    const where = `column ${column}`;
    if (t === 'jsonb') return compactJson(fromBson(v, (x) => x, where));
    return convert(t, v, where, (x) => x).param;
  }

  private keyParam(key: unknown): string {
    const p = this.param(this.opts.move.key.type, key, this.opts.move.key.column);
    if (p === null || typeof p !== 'string') throw new Error(`a key of ${moveId(this.opts.table)} cannot be ${describeBson(key)}`);
    return p;
  }

  /** Inserts or replaces a row (all columns; missing ones become NULL). */
  async upsert(values: ReverseWrite): Promise<ReverseWriteResult & { readonly version: bigint }> {
    const { move } = this.opts;
    const names = this.cols.map((c) => ident(c.name));
    const params = this.cols.map((c) => this.param(c.type, values[c.name], c.name));
    if (params[0] === null) throw new Error(`upsert into ${moveId(this.opts.table)}: the key column ${move.key.column} has no value; nothing was written`);
    const key = ident(move.key.column);
    const ver = ident(VERSION_COLUMN);
    const set = [...names.slice(1).map((n) => `${n} = EXCLUDED.${n}`), `${ver} = zd_t.${ver} + 1`, `${ident(DELETED_COLUMN)} = NULL`];
    const written = await this.opts.db.transaction(async (c) => {
      const r = await c.query<{ k: string; v: string }>(
        `INSERT INTO ${this.qualifiedTable} AS zd_t (${names.join(', ')}, ${ver}) VALUES (${names.map((_n, i) => `$${i + 1}`).join(', ')}, 1)
         ON CONFLICT (${key}) DO UPDATE SET ${set.join(', ')} RETURNING ${key}::text AS k, ${ver}::text AS v`,
        params,
      );
      const row = r.rows[0]!;
      await this.settle(c, row.k);
      await this.note(c, row.k, row.v);
      return { key: row.k, version: BigInt(row.v) };
    });
    return { version: written.version, synced: await this.push(written.key, written.version) };
  }

  /** Changes some columns of a live row (the others keep their values); version null when there is no such row. */
  async update(key: unknown, values: ReverseWrite): Promise<ReverseWriteResult> {
    const { move } = this.opts;
    const keyText = this.keyParam(key);
    const changed = this.cols.slice(1).filter((c) => Object.prototype.hasOwnProperty.call(values, c.name));
    const unknown = Object.keys(values).filter((k) => !this.cols.some((c) => c.name === k));
    if (unknown.length > 0) throw new Error(`update of ${moveId(this.opts.table)}: no column ${unknown.map((u) => JSON.stringify(u)).join(', ')}; nothing was written`);
    const ver = ident(VERSION_COLUMN);
    const set = [...changed.map((c, i) => `${ident(c.name)} = $${i + 2}`), `${ver} = ${ver} + 1`];
    const cast = move.key.type === 'objectid' ? 'text' : move.key.type;
    const version = await this.opts.db.transaction(async (c) => {
      const r = await c.query<{ v: string }>(
        `UPDATE ${this.qualifiedTable} SET ${set.join(', ')} WHERE ${ident(move.key.column)} = $1::${cast} AND ${ident(DELETED_COLUMN)} IS NULL RETURNING ${ver}::text AS v`,
        [keyText, ...changed.map((col) => this.param(col.type, values[col.name], col.name))],
      );
      const v = r.rows[0]?.v;
      if (v === undefined) return null;
      await this.settle(c, keyText);
      await this.note(c, keyText, v);
      return BigInt(v);
    });
    if (version === null) return { version: null, synced: true };
    return { version, synced: await this.push(keyText, version) };
  }

  /** Deletes a row: a tombstone one version up, then the document. */
  async delete(key: unknown): Promise<ReverseWriteResult> {
    const { move, table } = this.opts;
    const keyText = this.keyParam(key);
    const version = await this.opts.db.transaction(async (c) => {
      const r = await c.query<{ v: string }>(`${tombstoneNextSql(table, move.key.column, move.key.type)} RETURNING ${ident(VERSION_COLUMN)}::text AS v`, [keyText]);
      const v = r.rows[0]?.v;
      if (v === undefined) return null;
      await this.note(c, keyText, v);
      return BigInt(v);
    });
    if (version === null) return { version: null, synced: true };
    return { version, synced: await this.push(keyText, version) };
  }

  private async note(c: Connection, keyText: string, version: string): Promise<void> {
    await c.query(`INSERT INTO ${this.outbox} (move, key, version) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [moveId(this.opts.table), keyText, version]);
  }

  private async push(keyText: string, version: bigint): Promise<boolean> {
    try {
      await this.syncKey(keyText);
      await this.opts.db.query(`DELETE FROM ${this.outbox} WHERE move = $1 AND key = $2 AND version <= $3`, [moveId(this.opts.table), keyText, version.toString()]);
      return true;
    } catch {
      // Left in the outbox: reconcile() applies it. The primary write (PostgreSQL) succeeded, so the call succeeds.
      return false;
    }
  }

  /** Brings the document of one key to the row's current state. */
  async syncKey(keyText: string): Promise<void> {
    const { move, table, collection, bson, db } = this.opts;
    const r = await db.query<Record<string, unknown>>(reverseRowSql(table, this.cols, move.key.column, move.key.type), [keyText]);
    if (r.rows.length === 0) return;
    const row = readRow(r.rows[0]!, this.cols.length);
    // findOne by `_id` alone: the one filter FerretDB does not answer by reading the whole collection
    const current = (await collection.findOne({ _id: pieceToBson(this.cols[0]!.type, row.texts[0]!, bson) } as Record<string, unknown>, { projection: { [move.versionField]: 1 } })) as MongoDocument | null;
    const v = current ? this.mapper.versionOf(current) : undefined;
    const { ferretdb } = await serverTraits(collection);
    await applyRowToMongo(collection, move, row, bson, current === null ? { exists: false } : { exists: true, version: typeof v === 'bigint' ? v : 0n }, ferretdb);
  }

  /**
   * Applies the outbox (oldest first): each key's document is brought to the row's current state. Returns how many
   * entries were applied, how many failed (left for the next run) and how many are pending; `error` is the first
   * failure's message.
   */
  async reconcile(limit = 1000): Promise<{ applied: number; failed: number; pending: number; error?: string }> {
    const id = moveId(this.opts.table);
    const r = await this.opts.db.query<{ key: string; version: string; n: number }>(
      `SELECT key, max(version)::text AS version, count(*)::int AS n FROM ${this.outbox} WHERE move = $1 GROUP BY key ORDER BY min(created_at) LIMIT $2`,
      [id, limit],
    );
    let applied = 0;
    let failed = 0;
    let error: string | undefined;
    for (const e of r.rows) {
      try {
        await this.syncKey(e.key);
        const d = await this.opts.db.query(`DELETE FROM ${this.outbox} WHERE move = $1 AND key = $2 AND version <= $3`, [id, e.key, e.version]);
        applied += d.rowCount;
      } catch (err) {
        // One document MongoDB refuses must not hold up the others: it stays pending, with the reason reported.
        failed += e.n;
        error ??= `${e.key}: ${(err as Error).message}`;
      }
    }
    const p = await this.opts.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${this.outbox} WHERE move = $1`, [id]);
    return { applied, failed, pending: p.rows[0]!.n, ...(error !== undefined ? { error } : {}) };
  }
}

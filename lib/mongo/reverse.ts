import type { Collection } from 'mongodb';
import type { Db } from '../engine/db.js';
import { ident, type TableName } from '../postgres/identifiers.js';
import { reversePageSql, reverseRowSql, tombstoneNextSql } from '../postgres/mongo-sql.js';
import { bsonKind } from './bson.js';
import type { MongoColumnType } from './column-types.js';
import { isTransientMongoError, type MongoModule } from './driver.js';
import { parseJson, toBson } from './json.js';
import { allColumns, DELETED_COLUMN, VERSION_COLUMN, moveId, type MongoDocument, type MongoMove } from './move.js';

/**
 * The reverse direction, PostgreSQL → MongoDB, for rolling back after the write flip: PostgreSQL is the primary then,
 * MongoDB the copy kept in sync. Row → document is the inverse of the type rules: numeric → Decimal128, bigint →
 * Int64, double precision → Double, timestamptz → Date (milliseconds; microseconds written directly in PostgreSQL are
 * cut), uuid → Binary subtype 4, bytea → Binary, jsonb → its BSON values, NULL → a missing field (jsonb null stays
 * null). A move with your own `map` function has no inverse, so it has no reverse direction.
 */
export function rowToDocument(move: MongoMove, texts: readonly (string | null)[], version: bigint, bson: MongoModule): MongoDocument {
  if (move.map) throw new Error(`the move ${move.collection.name} → ${String(move.table)} maps documents with your own function, which has no inverse: the reverse direction needs a columns-only move`);
  const cols = allColumns(move);
  const doc: MongoDocument = {};
  const rest = typeof move.unmapped === 'object' ? move.unmapped.column : null;
  cols.forEach((c, i) => {
    const text = texts[i] ?? null;
    if (i === 0) {
      doc._id = pieceToBson(c.type, text, bson);
      return;
    }
    if (c.name === rest) {
      if (text !== null) deepMerge(doc, toBson(parseJson(text), bson) as MongoDocument);
      return;
    }
    if (text === null) return;
    setPath(doc, move.columns[i - 1]!.from, pieceToBson(c.type, text, bson));
  });
  doc[move.versionField] = version;
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

/**
 * Writes one row's state into MongoDB, never over a newer document: `replaceOne({ _id, version < v }, doc, upsert)`
 * either replaces an older document, inserts a missing one, or fails on the duplicate `_id` of a newer one (which is
 * then left alone). A tombstone deletes the document if it is not newer. Returns what happened.
 */
export async function applyRowToMongo(
  coll: Collection<MongoDocument>,
  move: MongoMove,
  row: ReverseRow,
  bson: MongoModule,
): Promise<'written' | 'deleted' | 'newer-kept'> {
  const doc = rowToDocument(move, row.texts, row.version, bson);
  const older = { _id: doc._id, $or: [{ [move.versionField]: { $lt: row.version } }, { [move.versionField]: { $exists: false } }] } as Record<string, unknown>;
  if (row.deleted) {
    const r = await coll.deleteOne(older);
    return r.deletedCount === 1 ? 'deleted' : 'newer-kept';
  }
  try {
    const r = await coll.replaceOne(older, doc, { upsert: true });
    return r.matchedCount + r.upsertedCount > 0 ? 'written' : 'newer-kept';
  } catch (e) {
    if ((e as { code?: number }).code === 11000) return 'newer-kept';
    throw e;
  }
}

export interface ReverseSyncResult {
  readonly rows: number;
  readonly written: number;
  readonly deleted: number;
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
}): Promise<ReverseSyncResult> {
  const cols = allColumns(opts.move);
  const batch = opts.batchSize ?? 500;
  let last: string | null = null;
  const out = { rows: 0, written: 0, deleted: 0, newerKept: 0 };
  for (;;) {
    if (opts.signal?.aborted) throw new Error(`reverse sync stopped after ${out.rows} rows; run it again to go on (it is idempotent)`);
    const r: { rows: Record<string, unknown>[] } =
      last === null
        ? await opts.db.query<Record<string, unknown>>(reversePageSql(opts.table, cols, opts.move.key.column, opts.move.key.type, false), [batch])
        : await opts.db.query<Record<string, unknown>>(reversePageSql(opts.table, cols, opts.move.key.column, opts.move.key.type, true), [last, batch]);
    if (r.rows.length === 0) return out;
    for (const raw of r.rows) {
      const row = readRow(raw, cols.length);
      const what = await withMongoRetry(() => applyRowToMongo(opts.collection, opts.move, row, opts.bson));
      out.rows++;
      if (what === 'written') out.written++;
      else if (what === 'deleted') out.deleted++;
      else out.newerKept++;
      last = row.texts[0]!;
    }
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
  /** Column values as the application has them: key column included; bigint/numeric as strings keep them exact. */
  readonly [column: string]: unknown;
}

/**
 * The application's writer after the write flip: PostgreSQL first (the row's version goes up by one, and an outbox
 * entry commits in the same transaction), then MongoDB with that version. A failed or never-attempted MongoDB write
 * (crash) stays in the outbox until reconcile() applies it: the rollback path loses nothing.
 */
export class ReverseDualWriter {
  private readonly cols: { name: string; type: MongoColumnType }[];
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
  }

  private get outbox(): string {
    return `${ident(this.opts.stateSchema ?? 'zero_downtime')}.mongo_outbox`;
  }

  /** Inserts or replaces a row (all columns; missing ones become NULL). Returns the new version. */
  async upsert(values: ReverseWrite): Promise<bigint> {
    const { move, table } = this.opts;
    const t = `${ident(table.schema)}.${ident(table.name)}`;
    const names = this.cols.map((c) => ident(c.name));
    const params = this.cols.map((c) => {
      const v = values[c.name];
      return v === undefined || v === null ? null : c.type === 'jsonb' && typeof v !== 'string' ? JSON.stringify(v) : (v as string);
    });
    const key = ident(move.key.column);
    const ver = ident(VERSION_COLUMN);
    const set = [...names.slice(1).map((n) => `${n} = EXCLUDED.${n}`), `${ver} = zd_t.${ver} + 1`, `${ident(DELETED_COLUMN)} = NULL`];
    const version = await this.opts.db.transaction(async (c) => {
      const r = await c.query<{ k: string; v: string }>(
        `INSERT INTO ${t} AS zd_t (${names.join(', ')}, ${ver}) VALUES (${names.map((_n, i) => `$${i + 1}`).join(', ')}, 1)
         ON CONFLICT (${key}) DO UPDATE SET ${set.join(', ')} RETURNING ${key}::text AS k, ${ver}::text AS v`,
        params,
      );
      const row = r.rows[0]!;
      await c.query(`INSERT INTO ${this.outbox} (move, key, version) VALUES ($1, $2, $3)`, [moveId(table), row.k, row.v]);
      return { key: row.k, version: BigInt(row.v) };
    });
    await this.push(version.key, version.version);
    return version.version;
  }

  /** Deletes a row: a tombstone one version up, then the document. */
  async delete(keyText: string): Promise<void> {
    const { move, table } = this.opts;
    const version = await this.opts.db.transaction(async (c) => {
      const r = await c.query<{ v: string }>(`${tombstoneNextSql(table, move.key.column, move.key.type)} RETURNING ${ident(VERSION_COLUMN)}::text AS v`, [keyText]);
      const v = r.rows[0]?.v;
      if (v === undefined) return null;
      await c.query(`INSERT INTO ${this.outbox} (move, key, version) VALUES ($1, $2, $3)`, [moveId(table), keyText, v]);
      return BigInt(v);
    });
    if (version !== null) await this.push(keyText, version);
  }

  private async push(keyText: string, version: bigint): Promise<void> {
    try {
      await this.syncKey(keyText);
      await this.opts.db.query(`DELETE FROM ${this.outbox} WHERE move = $1 AND key = $2 AND version <= $3`, [moveId(this.opts.table), keyText, version.toString()]);
    } catch {
      // Left in the outbox: reconcile() applies it. The primary write (PostgreSQL) succeeded, so the call succeeds.
    }
  }

  /** Brings the document of one key to the row's current state. */
  async syncKey(keyText: string): Promise<void> {
    const { move, table, collection, bson, db } = this.opts;
    const r = await db.query<Record<string, unknown>>(reverseRowSql(table, this.cols, move.key.column, move.key.type), [keyText]);
    if (r.rows.length === 0) return;
    await applyRowToMongo(collection, move, readRow(r.rows[0]!, this.cols.length), bson);
  }

  /** Applies every outbox entry (oldest first); returns how many were applied and how many are still pending. */
  async reconcile(limit = 1000): Promise<{ applied: number; pending: number }> {
    const id = moveId(this.opts.table);
    const r = await this.opts.db.query<{ key: string; version: string }>(
      `SELECT key, max(version)::text AS version FROM ${this.outbox} WHERE move = $1 GROUP BY key ORDER BY min(created_at) LIMIT $2`,
      [id, limit],
    );
    let applied = 0;
    for (const e of r.rows) {
      try {
        await this.syncKey(e.key);
        await this.opts.db.query(`DELETE FROM ${this.outbox} WHERE move = $1 AND key = $2 AND version <= $3`, [id, e.key, e.version]);
        applied++;
      } catch (err) {
        if (!isTransientMongoError(err)) throw err;
      }
    }
    const p = await this.opts.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${this.outbox} WHERE move = $1`, [id]);
    return { applied, pending: p.rows[0]!.n };
  }
}

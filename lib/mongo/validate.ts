import type { Collection } from 'mongodb';
import type { Db } from '../db/db.js';
import { ident } from '../postgres/identifiers.js';
import { chunkChecksumSql, rowHashesSql, reverseRowSql } from './sql.js';
import { withRetry } from './backfill.js';
import type { MongoKeyType } from './column-types.js';
import type { MongoModule } from './driver.js';
import { hash60, rowMd5 } from './row-hash.js';
import { allColumns, DELETED_COLUMN, type MongoDocument } from './move.js';
import type { PostgresSink } from './sink.js';

export type MismatchKind = 'missing-in-postgres' | 'extra-in-postgres' | 'different' | 'not-quarantined';

export interface Mismatch {
  readonly key: string;
  readonly kind: MismatchKind;
}

export interface MoveValidation {
  readonly mode: 'full' | 'sample';
  readonly mongoCount: number;
  readonly postgresCount: number;
  readonly quarantineCount: number;
  /** Documents compared (mapped ones by checksum, unmappable ones against the quarantine). */
  readonly checked: number;
  readonly mismatches: number;
  readonly mismatchRate: number;
  readonly details: readonly Mismatch[];
  readonly chunks: number;
  /** Chunk halves checksummed while pinning mismatches down. */
  readonly bisections: number;
}

export interface ValidateOptions {
  readonly db: Db;
  readonly sink: PostgresSink;
  readonly collection: Collection<MongoDocument>;
  readonly bson: MongoModule;
  readonly stateSchema: string;
  readonly chunkSize?: number;
  /** Sampling: check this many random windows of chunkSize documents instead of everything. */
  readonly sample?: { readonly windows: number };
  /** How often a mismatching document is looked at again before it counts (a write in flight settles). Default 3. */
  readonly recheck?: number;
  readonly recheckDelayMs?: number;
  readonly signal?: AbortSignal;
  readonly onChunk?: (checked: number, mismatches: number) => void;
}

interface Entry {
  readonly key: string;
  readonly md5: string;
}

interface Chunk {
  lo: string | null;
  hi: string | null;
  entries: Entry[];
}

const BISECT_LEAF = 16;
const KEY_BRACKET: Record<MongoKeyType, string> = { objectid: 'objectId', text: 'string', bigint: 'number', uuid: 'binData' };

/**
 * Compares the collection with the table: counts first, then checksums over `_id` ranges computed the same way on
 * both sides (md5 of the same row text, summed; see row-hash.ts), a mismatching chunk bisected down to documents.
 * Only the ranges cost PostgreSQL a query; MongoDB is read once, in `_id` order. Unmappable documents must be in the
 * quarantine. A document found different is looked at again a few times before it counts, so a write in flight
 * between the two reads is not called a mismatch.
 */
export async function validateMove(o: ValidateOptions): Promise<MoveValidation> {
  const { db, sink, collection } = o;
  const move = sink.move;
  const chunkSize = o.chunkSize ?? move.chunkSize;
  const cols = allColumns(move);
  const keyCol = move.key.column;
  const keyType = move.key.type;
  const t = sink.table;
  const q = `${ident(o.stateSchema)}.mongo_quarantine`;
  const budget = 60_000;
  let mongoCount = 0;
  const pgCount = Number((await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ident(t.schema)}.${ident(t.name)} WHERE ${ident(DELETED_COLUMN)} IS NULL`)).rows[0]!.n);
  const qCount = Number((await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${q} WHERE move = $1`, [sink.id])).rows[0]!.n);

  const details: Mismatch[] = [];
  let checked = 0;
  let chunks = 0;
  let bisections = 0;
  const unmappable: string[] = [];

  const pgChunk = async (lo: string | null, hi: string | null): Promise<{ n: number; s: bigint }> => {
    const params = [lo, hi].filter((x): x is string => x !== null);
    const r = await db.query<{ n: string; s: string }>(chunkChecksumSql(t, cols, keyCol, keyType, lo !== null, hi !== null), params);
    return { n: Number(r.rows[0]!.n), s: BigInt(r.rows[0]!.s) };
  };
  const sumOf = (entries: readonly Entry[]) => entries.reduce((acc, e) => acc + hash60(e.md5), 0n);

  /** Narrows a mismatching range down to the keys that differ. */
  const bisect = async (lo: string | null, hi: string | null, entries: readonly Entry[]): Promise<Mismatch[]> => {
    if (entries.length <= BISECT_LEAF) {
      const params = [lo, hi].filter((x): x is string => x !== null);
      const r = await db.query<{ k: string; h: string }>(rowHashesSql(t, cols, keyCol, keyType, lo !== null, hi !== null), params);
      const pg = new Map(r.rows.map((x) => [x.k, x.h]));
      const out: Mismatch[] = [];
      for (const e of entries) {
        const h = pg.get(e.key);
        if (h === undefined) out.push({ key: e.key, kind: 'missing-in-postgres' });
        else if (h !== e.md5) out.push({ key: e.key, kind: 'different' });
        pg.delete(e.key);
      }
      for (const k of pg.keys()) out.push({ key: k, kind: 'extra-in-postgres' });
      return out;
    }
    const mid = Math.floor(entries.length / 2);
    const midKey = entries[mid]!.key;
    const halves: [string | null, string | null, readonly Entry[]][] = [
      [lo, midKey, entries.slice(0, mid)],
      [midKey, hi, entries.slice(mid)],
    ];
    const out: Mismatch[] = [];
    for (const [a, b, part] of halves) {
      bisections++;
      const p = await pgChunk(a, b);
      if (p.n !== part.length || p.s !== sumOf(part)) out.push(...(await bisect(a, b, part)));
    }
    return out;
  };

  const checkChunk = async (c: Chunk) => {
    chunks++;
    checked += c.entries.length;
    const p = await pgChunk(c.lo, c.hi);
    if (p.n !== c.entries.length || p.s !== sumOf(c.entries)) details.push(...(await bisect(c.lo, c.hi, c.entries)));
    o.onChunk?.(checked, details.length);
  };

  const entryOf = (doc: MongoDocument): Entry | null => {
    const r = sink.mapper.map(doc);
    if (r.ok) return { key: r.row.key, md5: rowMd5(r.row.cells) };
    unmappable.push(sink.docId(doc._id));
    return null;
  };

  const bracket = KEY_BRACKET[keyType];
  if (!o.sample) {
    // Every document, in _id order (one pass: the key bracket's documents are contiguous in it), the mappable ones cut
    // into chunks; the first and last chunks are open-ended so rows PostgreSQL has outside MongoDB's range are found.
    let cur: Chunk = { lo: null, hi: null, entries: [] };
    const cursor = collection.find({}).sort({ _id: 1 }).batchSize(chunkSize);
    try {
      for await (const doc of cursor) {
        if (o.signal?.aborted) throw new Error('validation stopped');
        mongoCount++;
        const e = entryOf(doc);
        if (!e) continue;
        if (cur.entries.length >= chunkSize) {
          cur.hi = e.key;
          await checkChunk(cur);
          cur = { lo: e.key, hi: null, entries: [] };
        }
        cur.entries.push(e);
      }
    } finally {
      await cursor.close().catch(() => undefined);
    }
    await checkChunk(cur);
  } else {
    mongoCount = await withRetry(() => collection.estimatedDocumentCount(), budget, o.signal);
    for (let w = 0; w < o.sample.windows; w++) {
      const pivot = await randomPivot(collection, keyType, o.bson, bracket);
      if (pivot === undefined) break;
      const docs = await collection
        .find({ _id: { $type: bracket, $gte: pivot } } as never)
        .sort({ _id: 1 })
        .limit(chunkSize + 1)
        .toArray();
      if (docs.length === 0) continue;
      const entries: Entry[] = [];
      let hi: string | null = null;
      for (const [i, doc] of docs.entries()) {
        if (i === chunkSize) {
          const k = sink.mapper.keyOf(doc._id);
          hi = 'key' in k ? k.key : null;
          break;
        }
        const e = entryOf(doc);
        if (e) entries.push(e);
      }
      const lo = entries[0]?.key ?? null;
      if (lo === null) continue;
      await checkChunk({ lo, hi, entries });
    }
  }

  // Unmappable documents: each must be in the quarantine.
  checked += unmappable.length;
  for (let i = 0; i < unmappable.length; i += 5000) {
    const part = unmappable.slice(i, i + 5000);
    const r = await db.query<{ doc_id: string }>(`SELECT doc_id FROM ${q} WHERE move = $1 AND doc_id = ANY($2::text[])`, [sink.id, part]);
    const found = new Set(r.rows.map((x) => x.doc_id));
    for (const d of part) if (!found.has(d)) details.push({ key: d, kind: 'not-quarantined' });
  }

  const confirmed = await recheck(o, details);
  return {
    mode: o.sample ? 'sample' : 'full',
    mongoCount,
    postgresCount: pgCount,
    quarantineCount: qCount,
    checked,
    mismatches: confirmed.length,
    mismatchRate: checked > 0 ? confirmed.length / checked : 0,
    details: confirmed.slice(0, 100),
    chunks,
    bisections,
  };
}

/** Looks at each suspect again (document and row now) a few times; only those that never agree count. */
async function recheck(o: ValidateOptions, suspects: readonly Mismatch[]): Promise<Mismatch[]> {
  let left = [...suspects];
  const rounds = o.recheck ?? 3;
  const { sink, db, collection, bson } = o;
  const cols = allColumns(sink.move);
  const rowSql = reverseRowSql(sink.table, cols, sink.move.key.column, sink.move.key.type);
  for (let round = 0; round < rounds && left.length > 0; round++) {
    await new Promise((r) => setTimeout(r, o.recheckDelayMs ?? 200));
    const still: Mismatch[] = [];
    for (const m of left) {
      if (m.kind === 'not-quarantined') {
        const r = await db.query(`SELECT 1 FROM ${ident(o.stateSchema)}.mongo_quarantine WHERE move = $1 AND doc_id = $2`, [sink.id, m.key]);
        const doc = await collection.findOne({ _id: bson.BSON.EJSON.parse(m.key, { relaxed: false, useBigInt64: true } as never) as never });
        if (r.rowCount === 0 && doc && !sink.mapper.map(doc).ok) still.push(m);
        continue;
      }
      const idValue = idFromKey(sink.move.key.type, m.key, bson);
      const doc = await collection.findOne({ _id: idValue as never });
      const mapped = doc ? sink.mapper.map(doc) : null;
      const want = mapped && mapped.ok ? rowMd5(mapped.row.cells) : null;
      const r = await db.query<Record<string, unknown>>(rowSql, [m.key]);
      const row = r.rows[0];
      const live = row && !row.deleted;
      const have = live ? rowMd5(cols.map((_c, i) => ({ param: null, piece: (row[`c${i}`] as string | null) ?? null }))) : null;
      if (want !== have) still.push(m);
    }
    left = still;
  }
  return left;
}

export function idFromKey(t: MongoKeyType, key: string, bson: MongoModule): unknown {
  switch (t) {
    case 'objectid':
      return bson.ObjectId.createFromHexString(key);
    case 'text':
      return key;
    case 'bigint': {
      const b = BigInt(key);
      return b >= -2147483648n && b <= 2147483647n ? Number(b) : b;
    }
    case 'uuid':
      return new bson.UUID(key);
  }
}

/** A random `_id` between the smallest and the largest of the key bracket (MongoDB has no $sample on FerretDB). */
async function randomPivot(coll: Collection<MongoDocument>, t: MongoKeyType, bson: MongoModule, bracket: string): Promise<unknown> {
  const first = await coll.find({ _id: { $type: bracket } } as never).sort({ _id: 1 }).limit(1).project({ _id: 1 }).toArray();
  const last = await coll.find({ _id: { $type: bracket } } as never).sort({ _id: -1 }).limit(1).project({ _id: 1 }).toArray();
  if (first.length === 0 || last.length === 0) return undefined;
  const a = first[0]!._id;
  const b = last[0]!._id;
  const between = (lo: bigint, hi: bigint) => lo + (hi > lo ? BigInt(Math.floor(Math.random() * 2 ** 52)) * (hi - lo) / 2n ** 52n : 0n);
  switch (t) {
    case 'objectid': {
      const n = between(BigInt(`0x${String(a.toString('hex'))}`), BigInt(`0x${String(b.toString('hex'))}`));
      return bson.ObjectId.createFromHexString(n.toString(16).padStart(24, '0'));
    }
    case 'bigint': {
      const n = between(BigInt(String(a)), BigInt(String(b)));
      return n >= -2147483648n && n <= 2147483647n ? Number(n) : n;
    }
    case 'uuid':
    case 'text':
      // No arithmetic between strings or UUIDs worth having: start at the first and skip a random share.
      return a;
  }
}

import type { Statement } from '../db/db.js';
import { ident, qualified, type TableName } from '../postgres/identifiers.js';
import { pieceSql, sqlType, type MongoColumnType, type MongoKeyType } from './column-types.js';
import { DELETED_COLUMN, VERSION_COLUMN } from './move.js';

/**
 * SQL of the MongoDB → PostgreSQL move. Identifiers go through ident(), values are parameters; row batches travel as
 * one array parameter per column (unnest), so a batch is one statement whatever its size.
 */

export interface MoveColumn {
  readonly name: string;
  readonly type: MongoColumnType;
}

/** State tables of the move, in the engine's state schema: backfill progress per `_id` type and the quarantine. */
export function mongoStateTables(stateSchema: string): Statement[] {
  const s = ident(stateSchema);
  return [
    {
      text: `CREATE TABLE IF NOT EXISTS ${s}.mongo_backfill (
        move text NOT NULL, bracket text NOT NULL, last_id text, done boolean NOT NULL DEFAULT false,
        read bigint NOT NULL DEFAULT 0, written bigint NOT NULL DEFAULT 0, quarantined bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (move, bracket))`,
    },
    {
      text: `CREATE TABLE IF NOT EXISTS ${s}.mongo_quarantine (
        move text NOT NULL, doc_id text NOT NULL, key text, version bigint NOT NULL DEFAULT 0, reason text NOT NULL,
        document text NOT NULL, collection text NOT NULL, source text NOT NULL,
        quarantined_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (move, doc_id))`,
    },
    { text: `CREATE INDEX IF NOT EXISTS mongo_quarantine_key ON ${s}.mongo_quarantine (move, key)` },
    {
      // The reverse direction's outbox: PostgreSQL is the primary then, so the pending mark commits with the write.
      text: `CREATE TABLE IF NOT EXISTS ${s}.mongo_outbox (
        move text NOT NULL, key text NOT NULL, version bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (move, key, version))`,
    },
  ];
}

export function createTargetTable(t: TableName, columns: readonly MoveColumn[], key: string, keyType: MongoKeyType): Statement {
  const cols = columns.map((c) => `${ident(c.name)} ${c.name === key ? keySqlType(keyType) : sqlType(c.type)}${c.name === key ? ' NOT NULL' : ''}`);
  return {
    text: `CREATE TABLE ${qualified(t)} (${[...cols, `${ident(VERSION_COLUMN)} bigint NOT NULL DEFAULT 0`, `${ident(DELETED_COLUMN)} timestamptz`, `PRIMARY KEY (${ident(key)})`].join(', ')})`,
  };
}

/** Text keys compare byte-wise, as MongoDB compares strings, so `_id` ranges mean the same rows on both sides. */
export function keySqlType(t: MongoKeyType): string {
  return t === 'objectid' || t === 'text' ? 'text COLLATE "C"' : t;
}

function arrayType(t: MongoColumnType): string {
  return t === 'objectid' ? 'text[]' : `${t}[]`;
}

/**
 * Upserts a batch, never over a newer row: `DO UPDATE … WHERE target.version < excluded.version`, so a backfill
 * reading an old document cannot overwrite what the dual-writer wrote since, nor resurrect a tombstone. Quarantine
 * entries of the written keys with an older or equal version are resolved in the same statement.
 * Parameters: $1 move id, then one array per column, then the versions.
 */
export function upsertRowsSql(t: TableName, columns: readonly MoveColumn[], key: string, stateSchema: string): string {
  const names = columns.map((c) => ident(c.name));
  const arrays = columns.map((c, i) => `$${i + 2}::${arrayType(c.type)}`);
  const v = ident(VERSION_COLUMN);
  const d = ident(DELETED_COLUMN);
  const set = [...columns.filter((c) => c.name !== key).map((c) => `${ident(c.name)} = EXCLUDED.${ident(c.name)}`), `${v} = EXCLUDED.${v}`, `${d} = NULL`];
  return `WITH up AS (
      INSERT INTO ${qualified(t)} AS zd_t (${[...names, v].join(', ')})
      SELECT * FROM unnest(${[...arrays, `$${columns.length + 2}::bigint[]`].join(', ')})
      ON CONFLICT (${ident(key)}) DO UPDATE SET ${set.join(', ')} WHERE zd_t.${v} < EXCLUDED.${v}
      RETURNING ${ident(key)}::text AS k, ${v} AS v),
    resolved AS (
      DELETE FROM ${ident(stateSchema)}.mongo_quarantine q USING up WHERE q.move = $1 AND q.key = up.k AND q.version <= up.v RETURNING 1)
    SELECT (SELECT count(*) FROM up)::int AS written, (SELECT count(*) FROM resolved)::int AS resolved`;
}

/** A tombstone: the row stays, marked deleted at a version, so an older copy of the document can never come back. */
export function tombstoneSql(t: TableName, key: string, keyType: MongoKeyType): string {
  const v = ident(VERSION_COLUMN);
  const d = ident(DELETED_COLUMN);
  return `INSERT INTO ${qualified(t)} AS zd_t (${ident(key)}, ${v}, ${d}) VALUES ($1::${keyType === 'objectid' ? 'text' : keyType}, $2::bigint, clock_timestamp())
    ON CONFLICT (${ident(key)}) DO UPDATE SET ${v} = EXCLUDED.${v}, ${d} = EXCLUDED.${d} WHERE zd_t.${v} < EXCLUDED.${v}`;
}

/** A tombstone one version above whatever the row has, for a delete whose version was never learned (a crash). */
/** The live row's version ($1 the key), none when there is no row or it is a tombstone. */
export function liveVersionSql(t: TableName, key: string, keyType: MongoKeyType): string {
  return `SELECT ${ident(VERSION_COLUMN)}::text AS v FROM ${qualified(t)} WHERE ${ident(key)} = $1::${keyType === 'objectid' ? 'text' : keyType} AND ${ident(DELETED_COLUMN)} IS NULL`;
}

/**
 * A tombstone one version above $2, only if the live row is still at $2: a writer that re-created the document after
 * the caller saw it absent has written a newer version, which this must not bury.
 */
export function tombstoneIfAtSql(t: TableName, key: string, keyType: MongoKeyType): string {
  const v = ident(VERSION_COLUMN);
  const d = ident(DELETED_COLUMN);
  return `UPDATE ${qualified(t)} SET ${v} = ${v} + 1, ${d} = clock_timestamp() WHERE ${ident(key)} = $1::${keyType === 'objectid' ? 'text' : keyType} AND ${d} IS NULL AND ${v} = $2::bigint`;
}

export function tombstoneNextSql(t: TableName, key: string, keyType: MongoKeyType): string {
  const v = ident(VERSION_COLUMN);
  const d = ident(DELETED_COLUMN);
  return `UPDATE ${qualified(t)} SET ${v} = ${v} + 1, ${d} = clock_timestamp() WHERE ${ident(key)} = $1::${keyType === 'objectid' ? 'text' : keyType} AND ${d} IS NULL`;
}

/**
 * The version of each of these keys ($1, an array) the table holds, tombstones included: what a resumed copy that
 * cannot seek to its last `_id` (FerretDB) checks, so a document copied before is neither written nor counted again.
 */
export function keyVersionsSql(t: TableName, key: string, keyType: MongoKeyType): string {
  return `SELECT ${ident(key)}::text AS k, ${ident(VERSION_COLUMN)}::text AS v FROM ${qualified(t)} WHERE ${ident(key)} = ANY($1::${keyType === 'objectid' ? 'text' : keyType}[])`;
}

/** The quarantined version of each of these documents ($2, canonical Extended JSON `_id`s) of a move ($1). */
export function quarantinedVersionsSql(stateSchema: string): string {
  return `SELECT doc_id, version::text AS v FROM ${ident(stateSchema)}.mongo_quarantine WHERE move = $1 AND doc_id = ANY($2::text[])`;
}

/** Quarantines documents ($2… arrays), keeping the newest version's reason per document. */
export function quarantineSql(stateSchema: string): string {
  return `INSERT INTO ${ident(stateSchema)}.mongo_quarantine AS q (move, doc_id, key, version, reason, document, collection, source)
    SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
    ON CONFLICT (move, doc_id) DO UPDATE SET key = EXCLUDED.key, version = EXCLUDED.version, reason = EXCLUDED.reason,
      document = EXCLUDED.document, source = EXCLUDED.source, quarantined_at = now()
    WHERE q.version <= EXCLUDED.version`;
}

/** The text both sides hash per row: `jsonb_build_array(piece, …)::text` (see column-types.ts pieceSql). */
export function rowTextSql(columns: readonly MoveColumn[]): string {
  return `jsonb_build_array(${columns.map((c) => pieceSql(c.type, ident(c.name))).join(', ')})::text`;
}

/** 60 bits of the row text's md5, summed (exactly, as numeric) over a chunk: order-free, so no sort is needed. */
export function rowHashSql(columns: readonly MoveColumn[]): string {
  return `('x' || substr(md5(${rowTextSql(columns)}), 1, 15))::bit(60)::bigint`;
}

function rangeWhere(key: string, keyType: MongoKeyType, lo: boolean, hi: boolean, first: number): string {
  const k = ident(key);
  const cast = keyType === 'objectid' ? 'text' : keyType;
  const parts = [`${ident(DELETED_COLUMN)} IS NULL`];
  let n = first;
  if (lo) parts.push(`${k} >= $${n++}::${cast}`);
  if (hi) parts.push(`${k} < $${n++}::${cast}`);
  return parts.join(' AND ');
}

/** Count and hash sum of the live rows with key in [lo, hi) (either end open when absent). */
export function chunkChecksumSql(t: TableName, columns: readonly MoveColumn[], key: string, keyType: MongoKeyType, lo: boolean, hi: boolean): string {
  return `SELECT count(*)::bigint AS n, coalesce(sum(${rowHashSql(columns)}), 0)::text AS s FROM ${qualified(t)} WHERE ${rangeWhere(key, keyType, lo, hi, 1)}`;
}

/** Each live row's key and md5 in [lo, hi), to pin a mismatch down to documents. */
export function rowHashesSql(t: TableName, columns: readonly MoveColumn[], key: string, keyType: MongoKeyType, lo: boolean, hi: boolean): string {
  return `SELECT ${ident(key)}::text AS k, md5(${rowTextSql(columns)}) AS h FROM ${qualified(t)} WHERE ${rangeWhere(key, keyType, lo, hi, 1)} ORDER BY ${ident(key)}`;
}

/** Rows in key order after $1 (or from the start), with every column as the text the reverse mapping reads. */
export function reversePageSql(t: TableName, columns: readonly MoveColumn[], key: string, keyType: MongoKeyType, after: boolean): string {
  const cast = keyType === 'objectid' ? 'text' : keyType;
  const sel = columns.map((c, i) => `${pieceSql(c.type, ident(c.name))} AS c${i}`);
  return `SELECT ${sel.join(', ')}, ${ident(VERSION_COLUMN)}::text AS v, ${ident(DELETED_COLUMN)} IS NOT NULL AS deleted
    FROM ${qualified(t)} ${after ? `WHERE ${ident(key)} > $1::${cast}` : ''} ORDER BY ${ident(key)} LIMIT ${after ? '$2' : '$1'}`;
}

/** One row by key, same shape as reversePageSql. */
export function reverseRowSql(t: TableName, columns: readonly MoveColumn[], key: string, keyType: MongoKeyType): string {
  const cast = keyType === 'objectid' ? 'text' : keyType;
  const sel = columns.map((c, i) => `${pieceSql(c.type, ident(c.name))} AS c${i}`);
  return `SELECT ${sel.join(', ')}, ${ident(VERSION_COLUMN)}::text AS v, ${ident(DELETED_COLUMN)} IS NOT NULL AS deleted
    FROM ${qualified(t)} WHERE ${ident(key)} = $1::${cast}`;
}

/** Deletes tombstones (after the move is finished, nothing can resurrect a row any more). */
export function purgeTombstonesSql(t: TableName, key: string): string {
  const k = ident(key);
  return `DELETE FROM ${qualified(t)} WHERE ${k} IN (SELECT ${k} FROM ${qualified(t)} WHERE ${ident(DELETED_COLUMN)} IS NOT NULL LIMIT $1)`;
}

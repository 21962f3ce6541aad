import { ident, qualified, type TableName } from './identifiers.js';

/** A key column with its type as format_type() printed it; values cross the wire as text and are cast back. */
export interface KeyColumn {
  readonly name: string;
  readonly type: string;
}

/** The keyset predicate `(k1, k2) > (CAST($n AS t1), CAST($n+1 AS t2))` that lets the primary key index find the start. */
function keysetAfter(keys: readonly KeyColumn[], firstParam: number, qualifier = ''): string {
  const cols = keys.map((k) => qualifier + ident(k.name)).join(', ');
  const vals = keys.map((k, i) => `CAST($${firstParam + i} AS ${k.type})`).join(', ');
  return `(${cols}) > (${vals})`;
}

const alias = (i: number) => `_zd_k${i}`;

/**
 * One backfill batch. The CTE picks the next `limit` keys after the last one (no OFFSET: the index seeks), the
 * UPDATE computes the new values and skips rows that already hold them (a re-run after a crash writes nothing
 * twice), and the outer SELECT reports how far it got. Key columns are aliased so that user expressions, which name
 * the table's columns unqualified, can never be ambiguous.
 * Parameters: $1 = limit, then one per key column when `hasLastKey`.
 */
export function backfillBatchSql(
  table: TableName,
  keys: readonly KeyColumn[],
  set: readonly { column: string; expression: string }[],
  hasLastKey: boolean,
  only: 'distinct' | 'null' = 'distinct',
): string {
  const t = qualified(table);
  const keyList = keys.map((k, i) => `${ident(k.name)} AS ${alias(i)}`).join(', ');
  const order = keys.map((k) => ident(k.name)).join(', ');
  const where = hasLastKey ? `WHERE ${keysetAfter(keys, 2)}` : '';
  const join = keys.map((k, i) => `_zd_t.${ident(k.name)} = _zd_batch.${alias(i)}`).join(' AND ');
  const assignments = set.map((s) => `${ident(s.column)} = (${s.expression})`).join(', ');
  const changed = set
    .map((s) => (only === 'null' ? `_zd_t.${ident(s.column)} IS NULL` : `_zd_t.${ident(s.column)} IS DISTINCT FROM (${s.expression})`))
    .join(' OR ');
  const lastKey = keys.map((_k, i) => `${alias(i)}::text`).join(', ');
  const desc = keys.map((_k, i) => `${alias(i)} DESC`).join(', ');
  return `WITH _zd_batch AS (SELECT ${keyList} FROM ${t} ${where} ORDER BY ${order} LIMIT $1),
_zd_upd AS (UPDATE ${t} AS _zd_t SET ${assignments} FROM _zd_batch WHERE ${join} AND (${changed}) RETURNING 1)
SELECT (SELECT count(*) FROM _zd_batch)::int AS scanned, (SELECT count(*) FROM _zd_upd)::int AS updated,
       (SELECT json_build_array(${lastKey}) FROM _zd_batch ORDER BY ${desc} LIMIT 1) AS last_key`;
}

/**
 * One verification chunk: counts rows in the next `limit` keys where any `column IS DISTINCT FROM expression`, with
 * up to 5 sample keys. Parameters as for backfillBatchSql.
 */
export function verifyChunkSql(
  table: TableName,
  keys: readonly KeyColumn[],
  equal: readonly { column: string; expression: string }[],
  hasLastKey: boolean,
): string {
  const t = qualified(table);
  const keyList = keys.map((k, i) => `${ident(k.name)} AS ${alias(i)}`).join(', ');
  const order = keys.map((k) => ident(k.name)).join(', ');
  const where = hasLastKey ? `WHERE ${keysetAfter(keys, 2)}` : '';
  const bad = equal.map((e) => `${ident(e.column)} IS DISTINCT FROM (${e.expression})`).join(' OR ');
  const keyText = keys.map((_k, i) => `${alias(i)}::text`).join(', ');
  const desc = keys.map((_k, i) => `${alias(i)} DESC`).join(', ');
  return `WITH _zd_chunk AS (SELECT ${keyList}, (${bad}) AS _zd_bad FROM ${t} ${where} ORDER BY ${order} LIMIT $1)
SELECT (SELECT count(*) FROM _zd_chunk)::int AS scanned,
       (SELECT count(*) FROM _zd_chunk WHERE _zd_bad)::int AS mismatches,
       (SELECT json_agg(json_build_array(${keyText})) FROM (SELECT * FROM _zd_chunk WHERE _zd_bad LIMIT 5) s) AS samples,
       (SELECT json_build_array(${keyText}) FROM _zd_chunk ORDER BY ${desc} LIMIT 1) AS last_key`;
}

/** `(k1, k2) <op> (CAST($n AS t1), CAST($n+1 AS t2))`: a row comparison the btree on (k1, k2) can seek. */
function keyCompare(keys: readonly KeyColumn[], op: '>' | '<=' | '=', firstParam: number): string {
  const cols = keys.map((k) => ident(k.name)).join(', ');
  const vals = keys.map((k, i) => `CAST($${firstParam + i} AS ${k.type})`).join(', ');
  return `(${cols}) ${op} (${vals})`;
}

function changedPredicate(set: readonly { column: string; expression: string }[], only: 'distinct' | 'null'): string {
  return set.map((s) => (only === 'null' ? `${ident(s.column)} IS NULL` : `${ident(s.column)} IS DISTINCT FROM (${s.expression})`)).join(' OR ');
}

/**
 * How far the next `limit` keys after `from` (exclusive) reach, not past `to` (inclusive): the key count and the
 * last key. It reads the key index only as far as the batch goes, so its cost does not grow with the table.
 * Parameters: $1 = limit, then the `from` key when `hasFrom`, then the `to` key when `hasTo`.
 */
export function keysetBoundSql(table: TableName, keys: readonly KeyColumn[], hasFrom: boolean, hasTo: boolean): string {
  const t = qualified(table);
  const keyList = keys.map((k, i) => `${ident(k.name)} AS ${alias(i)}`).join(', ');
  const order = keys.map((k) => ident(k.name)).join(', ');
  const conds: string[] = [];
  if (hasFrom) conds.push(keyCompare(keys, '>', 2));
  if (hasTo) conds.push(keyCompare(keys, '<=', 2 + (hasFrom ? keys.length : 0)));
  const where = conds.length ? `WHERE ${conds.join(' AND ')}` : '';
  const lastKey = keys.map((_k, i) => `${alias(i)}::text`).join(', ');
  const desc = keys.map((_k, i) => `${alias(i)} DESC`).join(', ');
  return `WITH _zd_b AS (SELECT ${keyList} FROM ${t} ${where} ORDER BY ${order} LIMIT $1)
SELECT (SELECT count(*) FROM _zd_b)::int AS n, (SELECT json_build_array(${lastKey}) FROM _zd_b ORDER BY ${desc} LIMIT 1) AS last_key`;
}

/**
 * The backfill write of one batch: the key range (from, to] given by value, so the planner sees a plain index range
 * (no join against a list of keys), computing the new values and skipping rows that already hold them.
 * Parameters: the `from` key when `hasFrom`, then the `to` key when `hasTo`.
 */
export function keysetRangeUpdateSql(
  table: TableName,
  keys: readonly KeyColumn[],
  set: readonly { column: string; expression: string }[],
  only: 'distinct' | 'null',
  hasFrom: boolean,
  hasTo: boolean,
): string {
  const conds: string[] = [];
  if (hasFrom) conds.push(keyCompare(keys, '>', 1));
  if (hasTo) conds.push(keyCompare(keys, '<=', 1 + (hasFrom ? keys.length : 0)));
  conds.push(`(${changedPredicate(set, only)})`);
  const assignments = set.map((s) => `${ident(s.column)} = (${s.expression})`).join(', ');
  return `UPDATE ${qualified(table)} SET ${assignments} WHERE ${conds.join(' AND ')}`;
}

/**
 * The backfill write of one batch of a table without a usable key: heap pages [$1, $2) by ctid (a TID range scan,
 * PostgreSQL 14+). `scanned` counts the rows found in those pages before the write.
 */
export function ctidRangeUpdateSql(table: TableName, set: readonly { column: string; expression: string }[], only: 'distinct' | 'null'): string {
  const t = qualified(table);
  const range = `ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid`;
  const assignments = set.map((s) => `${ident(s.column)} = (${s.expression})`).join(', ');
  return `WITH _zd_u AS (UPDATE ${t} SET ${assignments} WHERE ${range} AND (${changedPredicate(set, only)}) RETURNING 1)
SELECT (SELECT count(*) FROM ${t} WHERE ${range})::int AS scanned, (SELECT count(*) FROM _zd_u)::int AS updated`;
}

/** A canary read by primary (or unique) key, the cheapest query an application makes on the table. $1… = the key. */
export function keyProbeSql(table: TableName, keys: readonly KeyColumn[]): string {
  return `SELECT * FROM ${qualified(table)} WHERE ${keyCompare(keys, '=', 1)}`;
}

/** A canary read by ctid, for tables without a key. $1 = a tid as text. */
export function ctidProbeSql(table: TableName): string {
  return `SELECT * FROM ${qualified(table)} WHERE ctid = $1::tid`;
}

/** Up to $2 keys from a block sample of about $1 percent of the table: probe targets without a full key scan. */
export function sampleKeysSql(table: TableName, keys: readonly KeyColumn[] | 'ctid'): string {
  const cols = keys === 'ctid' ? 'ctid::text' : keys.map((k) => `${ident(k.name)}::text`).join(', ');
  return `SELECT json_build_array(${cols}) AS k FROM ${qualified(table)} TABLESAMPLE SYSTEM ($1) LIMIT $2`;
}

import type { BackfillJoin, BackfillSpec } from './specs.js';
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
 * One verification chunk: counts rows in the next `limit` keys where any `column IS DISTINCT FROM expression`, with
 * up to 5 sample keys. Parameters: $1 = limit, then one per key column when `hasLastKey`.
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

/** $1 = a table: its relkind and the server's version number (what a walk by heap pages needs to know first). */
export const TABLE_KIND_SQL = `SELECT relkind::text AS relkind, current_setting('server_version_num')::int AS version FROM pg_class WHERE oid = $1::regclass`;

/**
 * $1 = a plain or partitioned table (PostgreSQL 12+): its leaves (the table itself when plain: pg_partition_tree
 * gives nothing for a table outside a partition tree), each with its heap's size in pages now and its row and page
 * counts from the statistics.
 */
export const HEAP_LEAVES_SQL = `SELECT n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS relkind,
       (pg_relation_size(c.oid) / current_setting('block_size')::int)::text AS pages, c.reltuples::float8 AS rows, c.relpages::int AS relpages
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid IN (SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf UNION SELECT $1::regclass WHERE (SELECT relkind FROM pg_class WHERE oid = $1::regclass) <> 'p')`;

/**
 * One verification chunk by heap pages [$1, $2) (a TID range scan, PostgreSQL 14+): the rows there, those where any
 * `column IS DISTINCT FROM expression`, and up to 5 of their keys. The heap is read in its own order, with no index
 * walk and no sort: a 1M-row table in about a tenth of the time of key-ordered chunks.
 * With `partitionOf`, `table` is a leaf partition of that table, read as itself (see asLeaf).
 */
export function verifyPagesSql(table: TableName, keys: readonly KeyColumn[], equal: readonly { column: string; expression: string }[], partitionOf?: TableName): string {
  const { target: t, own } = asLeaf(table, equal, partitionOf);
  const range = `ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid`;
  const bad = own.map((e) => `${ident(e.column)} IS DISTINCT FROM (${e.expression})`).join(' OR ');
  const keyList = keys.map((k, i) => `${ident(k.name)} AS ${alias(i)}`).join(', ');
  const keyText = keys.map((_k, i) => `${alias(i)}::text`).join(', ');
  // The keys are turned into JSON for the rows that disagree only (an aggregate's FILTER is tested before its argument).
  return `SELECT count(*)::int AS scanned, count(*) FILTER (WHERE _zd_bad)::int AS mismatches,
       to_json((array_agg(json_build_array(${keyText})) FILTER (WHERE _zd_bad))[1:5]) AS samples
  FROM (SELECT ${keyList}, (${bad}) AS _zd_bad FROM ${t} WHERE ${range}) _zd_chunk`;
}

/** `(k1, k2) <op> (CAST($n AS t1), CAST($n+1 AS t2))`: a row comparison the btree on (k1, k2) can seek. */
function keyCompare(keys: readonly KeyColumn[], op: '>' | '<=' | '=', firstParam: number, qualifier = ''): string {
  const cols = keys.map((k) => qualifier + ident(k.name)).join(', ');
  const vals = keys.map((k, i) => `CAST($${firstParam + i} AS ${k.type})`).join(', ');
  return `(${cols}) ${op} (${vals})`;
}

/** The key range (from, to] of a batch or chunk, from `$firstParam` on: the `from` key when `hasFrom`, then the `to` key when `hasTo`. */
function keyRange(keys: readonly KeyColumn[], hasFrom: boolean, hasTo: boolean, firstParam: number, qualifier = ''): string[] {
  const conds: string[] = [];
  if (hasFrom) conds.push(keyCompare(keys, '>', firstParam, qualifier));
  if (hasTo) conds.push(keyCompare(keys, '<=', firstParam + (hasFrom ? keys.length : 0), qualifier));
  return conds;
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
  const conds = keyRange(keys, hasFrom, hasTo, 2);
  const where = conds.length ? `WHERE ${conds.join(' AND ')}` : '';
  const lastKey = keys.map((_k, i) => `${alias(i)}::text`).join(', ');
  const desc = keys.map((_k, i) => `${alias(i)} DESC`).join(', ');
  return `WITH _zd_b AS (SELECT ${keyList} FROM ${t} ${where} ORDER BY ${order} LIMIT $1)
SELECT (SELECT count(*) FROM _zd_b)::int AS n, (SELECT json_build_array(${lastKey}) FROM _zd_b ORDER BY ${desc} LIMIT 1) AS last_key`;
}

/** The smallest and largest value of a one-column key (two index endpoint reads), as text; NULLs for an empty table. */
export function keyExtentSql(table: TableName, key: KeyColumn): string {
  return `SELECT min(${ident(key.name)})::text AS lo, max(${ident(key.name)})::text AS hi FROM ${qualified(table)}`;
}

/**
 * The key `$1` positions after `from` (exclusive), not past `to` (inclusive), or no row when fewer keys are left:
 * where a full batch or chunk ends. The index seeks to `from` and steps over at most `$1` entries, so the cost is
 * the batch's, never the table's (an OFFSET after a keyset seek, not from the start: the way pt-online-schema-change
 * finds its chunk ends). No sort and no materialized list, unlike a count-and-last-key over the same keys, which
 * cost the backfill a fifth of its time on top of the UPDATE. A short tail is measured with keysetBoundSql.
 * Parameters: $1 = limit (≥ 1), then the `from` key when `hasFrom`, then the `to` key when `hasTo`.
 */
export function keysetNthKeySql(table: TableName, keys: readonly KeyColumn[], hasFrom: boolean, hasTo: boolean): string {
  const order = keys.map((k) => ident(k.name)).join(', ');
  const conds = keyRange(keys, hasFrom, hasTo, 2);
  const where = conds.length ? `WHERE ${conds.join(' AND ')}` : '';
  const keyList = keys.map((k, i) => `${ident(k.name)} AS ${alias(i)}`).join(', ');
  const lastKey = keys.map((_k, i) => `${alias(i)}::text`).join(', ');
  // The key is turned into JSON in the outer query, for the one row found: in the same SELECT, every row the OFFSET
  // steps over is projected too (a json_build_array per skipped key: 12–16 ms instead of 7–10 for a 12 500-key step
  // of a 1M-row table, pgbench averages).
  return `SELECT json_build_array(${lastKey}) AS last_key FROM (SELECT ${keyList} FROM ${qualified(table)} ${where} ORDER BY ${order} OFFSET $1::bigint - 1 LIMIT 1) _zd_n`;
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
  archiveKeys?: BackfillSpec['archiveKeys'],
  partitionOf?: TableName,
): string {
  const { target, own } = asLeaf(table, set, partitionOf);
  const conds = keyRange(keys, hasFrom, hasTo, 1);
  conds.push(`(${changedPredicate(own, only)})`);
  const assignments = own.map((s) => `${ident(s.column)} = (${s.expression})`).join(', ');
  const update = `UPDATE ${target} SET ${assignments} WHERE ${conds.join(' AND ')}`;
  // The unused `_zd_batch` CTE is never run; it gives the batch a pg_stat_statements entry the application's own
  // UPDATE of the same shape cannot share (a repair after the cutover is not a "user" of the old column).
  if (!archiveKeys) return `WITH _zd_batch AS (SELECT 1) ${update}`;
  // The INSERT's row count is the batch's: every row the UPDATE wrote is new to the archive (a range is walked once).
  return `WITH _zd_u AS (${update} RETURNING ${keys.map((k) => ident(k.name)).join(', ')})
INSERT INTO ${qualified(archiveKeys.into)} (${archiveKeys.columns.map(ident).join(', ')}) SELECT * FROM _zd_u ON CONFLICT DO NOTHING`;
}

/**
 * The batch writes when the expressions read a joined table `_zd_a` (a restore from a column archive), as two
 * statements over the batch's key range: the rows the archive has, joined to it (the planner merges two index ranges,
 * or probes the archive once per row), then the rows it lacks (inserted since the contract), with `_zd_a` one row of
 * NULLs. In the single-statement form every mention of the archive is a correlated subquery per row (a restore names
 * it three or four times, in SET and in the changed-row test), each an index probe of its own; a LEFT JOIN form needs
 * the table joined to itself, one more probe per row. Parameters: the `from` key when `hasFrom`, then the `to` key.
 */
export function keysetRangeJoinUpdateSqls(
  table: TableName,
  keys: readonly KeyColumn[],
  set: readonly { column: string; expression: string }[],
  only: 'distinct' | 'null',
  join: BackfillJoin,
  hasFrom: boolean,
  hasTo: boolean,
): [string, string] {
  const t = qualified(table);
  const a = qualified(join.table);
  const range = keyRange(keys, hasFrom, hasTo, 1, `${t}.`);
  const joinedKeys = keys.map((k) => ({ name: join.on.find((j) => j.column === k.name)?.joined ?? k.name, type: k.type }));
  const archiveRange = keyRange(joinedKeys, hasFrom, hasTo, 1, '_zd_a.');
  const on = join.on.map((j) => `_zd_a.${ident(j.joined)} = ${t}.${ident(j.column)}`).join(' AND ');
  // The anti-join repeats the range on the archive: without it a merge anti-join reads the archive's key index from
  // its start on every batch.
  const absent = `NOT EXISTS (SELECT 1 FROM ${a} AS _zd_e WHERE ${[...join.on.map((j) => `_zd_e.${ident(j.joined)} = ${t}.${ident(j.column)}`), ...keyRange(joinedKeys, hasFrom, hasTo, 1, '_zd_e.')].join(' AND ')})`;
  const changed = `(${changedPredicate(set, only)})`;
  const assignments = set.map((x) => `${ident(x.column)} = (${x.expression})`).join(', ');
  const archived = `UPDATE ${t} SET ${assignments} FROM ${a} AS _zd_a WHERE ${[on, ...range, ...archiveRange, changed].join(' AND ')}`;
  const notArchived = `UPDATE ${t} SET ${assignments} FROM (SELECT _zd_n.* FROM (SELECT 1) AS _zd_one LEFT JOIN ${a} AS _zd_n ON false) AS _zd_a
 WHERE ${[...range, absent, changed].join(' AND ')}`;
  return [archived, notArchived];
}

/**
 * The backfill write of one batch of a table without a usable key: heap pages [$1, $2) by ctid (a TID range scan,
 * PostgreSQL 14+). `scanned` counts the rows found in those pages before the write.
 */
export function ctidRangeUpdateSql(
  table: TableName,
  set: readonly { column: string; expression: string }[],
  only: 'distinct' | 'null',
  partitionOf?: TableName,
): string {
  const range = `ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid`;
  const { target, own } = asLeaf(table, set, partitionOf);
  const assignments = own.map((s) => `${ident(s.column)} = (${s.expression})`).join(', ');
  return `WITH _zd_u AS (UPDATE ${target} SET ${assignments} WHERE ${range} AND (${changedPredicate(own, only)}) RETURNING 1)
SELECT (SELECT count(*) FROM ${qualified(table)} WHERE ${range})::int AS scanned, (SELECT count(*) FROM _zd_u)::int AS updated`;
}

/**
 * `column = expression` pairs whose expressions name the row by `table` (a change's guard subqueries do, by its
 * qualified name) pointed at `as` instead: an alias, or another table's qualified name.
 */
export function rowNamedAs<T extends { readonly column: string; readonly expression: string }>(pairs: readonly T[], table: TableName, as: string): T[] {
  return pairs.map((p) => ({ ...p, expression: p.expression.split(`${qualified(table)}.`).join(`${as}.`) }));
}

/**
 * What a statement names `table` by (`target`) and its expressions as they must read there (`own`). With
 * `partitionOf`, `table` is a leaf partition of that table, read or written as itself under the partitioned table's
 * own name as alias: the expressions' qualified names of the partitioned table mean nothing on the leaf and are
 * pointed at the alias, and an author's expression that names the row by the bare table name (`events.first_name`),
 * as it may on the table itself, means the leaf's row too.
 */
function asLeaf<T extends { readonly column: string; readonly expression: string }>(table: TableName, pairs: readonly T[], partitionOf?: TableName): { target: string; own: readonly T[] } {
  if (!partitionOf) return { target: qualified(table), own: pairs };
  const alias = ident(partitionOf.name);
  return { target: `${qualified(table)} AS ${alias}`, own: rowNamedAs(pairs, partitionOf, alias) };
}

/**
 * $1 = a leaf partition's oid, $2 = a partitioned table: the leaf's schema and name while it is still a partition
 * somewhere below that table, else no row (detached or dropped since a backfill planned it: no longer its rows). Run
 * before every batch: pg_partition_root climbs the leaf's few ancestors, where pg_partition_tree would list the whole
 * tree.
 */
export const LEAF_NAME_SQL = `SELECT n.nspname::text AS schema, c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = $1::oid AND pg_partition_root(c.oid) = $2::regclass`;

/**
 * $1 = a partitioned table: its leaf partitions (oid order, so a partition created later comes later), each with its
 * heap's size in pages now.
 */
export const LEAF_PAGES_SQL = `SELECT t.relid::oid::int8 AS oid, (pg_relation_size(t.relid) / current_setting('block_size')::int)::int8 AS pages
  FROM pg_partition_tree($1::regclass) t WHERE t.isleaf ORDER BY t.relid::oid`;

/**
 * The backfill's canary probes in a `_zd_canary` CTE: a pg_stat_statements entry of their own (a CTE's name is part of
 * the query id; a comment or an alias is not), so the contract's query gate never counts them as the application's
 * reads of a column it removes, and they never hide the application's identical read. A plain read's CTE is inlined
 * (PostgreSQL 12+); the locking one is not, and still takes and waits for the row lock it must time.
 */
function ownProbe(select: string): string {
  return `WITH _zd_canary AS (${select}) SELECT * FROM _zd_canary`;
}

/** A canary read by primary (or unique) key, the cheapest query an application makes on the table. $1… = the key. */
export function keyProbeSql(table: TableName, keys: readonly KeyColumn[], lock = false): string {
  return ownProbe(`SELECT * FROM ${qualified(table)} WHERE ${keyCompare(keys, '=', 1)}${lock ? ' FOR NO KEY UPDATE' : ''}`);
}

/** A canary read by ctid, for tables without a key. $1 = a tid as text. */
export function ctidProbeSql(table: TableName, lock = false): string {
  return ownProbe(`SELECT * FROM ${qualified(table)} WHERE ctid = $1::tid${lock ? ' FOR NO KEY UPDATE' : ''}`);
}

/**
 * Up to $2 keys, one per heap page, from a block sample of about $1 percent of the table, in random order: probe
 * targets spread over the table without a full key scan. One per page, because a block sample returns whole pages:
 * 200 keys of a plain sample lie on three or four pages, which stay cached and time the cheapest read there is.
 */
export function sampleKeysSql(table: TableName, keys: readonly KeyColumn[] | 'ctid'): string {
  const cols = keys === 'ctid' ? 'ctid::text' : keys.map((k) => `${ident(k.name)}::text`).join(', ');
  return `SELECT k FROM (SELECT DISTINCT ON (tableoid, _zd_page) json_build_array(${cols}) AS k, (ctid::text::point)[0] AS _zd_page
                 FROM ${qualified(table)} TABLESAMPLE SYSTEM ($1) ORDER BY tableoid, _zd_page) s ORDER BY random() LIMIT $2`;
}

/** The table's size in pages as the catalog has it (at least 1). $1 = the table. */
export const relationPagesSql = `SELECT greatest(1, relpages, (pg_relation_size($1::regclass) / current_setting('block_size')::int))::float8 AS pages FROM pg_class WHERE oid = $1::regclass`;

/**
 * relationPagesSql for a partitioned table (PostgreSQL 12+): the sum of its partitions' (its own relpages are 0, and a
 * sample sized by them reads the whole table).
 */
export const partitionedPagesSql = `SELECT greatest(1, sum(greatest(relpages, (pg_relation_size(relid) / current_setting('block_size')::int))))::float8 AS pages
  FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid`;

import type { Connection } from '../db/db.js';
import type { KeyColumn } from '../postgres/batch-sql.js';
import { ChangeInputError, qualified, tableLabel, type TableName } from '../postgres/identifiers.js';

/**
 * What a backfill walks the table by: an ordered, unique, non-null key; heap pages when there is none; or, on a
 * partitioned table, each leaf partition's heap pages (`columns`: the table's key, for the canary's probes, if any),
 * or each leaf partition by the table's key (`leaf-keys`: one chunk per leaf).
 */
export type WalkKey =
  | { readonly kind: 'keys'; readonly columns: readonly KeyColumn[]; readonly source: 'primary key' | 'unique index' }
  | { readonly kind: 'ctid' }
  | { readonly kind: 'leaves'; readonly columns: readonly KeyColumn[] | null }
  | { readonly kind: 'leaf-keys'; readonly columns: readonly KeyColumn[] };

/**
 * How a partitioned table may be walked, the caller's call from its spec: 'pages' (leaf by leaf by heap pages: a spec
 * whose column a sync trigger keeps in step), 'keys' (leaf by leaf by the key: any spec driven by the walked rows), or
 * 'parent' (the table's key through the parent: a mirror, or `partitionWalk: 'key'`).
 */
export type PartitionWalk = 'pages' | 'keys' | 'parent';

/**
 * A partitioned table whose leaves are all plain tables is walked leaf by leaf (see PartitionWalk): by heap pages
 * where PostgreSQL is 14+ and the spec allows it, else by the key, one chunk per leaf. By pages, a batch is a TID
 * range scan of one partition instead of a key range over the parent, which PostgreSQL turns into a Merge Append over
 * every partition's index. Otherwise, the primary key when there is one; else the narrowest valid, non-partial unique
 * btree index over NOT NULL columns (as good as a primary key for keyset batches); else ctid page ranges, which need a
 * plain table and PostgreSQL 14+ (TID range scans: older servers would read the whole table for every batch).
 */
export async function resolveWalkKey(conn: Connection, table: TableName, primaryKey: readonly KeyColumn[], partitionWalk: PartitionWalk = 'parent'): Promise<WalkKey> {
  const rel = await conn.query<{ relkind: string; version: number }>(
    `SELECT c.relkind::text AS relkind, current_setting('server_version_num')::int AS version
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [table.schema, table.name],
  );
  const r = rel.rows[0];
  if (!r) throw new ChangeInputError(`backfill: table ${tableLabel(table)} does not exist. Nothing was changed.`);
  const key = primaryKey.length > 0 ? { columns: primaryKey, source: 'primary key' as const } : await uniqueKey(conn, table);
  if (partitionWalk !== 'parent' && r.relkind === 'p' && r.version >= 120000) {
    const other = await conn.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf AND c.relkind <> 'r'`,
      [qualified(table)],
    );
    if (other.rows[0]!.n === 0) {
      if (partitionWalk === 'pages' && r.version >= 140000) return { kind: 'leaves', columns: key?.columns ?? null };
      if (key) return { kind: 'leaf-keys', columns: key.columns };
    }
  }
  if (key) return { kind: 'keys', ...key };
  const why =
    r.relkind !== 'r'
      ? `it is ${r.relkind === 'p' ? 'a partitioned table with a foreign partition or on a server before PostgreSQL 14' : `of relkind '${r.relkind}'`}, whose rows have no single ctid space`
      : r.version < 140000
        ? `the server is PostgreSQL ${Math.floor(r.version / 10000)}, which has no TID range scan (needed for ctid batches, PostgreSQL 14+)`
        : '';
  if (why) {
    throw new ChangeInputError(
      `backfill: ${tableLabel(table)} has no primary key and no unique index over NOT NULL columns, and cannot be walked by ctid: ${why}. ` +
        'Nothing was changed. Add a primary key (or a unique index on NOT NULL columns, built CONCURRENTLY) and run again.',
    );
  }
  return { kind: 'ctid' };
}

async function uniqueKey(conn: Connection, table: TableName): Promise<{ columns: KeyColumn[]; source: 'unique index' } | null> {
  const unique = await conn.query<{ names: string[]; types: string[] }>(
    `SELECT array_agg(a.attname::text ORDER BY k.ord) AS names, array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord) AS types
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
       CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
      GROUP BY i.indexrelid HAVING bool_and(a.attnotnull) ORDER BY count(*), i.indexrelid LIMIT 1`,
    [table.schema, table.name],
  );
  const u = unique.rows[0];
  return u ? { columns: u.names.map((name, i) => ({ name, type: u.types[i]! })), source: 'unique index' } : null;
}

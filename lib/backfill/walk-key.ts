import type { Connection } from '../db/db.js';
import type { KeyColumn } from '../postgres/batch-sql.js';
import { ChangeInputError, tableLabel, type TableName } from '../postgres/identifiers.js';

/** What a backfill walks the table by: an ordered, unique, non-null key, or heap pages when there is none. */
export type WalkKey =
  | { readonly kind: 'keys'; readonly columns: readonly KeyColumn[]; readonly source: 'primary key' | 'unique index' }
  | { readonly kind: 'ctid' };

/**
 * The primary key when there is one; else the narrowest valid, non-partial unique btree index over NOT NULL columns
 * (as good as a primary key for keyset batches); else ctid page ranges, which need a plain table and PostgreSQL 14+
 * (TID range scans: older servers would read the whole table for every batch).
 */
export async function resolveWalkKey(conn: Connection, table: TableName, primaryKey: readonly KeyColumn[]): Promise<WalkKey> {
  if (primaryKey.length > 0) return { kind: 'keys', columns: primaryKey, source: 'primary key' };
  const rel = await conn.query<{ relkind: string; version: number }>(
    `SELECT c.relkind::text AS relkind, current_setting('server_version_num')::int AS version
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [table.schema, table.name],
  );
  const r = rel.rows[0];
  if (!r) throw new ChangeInputError(`backfill: table ${tableLabel(table)} does not exist. Nothing was changed.`);
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
  if (u) return { kind: 'keys', columns: u.names.map((name, i) => ({ name, type: u.types[i]! })), source: 'unique index' };
  const why =
    r.relkind !== 'r'
      ? `it is ${r.relkind === 'p' ? 'a partitioned table' : `of relkind '${r.relkind}'`}, whose rows have no single ctid space`
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

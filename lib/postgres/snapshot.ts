import type { Connection } from '../db/db.js';
import { qualified } from './identifiers.js';

/**
 * A schema as a map of object keys to their definitions, read from the catalog with PostgreSQL's own printers
 * (format_type, pg_get_constraintdef, pg_get_indexdef, pg_get_triggerdef, pg_get_functiondef, pg_get_viewdef).
 * It works on any server, PGlite included, where pg_dump may be missing or of another version.
 * Column order is not part of it: a column dropped and restored comes back last, and PostgreSQL cannot reorder.
 */
export interface SchemaSnapshot {
  readonly objects: Readonly<Record<string, string>>;
}

export interface TableChecksum {
  readonly rows: number;
  readonly md5: string;
}

const QUERIES: readonly { kind: string; sql: string }[] = [
  {
    kind: 'column',
    sql: `SELECT n.nspname || '.' || c.relname || '.' || a.attname AS key,
                 format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                 || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
                 || CASE a.attidentity WHEN 'a' THEN ' IDENTITY ALWAYS' WHEN 'd' THEN ' IDENTITY BY DEFAULT' ELSE '' END
                 || CASE a.attgenerated WHEN 's' THEN ' GENERATED' ELSE '' END
                 || coalesce(' COLLATE ' || nullif(co.collname, 'default'), '')
                 || coalesce(' COMMENT ' || col_description(c.oid, a.attnum), '')
                 || coalesce(' ACL ' || a.attacl::text, '') AS def
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
           WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped`,
  },
  {
    kind: 'relation',
    sql: `SELECT n.nspname || '.' || c.relname AS key,
                 c.relkind::text || coalesce(' COMMENT ' || obj_description(c.oid, 'pg_class'), '') || coalesce(' ACL ' || c.relacl::text, '')
                 || CASE WHEN c.relkind IN ('v', 'm') THEN ' AS ' || pg_get_viewdef(c.oid) ELSE '' END AS def
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')`,
  },
  {
    kind: 'constraint',
    sql: `SELECT n.nspname || '.' || c.relname || '.' || co.conname AS key,
                 pg_get_constraintdef(co.oid) || CASE WHEN co.convalidated THEN '' ELSE ' (not validated)' END AS def
            FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = ANY($1)`,
  },
  {
    kind: 'index',
    sql: `SELECT n.nspname || '.' || ic.relname AS key,
                 pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' (INVALID)' END AS def
            FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
           WHERE n.nspname = ANY($1)`,
  },
  {
    kind: 'trigger',
    sql: `SELECT n.nspname || '.' || c.relname || '.' || t.tgname AS key, pg_get_triggerdef(t.oid) AS def
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = ANY($1) AND NOT t.tgisinternal`,
  },
  {
    kind: 'function',
    sql: `SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS key,
                 md5(pg_get_functiondef(p.oid)) AS def
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = ANY($1) AND p.prokind IN ('f', 'p')`,
  },
  {
    kind: 'sequence',
    sql: `SELECT n.nspname || '.' || c.relname AS key,
                 format_type(s.seqtypid, NULL) || coalesce(' OWNED BY ' || (SELECT dc.relname || '.' || da.attname FROM pg_depend dp
                   JOIN pg_class dc ON dc.oid = dp.refobjid JOIN pg_attribute da ON da.attrelid = dp.refobjid AND da.attnum = dp.refobjsubid
                   WHERE dp.objid = c.oid AND dp.deptype IN ('a', 'i') AND dp.classid = 'pg_class'::regclass LIMIT 1), '') AS def
            FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = ANY($1)`,
  },
];

export async function schemaSnapshot(conn: Connection, schemas: readonly string[]): Promise<SchemaSnapshot> {
  const objects: Record<string, string> = {};
  for (const q of QUERIES) {
    const r = await conn.query<{ key: string; def: string }>(q.sql, [schemas as unknown as string[]]);
    for (const row of r.rows) objects[`${q.kind} ${row.key}`] = row.def;
  }
  return { objects: Object.fromEntries(Object.entries(objects).sort(([a], [b]) => a.localeCompare(b))) };
}

/** Readable differences, one line each: `- key: before`, `+ key: after`, `~ key: before → after`. */
export function diffSnapshots(before: SchemaSnapshot, after: SchemaSnapshot): string[] {
  const out: string[] = [];
  const keys = [...new Set([...Object.keys(before.objects), ...Object.keys(after.objects)])].sort();
  for (const k of keys) {
    const a = before.objects[k];
    const b = after.objects[k];
    if (a === b) continue;
    if (b === undefined) out.push(`- ${k}: ${a}`);
    else if (a === undefined) out.push(`+ ${k}: ${b}`);
    else out.push(`~ ${k}: ${a} → ${b}`);
  }
  return out;
}

/**
 * Per-table row count and an order-independent checksum of the rows as jsonb (keys sorted by PostgreSQL, so a
 * column restored at another position hashes the same).
 */
export async function dataChecksums(conn: Connection, schemas: readonly string[]): Promise<Record<string, TableChecksum>> {
  const tables = await conn.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') ORDER BY 1, 2`,
    [schemas as unknown as string[]],
  );
  const out: Record<string, TableChecksum> = {};
  for (const t of tables.rows) {
    const r = await conn.query<{ rows: string; md5: string | null }>(
      `SELECT count(*) AS rows, md5(string_agg(h, '' ORDER BY h)) AS md5
         FROM (SELECT md5(to_jsonb(_zd_row)::text) AS h FROM ${qualified(t)} AS _zd_row) s`,
    );
    out[`${t.schema}.${t.name}`] = { rows: Number(r.rows[0]?.rows ?? 0), md5: r.rows[0]?.md5 ?? '' };
  }
  return out;
}

export function diffChecksums(before: Record<string, TableChecksum>, after: Record<string, TableChecksum>): string[] {
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
    const a = before[k];
    const b = after[k];
    if (!a) out.push(`+ table ${k}: ${b!.rows} rows`);
    else if (!b) out.push(`- table ${k}: ${a.rows} rows`);
    else if (a.md5 !== b.md5 || a.rows !== b.rows) out.push(`~ table ${k}: ${a.rows} rows (${a.md5}) → ${b.rows} rows (${b.md5})`);
  }
  return out;
}

import type { Connection } from '../db/db.js';
import { TABLE_KIND_SQL } from './batch-sql.js';
import { qualified, tableLabel, type TableName } from './identifiers.js';

export interface ColumnInfo {
  readonly name: string;
  /** format_type() of the column: a type name PostgreSQL itself printed, safe to put back into DDL. */
  readonly type: string;
  readonly notNull: boolean;
  /** pg_get_expr() of the default, or null. */
  readonly default: string | null;
  readonly identity: '' | 'a' | 'd';
  readonly generated: '' | 's';
  /** Indexes (by name) whose key or predicate uses the column. */
  readonly indexes: readonly string[];
  /** Constraints other than NOT NULL (by name and contype) that use the column. */
  readonly constraints: readonly { readonly name: string; readonly type: string }[];
  /** Foreign keys of other tables pointing at this column. */
  readonly referencedBy: readonly string[];
}

export interface TableInfo {
  readonly table: TableName;
  readonly columns: readonly ColumnInfo[];
  /** Primary key columns in key order; empty when the table has none. */
  readonly primaryKey: readonly string[];
  readonly estimatedRows: number;
  /** Every index of the table with PostgreSQL's own definition (pg_get_indexdef); absent in snapshots of older versions. */
  readonly indexes?: readonly IndexInfo[];
  /** Every constraint of the table other than catalogued NOT NULLs; absent in snapshots of older versions. */
  readonly tableConstraints?: readonly ConstraintInfo[];
  /** Foreign keys (of this or other tables) that reference this table; absent in snapshots of older versions. */
  readonly referencingForeignKeys?: readonly ReferencingForeignKey[];
  /**
   * Set for a partitioned table only: its partition key and every partition below it. A change plans one step per
   * partition from it, so it is part of the stored snapshot like the rest (absent for plain tables, and in snapshots
   * taken by releases that did not read it).
   */
  readonly partitioning?: Partitioning;
}

export interface PartitionKey {
  readonly strategy: 'range' | 'list' | 'hash';
  /** Key columns in key order; null where the key is an expression. */
  readonly columns: readonly (string | null)[];
}

export interface Partitioning extends PartitionKey {
  /** server_version_num when read: what PostgreSQL allows on a partitioned table depends on it. */
  readonly serverVersion: number;
  /** Every partition below the table, depth first, each partitioned one before its own partitions. */
  readonly partitions: readonly PartitionInfo[];
}

export interface PartitionInfo {
  readonly table: TableName;
  /** The table it is a partition of (the partitioned table itself, or a partition that is partitioned). */
  readonly parent: TableName;
  /** 1 for a partition of the table, 2 for a partition of one of those… */
  readonly depth: number;
  /** 'table' holds rows; 'partitioned' has partitions of its own; 'foreign' is a foreign table (it can have no index). */
  readonly kind: 'table' | 'partitioned' | 'foreign';
  /** pg_get_expr() of the bound: `FOR VALUES FROM (…) TO (…)`, `DEFAULT`… */
  readonly bound: string;
  /** The partition key of a partitioned partition. */
  readonly key?: PartitionKey;
  /** Its indexes: each with the index of its parent it is attached to (null when none). */
  readonly indexes: readonly { readonly name: string; readonly parentIndex: string | null; readonly valid: boolean }[];
}

export interface ReferencingForeignKey {
  readonly name: string;
  /** The table that holds the foreign key. */
  readonly table: TableName;
  /** pg_get_constraintdef(). */
  readonly definition: string;
  readonly validated: boolean;
  /** Referenced columns of this table, in key order. */
  readonly referencedColumns: readonly string[];
}

export interface IndexInfo {
  readonly name: string;
  /** pg_get_indexdef(): enough to build the index again. */
  readonly definition: string;
  readonly unique: boolean;
  readonly primary: boolean;
  readonly valid: boolean;
  /** The constraint the index implements (primary key, unique, exclusion), or null. */
  readonly constraint: string | null;
}

export interface ConstraintInfo {
  readonly name: string;
  readonly type: string;
  /** pg_get_constraintdef(). */
  readonly definition: string;
  readonly validated: boolean;
}

/** What the engine read of the catalog when a change first ran; stored so later phases see the same facts. */
export interface CatalogSnapshot {
  readonly tables: Readonly<Record<string, TableInfo>>;
  /** Names asked for that exist but are not tables (view, index, sequence…), by `schema.name` → relkind. */
  readonly others?: Readonly<Record<string, string>>;
}

export function tableInfo(snapshot: CatalogSnapshot, table: TableName): TableInfo | undefined {
  return snapshot.tables[tableLabel(table)];
}

export function columnInfo(snapshot: CatalogSnapshot, table: TableName, column: string): ColumnInfo | undefined {
  return tableInfo(snapshot, table)?.columns.find((c) => c.name === column);
}

interface ColumnRow {
  name: string;
  type: string;
  not_null: boolean;
  default: string | null;
  identity: '' | 'a' | 'd';
  generated: '' | 's';
  indexes: string[] | null;
  constraints: { name: string; type: string }[] | null;
  referenced_by: string[] | null;
}

/** Whether a relation exists; `name` as SQL writes it (quoted, schema-qualified where it needs to be). */
export async function relationExists(conn: Connection, name: string): Promise<boolean> {
  const r = await conn.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name]);
  return !!r.rows[0]?.t;
}

/** Whether `table` is a partitioned table (relkind p): what asks for pg_partition_tree (PostgreSQL 12+) and what not. */
export async function isPartitioned(conn: Pick<Connection, 'query'>, table: TableName): Promise<boolean> {
  const r = await conn.query<{ relkind: string }>(TABLE_KIND_SQL, [qualified(table)]);
  return r.rows[0]?.relkind === 'p';
}

/** Reads what the engine needs of each table; tables that do not exist are simply absent from the snapshot. */
export async function readCatalog(conn: Connection, tables: readonly TableName[]): Promise<CatalogSnapshot> {
  const out: Record<string, TableInfo> = {};
  const others: Record<string, string> = {};
  for (const table of tables) {
    const rel = await conn.query<{ oid: number; reltuples: number; relkind: string }>(
      `SELECT c.oid, c.reltuples::float8 AS reltuples, c.relkind::text AS relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
      [table.schema, table.name],
    );
    const relRow = rel.rows[0];
    if (!relRow) {
      const other = await conn.query<{ relkind: string }>(
        `SELECT c.relkind::text AS relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
        [table.schema, table.name],
      );
      if (other.rows[0]) others[tableLabel(table)] = other.rows[0].relkind;
      continue;
    }
    const cols = await conn.query<ColumnRow>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
              pg_get_expr(d.adbin, d.adrelid) AS default, a.attidentity AS identity, a.attgenerated AS generated,
              (SELECT array_agg(ic.relname::text ORDER BY ic.relname) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                 WHERE i.indrelid = a.attrelid AND (a.attnum = ANY (i.indkey)
                   OR strpos(pg_get_expr(i.indexprs, i.indrelid), quote_ident(a.attname)) > 0
                   OR strpos(pg_get_expr(i.indpred, i.indrelid), quote_ident(a.attname)) > 0)) AS indexes,
              (SELECT json_agg(json_build_object('name', co.conname, 'type', co.contype) ORDER BY co.conname) FROM pg_constraint co
                 WHERE co.conrelid = a.attrelid AND a.attnum = ANY (co.conkey) AND co.contype <> 'n') AS constraints,
              (SELECT array_agg(co.conname::text ORDER BY co.conname) FROM pg_constraint co
                 WHERE co.confrelid = a.attrelid AND co.contype = 'f' AND a.attnum = ANY (co.confkey)) AS referenced_by
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      [relRow.oid],
    );
    const pk = await conn.query<{ name: string }>(
      `SELECT a.attname AS name FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_attribute a ON a.attnum = k.attnum
        WHERE i.indrelid = $1 AND i.indisprimary AND a.attrelid = i.indrelid ORDER BY k.ord`,
      [relRow.oid],
    );
    const idx = await conn.query<IndexInfo>(
      `SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, i.indisunique AS unique, i.indisprimary AS primary,
              i.indisvalid AS valid, (SELECT co.conname::text FROM pg_constraint co WHERE co.conindid = i.indexrelid AND co.conrelid = i.indrelid LIMIT 1) AS constraint
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = $1 ORDER BY ic.relname`,
      [relRow.oid],
    );
    const cons = await conn.query<ConstraintInfo>(
      `SELECT conname AS name, contype::text AS type, pg_get_constraintdef(oid) AS definition, convalidated AS validated
         FROM pg_constraint WHERE conrelid = $1 AND contype <> 'n' ORDER BY conname`,
      [relRow.oid],
    );
    const refs = await conn.query<{ name: string; schema: string; tname: string; definition: string; validated: boolean; cols: string[] }>(
      `SELECT co.conname AS name, n.nspname AS schema, c.relname AS tname, pg_get_constraintdef(co.oid) AS definition, co.convalidated AS validated,
              (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(co.confkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = co.confrelid AND a.attnum = k.attnum) AS cols
         FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE co.confrelid = $1 AND co.contype = 'f' ORDER BY n.nspname, c.relname, co.conname`,
      [relRow.oid],
    );
    const partitioning = relRow.relkind === 'p' ? await readPartitioning(conn, relRow.oid) : null;
    out[tableLabel(table)] = {
      table,
      ...(partitioning ? { partitioning } : {}),
      indexes: idx.rows,
      tableConstraints: cons.rows,
      referencingForeignKeys: refs.rows.map((r) => ({
        name: r.name,
        table: { schema: r.schema, name: r.tname },
        definition: r.definition,
        validated: r.validated,
        referencedColumns: r.cols,
      })),
      // A partitioned table holds no rows itself: its estimate is the sum of its leaves' (one never analyzed counts 0).
      estimatedRows: Math.max(0, Math.round(partitioning ? await partitionRows(conn, relRow.oid) : relRow.reltuples)),
      primaryKey: pk.rows.map((r) => r.name),
      columns: cols.rows.map((c) => ({
        name: c.name,
        type: c.type,
        notNull: c.not_null,
        default: c.default,
        identity: c.identity,
        generated: c.generated,
        indexes: c.indexes ?? [],
        constraints: c.constraints ?? [],
        referencedBy: c.referenced_by ?? [],
      })),
    };
  }
  return Object.keys(others).length > 0 ? { tables: out, others } : { tables: out };
}

const STRATEGIES: Readonly<Record<string, PartitionKey['strategy']>> = { r: 'range', l: 'list', h: 'hash' };

interface PartitionRow {
  schema: string;
  name: string;
  parent_schema: string;
  parent_name: string;
  depth: number;
  relkind: string;
  bound: string;
  strategy: string | null;
  key: (string | null)[] | null;
  indexes: { name: string; parent: string | null; valid: boolean }[] | null;
}

const KEY_COLUMNS = (table: string) =>
  `(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_partitioned_table pk CROSS JOIN LATERAL unnest(pk.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
     LEFT JOIN pg_attribute a ON a.attrelid = pk.partrelid AND a.attnum = k.attnum WHERE pk.partrelid = ${table})`;

/** The partition tree below a partitioned table, in the order its indexes must be built: parents before children. */
async function readPartitioning(conn: Connection, oid: number): Promise<Partitioning> {
  const top = await conn.query<{ strategy: string; key: (string | null)[]; version: number }>(
    `SELECT pt.partstrat::text AS strategy, ${KEY_COLUMNS('pt.partrelid')} AS key, current_setting('server_version_num')::int AS version
       FROM pg_partitioned_table pt WHERE pt.partrelid = $1`,
    [oid],
  );
  const parts = await conn.query<PartitionRow>(
    `WITH RECURSIVE tree AS (
       SELECT i.inhrelid AS oid, i.inhparent AS parent, 1 AS depth, ARRAY[c.relname::text] AS path
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1
       UNION ALL
       SELECT i.inhrelid, i.inhparent, t.depth + 1, t.path || c.relname::text
         FROM tree t JOIN pg_inherits i ON i.inhparent = t.oid JOIN pg_class c ON c.oid = i.inhrelid)
     SELECT n.nspname AS schema, c.relname AS name, pn.nspname AS parent_schema, p.relname AS parent_name, t.depth, c.relkind::text AS relkind,
            pg_get_expr(c.relpartbound, c.oid) AS bound,
            (SELECT pt.partstrat::text FROM pg_partitioned_table pt WHERE pt.partrelid = c.oid) AS strategy,
            CASE WHEN c.relkind = 'p' THEN ${KEY_COLUMNS('c.oid')} END AS key,
            (SELECT json_agg(json_build_object('name', ic.relname, 'parent', pi.relname, 'valid', x.indisvalid) ORDER BY ic.relname)
               FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
               LEFT JOIN pg_inherits ii ON ii.inhrelid = x.indexrelid LEFT JOIN pg_class pi ON pi.oid = ii.inhparent
              WHERE x.indrelid = c.oid) AS indexes
       FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_class p ON p.oid = t.parent JOIN pg_namespace pn ON pn.oid = p.relnamespace
      ORDER BY t.path`,
    [oid],
  );
  const row = top.rows[0]!;
  return {
    strategy: STRATEGIES[row.strategy]!,
    columns: row.key,
    serverVersion: row.version,
    partitions: parts.rows.map((r) => ({
      table: { schema: r.schema, name: r.name },
      parent: { schema: r.parent_schema, name: r.parent_name },
      depth: r.depth,
      kind: r.relkind === 'p' ? 'partitioned' : r.relkind === 'f' ? 'foreign' : 'table',
      bound: r.bound,
      ...(r.relkind === 'p' && r.strategy ? { key: { strategy: STRATEGIES[r.strategy]!, columns: r.key ?? [] } } : {}),
      indexes: (r.indexes ?? []).map((x) => ({ name: x.name, parentIndex: x.parent, valid: x.valid })),
    })),
  };
}

async function partitionRows(conn: Connection, oid: number): Promise<number> {
  const r = await conn.query<{ n: number | null }>(
    `SELECT sum(greatest(c.reltuples, 0))::float8 AS n FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf`,
    [oid],
  );
  return r.rows[0]?.n ?? 0;
}

import type { Statement } from '../db/db.js';
import type { BackfillJoin, BackfillSpec } from './specs.js';
import { doBlock } from './column-attachments.js';
import { ident, literal, objectName, qualified, tableLabel, type TableName, dollarQuote } from './identifiers.js';

/**
 * Column archives: before a contract drops a column, its values are copied (key + value) into a table in the state
 * schema, so `down` can put the column back with its data, until `umzug purge` deletes archives older than a
 * retention. The registry table `<state>.column_archives` says which archive belongs to which column and when it
 * was made, and keeps what the catalog snapshot lacks: the column's comment, privileges and collation.
 */
export const REGISTRY = 'column_archives';

export interface ArchiveSpec {
  /** The archive table, in the state schema. */
  readonly archive: TableName;
  readonly table: TableName;
  /** Key columns with their types (format_type), in key order: archived as _zd_k0, _zd_k1, … */
  readonly keys: readonly { readonly name: string; readonly type: string }[];
  /** Archived columns with their types: archived as _zd_v0, _zd_v1, … (none: only the keys, e.g. the rows that were NULL). */
  readonly values: readonly { readonly name: string; readonly type: string }[];
  /** What the archive is for, shown by purge: 'drop-column', 'change-column-type', … */
  readonly kind: string;
}

export function archiveName(stateSchema: string, kind: string, t: TableName, ...columns: string[]): TableName {
  return { schema: stateSchema, name: objectName(`zd_arch_${kind}`, t.schema, t.name, ...columns) };
}

const keyCol = (i: number) => `_zd_k${i}`;
export const valueCol = (i: number): string => `_zd_v${i}`;

export function registryTable(stateSchema: string): string {
  return qualified({ schema: stateSchema, name: REGISTRY });
}

function ensureRegistry(stateSchema: string): Statement {
  return {
    text: `CREATE TABLE IF NOT EXISTS ${registryTable(stateSchema)} (
  archive text PRIMARY KEY, source_table text NOT NULL, source_columns text[] NOT NULL, kind text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), rows bigint, attributes jsonb NOT NULL DEFAULT '{}')`,
  };
}

function createArchiveTable(a: ArchiveSpec, ifNotExists: boolean): Statement {
  const cols = [...a.keys.map((k, i) => `${keyCol(i)} ${k.type}`), ...a.values.map((v, i) => `${valueCol(i)} ${v.type}`)];
  return {
    text: `CREATE TABLE ${ifNotExists ? 'IF NOT EXISTS ' : ''}${qualified(a.archive)} (${cols.join(', ')}, PRIMARY KEY (${a.keys.map((_k, i) => keyCol(i)).join(', ')}))`,
  };
}

/**
 * A contract fills a column archive through the backfill engine (keyset batches, resumable, paced, lag-aware), not
 * with one INSERT … SELECT of the whole table (seconds per million rows under traffic: a WAL burst, replica lag and
 * the vacuum horizon held for the whole copy). Writers go on meanwhile, and undo needs each row's value at the moment
 * of the drop, so while the archive fills, an AFTER row trigger writes every change of the archived columns (and
 * every insert and delete) into it. The batches insert with ON CONFLICT DO NOTHING and lock their source rows FOR
 * SHARE: a row the trigger already wrote keeps the trigger's (newer) value, and a row a batch copied cannot change
 * before the batch commits, after which its writer's trigger overwrites the copy. The step that drops the column
 * locks the table first and drops the trigger in the same transaction (finishArchiveFill): from the lock on nothing
 * writes the column, so the archive holds exactly what the column held when it was dropped. The alternative, a last
 * pass over rows changed since the fill started, would need a change marker on every row and a scan under the lock.
 *
 * startArchiveFill: a fresh, empty archive and its trigger (re-running it after a failed attempt starts over).
 */
export function startArchiveFill(a: ArchiveSpec, stateSchema: string): Statement[] {
  const fn = `${ident(a.archive.schema)}.${ident(fillTrigger(a))}`;
  const keyCols = a.keys.map((_k, i) => keyCol(i));
  const valCols = a.values.map((_v, i) => valueCol(i));
  const row = (prefix: string, cols: readonly string[]) => `ROW(${cols.map((c) => `${prefix}.${c}`).join(', ')})`;
  const oldKey = row('OLD', a.keys.map((k) => ident(k.name)));
  const newKey = row('NEW', a.keys.map((k) => ident(k.name)));
  const deleteOld = `DELETE FROM ${qualified(a.archive)} WHERE ROW(${keyCols.join(', ')}) = ${oldKey};`;
  const upsert = `INSERT INTO ${qualified(a.archive)} (${[...keyCols, ...valCols].join(', ')})
      VALUES (${[...a.keys.map((k) => `NEW.${ident(k.name)}`), ...a.values.map((v) => `NEW.${ident(v.name)}`)].join(', ')})
      ON CONFLICT (${keyCols.join(', ')}) DO ${valCols.length ? `UPDATE SET ${valCols.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}` : 'NOTHING'};`;
  // An UPDATE that changes neither the key nor an archived column leaves the archive as it is: a row copied already
  // holds that value, one not copied yet will be copied with it.
  const unchanged = valCols.length ? `${row('OLD', a.values.map((v) => ident(v.name)))} IS NOT DISTINCT FROM ${row('NEW', a.values.map((v) => ident(v.name)))}` : 'true';
  const body = `
BEGIN
  IF TG_OP = 'DELETE' THEN
    ${deleteOld}
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    IF ${oldKey} IS NOT DISTINCT FROM ${newKey} AND ${unchanged} THEN RETURN NULL; END IF;
    IF ${oldKey} IS DISTINCT FROM ${newKey} THEN ${deleteOld} END IF;
  END IF;
  ${upsert}
  RETURN NULL;
END`;
  return [
    ensureRegistry(stateSchema),
    { text: `DROP TRIGGER IF EXISTS ${ident(fillTrigger(a))} ON ${qualified(a.table)}` },
    { text: `DROP TABLE IF EXISTS ${qualified(a.archive)}` },
    createArchiveTable(a, false),
    { text: `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS ${dollarQuote(body)}` },
    { text: `CREATE TRIGGER ${ident(fillTrigger(a))} AFTER INSERT OR UPDATE OR DELETE ON ${qualified(a.table)} FOR EACH ROW EXECUTE FUNCTION ${fn}()` },
  ];
}

function fillTrigger(a: ArchiveSpec): string {
  return objectName('zd_archfill', a.archive.name);
}

/**
 * An archive of keys that a backfill fills batch by batch with the rows it writes (BackfillSpec.archiveKeys):
 * created empty, and kept as it is when the step runs again on a resume.
 */
export function createKeyArchive(a: ArchiveSpec, stateSchema: string): Statement[] {
  return [ensureRegistry(stateSchema), createArchiveTable(a, true)];
}

/** Where a backfill records the keys of the rows it writes, for createKeyArchive's archive. */
export function archiveKeysInto(a: ArchiveSpec): NonNullable<BackfillSpec['archiveKeys']> {
  return { into: a.archive, columns: a.keys.map((_k, i) => keyCol(i)) };
}

/** The backfill that copies the rows present when the fill started into the archive, batch by batch on the key. */
export function archiveFill(a: ArchiveSpec): BackfillSpec {
  return {
    table: a.table,
    set: [],
    copy: {
      into: a.archive,
      key: a.keys.map((k) => k.name),
      intoKey: a.keys.map((_k, i) => keyCol(i)),
      columns: a.values.map((v, i) => ({ column: valueCol(i), expression: `_zd_s.${ident(v.name)}` })),
      mode: 'insert',
    },
  };
}

/**
 * Fresh statistics for the archive, so the registry's row count can come from the catalog: ANALYZE reads a sample
 * of fixed size, where count(*) would read the whole archive.
 */
export function analyzeArchive(a: ArchiveSpec): Statement {
  return { text: `ANALYZE ${qualified(a.archive)}` };
}

/**
 * Ends the fill: drops the trigger and registers the archive with each column's comment, privileges and collation,
 * read from the catalog now. Runs in the transaction that drops the column, after it locked the table (see
 * startArchiveFill); `rows` is the estimate analyzeArchive left.
 */
export function finishArchiveFill(a: ArchiveSpec, stateSchema: string): Statement[] {
  const t = `${literal(qualified(a.table))}::regclass`;
  const attrs = a.values.map(
    (v) => `${literal(v.name)}, (SELECT jsonb_build_object('comment', col_description(at.attrelid, at.attnum), 'acl', at.attacl::text[],
        'collation', CASE WHEN at.attcollation <> 0 AND at.attcollation <> ty.typcollation THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END)
      FROM pg_attribute at JOIN pg_type ty ON ty.oid = at.atttypid LEFT JOIN pg_collation co ON co.oid = at.attcollation
      LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE at.attrelid = ${t} AND at.attname = ${literal(v.name)})`,
  );
  return [
    { text: `DROP TRIGGER IF EXISTS ${ident(fillTrigger(a))} ON ${qualified(a.table)}` },
    { text: `DROP FUNCTION IF EXISTS ${ident(a.archive.schema)}.${ident(fillTrigger(a))}()` },
    {
      text: `INSERT INTO ${registryTable(stateSchema)} (archive, source_table, source_columns, kind, rows, attributes)
SELECT $1, $2, $3::text[], $4, (SELECT CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END FROM pg_class c WHERE c.oid = ${literal(qualified(a.archive))}::regclass),
       jsonb_build_object(${attrs.length ? attrs.join(', ') : ''})
ON CONFLICT (archive) DO UPDATE SET created_at = now(), rows = EXCLUDED.rows, attributes = EXCLUDED.attributes, source_columns = EXCLUDED.source_columns`,
      values: [a.archive.name, tableLabel(a.table), a.values.map((v) => v.name), a.kind],
    },
  ];
}

/**
 * The rows of an archived table as the statistics count them: a partitioned table's are its leaves' (its own
 * reltuples is -1 until the table itself is analyzed), found through pg_inherits at every level (PostgreSQL 10+,
 * pg_partition_tree needs 12). NULL when no leaf has statistics.
 */
export function archivedRowsSql(regclass: string): string {
  return `(WITH RECURSIVE _zd_tree(oid) AS (SELECT ${regclass}::oid UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN _zd_tree t ON i.inhparent = t.oid)
        SELECT CASE WHEN bool_or(c.reltuples >= 0) THEN sum(greatest(c.reltuples, 0))::bigint END
          FROM _zd_tree t JOIN pg_class c ON c.oid = t.oid WHERE c.relkind <> 'p')`;
}

/**
 * Undo of a contract whose fill never finished (down while the contract failed half-way): the trigger and the
 * partial archive go; a registered (finished) archive is left alone.
 */
export function abandonArchiveFill(a: ArchiveSpec, stateSchema: string): Statement[] {
  return [
    { text: `DROP TRIGGER IF EXISTS ${ident(fillTrigger(a))} ON ${qualified(a.table)}` },
    { text: `DROP FUNCTION IF EXISTS ${ident(a.archive.schema)}.${ident(fillTrigger(a))}()` },
    // Nested: PL/pgSQL plans a condition whole, so a query of the registry must not be reached before the registry
    // is known to exist (it is created by the first archive ever registered).
    doBlock(`
BEGIN
  IF to_regclass(${literal(qualified(a.archive))}) IS NOT NULL THEN
    IF to_regclass(${literal(registryTable(stateSchema))}) IS NULL THEN
      DROP TABLE ${qualified(a.archive)};
    ELSIF NOT EXISTS (SELECT 1 FROM ${registryTable(stateSchema)} WHERE archive = ${literal(a.archive.name)}) THEN
      DROP TABLE ${qualified(a.archive)};
    END IF;
  END IF;
END`),
  ];
}

/** The archive joined to the rows a restore walks (as `_zd_a`), for archivedValueJoined and archivedWhereJoined. */
export function archiveJoin(a: ArchiveSpec): BackfillJoin {
  return { table: a.archive, on: a.keys.map((k, i) => ({ column: k.name, joined: keyCol(i) })) };
}

/** The archived value of value column i, in a backfill with archiveJoin (NULL when the row is not archived). */
export function archivedValueJoined(i: number): string {
  return `_zd_a.${valueCol(i)}`;
}

/** Whether the row is archived and `condition` (SQL over `_zd_a` and the row) holds, in a backfill with archiveJoin. */
export function archivedWhereJoined(condition = 'true'): string {
  return `(_zd_a.${keyCol(0)} IS NOT NULL AND (${condition}))`;
}

/**
 * An empty archive where purge removed it: the restore then falls back to the conversion (type change, rename,
 * derived column), which is what a row changed since the contract gets anyway.
 */
export function ensureArchive(a: ArchiveSpec, stateSchema: string): Statement[] {
  return [ensureRegistry(stateSchema), createArchiveTable(a, true)];
}

/** Refuses (rolling back its step) when the archive was purged: a restored column would hold no data. */
export function requireArchive(a: ArchiveSpec, stateSchema: string, what: string): Statement {
  return doBlock(`
BEGIN
  IF to_regclass(${literal(qualified(a.archive))}) IS NULL THEN
    RAISE EXCEPTION '%: the archive % of %.% is gone (purged?), so down would bring the column back empty. Nothing was changed. If that is acceptable, add the column back with sql() and mark this migration reverted.',
      ${literal(what)}, ${literal(tableLabel(a.archive))}, ${literal(tableLabel(a.table))}, ${literal(a.values.map((v) => v.name).join(', '))};
  END IF;
END`);
}

export function dropArchive(a: ArchiveSpec, stateSchema: string): Statement[] {
  return [{ text: `DROP TABLE IF EXISTS ${qualified(a.archive)}` }, forgetArchive(stateSchema, a.archive.name)];
}

/** `(k0, k1) = (a._zd_k0, a._zd_k1)`: the archive row of the current row (keys unqualified, as the backfill writes them). */
function keyMatch(a: ArchiveSpec): string {
  return a.keys.map((k, i) => `_zd_a.${keyCol(i)} = ${ident(k.name)}`).join(' AND ');
}

/** The archived value of value column i for the current row (NULL when the row is not archived). */
export function archivedValue(a: ArchiveSpec, i: number): string {
  return `(SELECT _zd_a.${valueCol(i)} FROM ${qualified(a.archive)} AS _zd_a WHERE ${keyMatch(a)})`;
}

/**
 * Whether the current row is archived and `condition` (SQL over the archive row `_zd_a` and the current row) holds:
 * a row unchanged since the contract gets its archived value back exactly, even where the conversion back is lossy.
 */
export function archivedWhere(a: ArchiveSpec, condition = 'true'): string {
  return `EXISTS (SELECT 1 FROM ${qualified(a.archive)} AS _zd_a WHERE ${keyMatch(a)} AND (${condition}))`;
}

/** Adds a column back as it was archived: its collation, comment and privileges come from the registry. */
export function restoreColumnLike(a: ArchiveSpec, stateSchema: string, i: number): Statement {
  const v = a.values[i]!;
  const t = qualified(a.table);
  return doBlock(`
DECLARE _zd_attr jsonb; _zd_g record;
BEGIN
  IF to_regclass(${literal(registryTable(stateSchema))}) IS NOT NULL THEN
    SELECT attributes -> ${literal(v.name)} INTO _zd_attr FROM ${registryTable(stateSchema)} WHERE archive = ${literal(a.archive.name)};
  END IF;
  EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s%s', ${literal(t)}, ${literal(v.name)}, ${literal(v.type)}, coalesce(' COLLATE ' || (_zd_attr ->> 'collation'), ''));
  IF _zd_attr ->> 'comment' IS NOT NULL THEN
    EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', ${literal(t)}, ${literal(v.name)}, _zd_attr ->> 'comment');
  END IF;
  FOR _zd_g IN
    SELECT x.privilege_type, x.is_grantable, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee
      FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(_zd_attr -> 'acl') = 'array' THEN _zd_attr -> 'acl' ELSE '[]' END) AS e(acl)
      CROSS JOIN LATERAL aclexplode(ARRAY[e.acl::aclitem]) x LEFT JOIN pg_roles r ON r.oid = x.grantee
  LOOP
    EXECUTE format('GRANT %s (%I) ON %s TO %s%s', _zd_g.privilege_type, ${literal(v.name)}, ${literal(t)}, _zd_g.grantee,
                   CASE WHEN _zd_g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
  END LOOP;
END`);
}

/** Registry kinds of whole-table archives (the others archive columns: keys + values). */
export const TABLE_ARCHIVE_KINDS = ['drop-table', 'merge-tables', 'create-table-undone'] as const;
export type TableArchiveKind = (typeof TABLE_ARCHIVE_KINDS)[number];

export function isTableArchiveKind(kind: string): kind is TableArchiveKind {
  return (TABLE_ARCHIVE_KINDS as readonly string[]).includes(kind);
}

/**
 * SQL (literals, no parameters: it also runs inside DO blocks) that registers a whole table moved into the state
 * schema — dropTable's contract, an undone createTable that held rows — so `umzug purge` finds it like a column
 * archive. `rows` is the planner's estimate: counting would scan the table while the move holds its ACCESS EXCLUSIVE
 * lock.
 */
export function registerTableArchiveSql(stateSchema: string, archive: string | { readonly sql: string }, source: TableName, kind: TableArchiveKind): string {
  const registry = registryTable(stateSchema);
  // A name known when the plan is made, or a PL/pgSQL expression giving the one chosen at run time.
  const name = typeof archive === 'string' ? literal(archive) : archive.sql;
  return `${ensureRegistry(stateSchema).text};
INSERT INTO ${registry} (archive, source_table, source_columns, kind, rows)
SELECT ${name}, ${literal(tableLabel(source))}, '{}'::text[], ${literal(kind)},
       ${archivedRowsSql(`to_regclass(format('%I.%I', ${literal(stateSchema)}, ${name}))`)}
ON CONFLICT (archive) DO UPDATE SET created_at = now(), rows = EXCLUDED.rows, kind = EXCLUDED.kind, source_table = EXCLUDED.source_table`;
}

/** Refuses (rolling back its step) to restore a table whose archive was purged. */
export function requireTableArchive(stateSchema: string, archive: string, source: TableName, what: string): Statement {
  return doBlock(`
BEGIN
  IF to_regclass(${literal(qualified({ schema: stateSchema, name: archive }))}) IS NULL THEN
    RAISE EXCEPTION '%: the archive %.% of table % is gone (purged?), so down cannot bring the table back. Nothing was changed. Recreate the table with createTable() or sql() in a new migration if you need it.',
      ${literal(what)}, ${literal(stateSchema)}, ${literal(archive)}, ${literal(tableLabel(source))};
  END IF;
END`);
}

/** Forgets an archive (its registry row) that was dropped or moved back, if the registry exists. */
export function forgetArchive(stateSchema: string, archive: string): Statement {
  return doBlock(
    `BEGIN IF to_regclass(${literal(registryTable(stateSchema))}) IS NOT NULL THEN DELETE FROM ${registryTable(stateSchema)} WHERE archive = ${literal(archive)}; END IF; END`,
  );
}

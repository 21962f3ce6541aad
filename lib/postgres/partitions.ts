import type { Statement } from '../db/db.js';
import type { PartitionInfo, Partitioning } from './catalog.js';
import { dollarQuote, ident, literal, objectName, qualified, tableLabel, type TableName } from './identifiers.js';
import { join, tokenize } from './sql-tokens.js';

/**
 * The statements that build and drop an index on a partitioned table. PostgreSQL cannot build one CONCURRENTLY on
 * the partitioned table itself, and a plain CREATE INDEX there holds a SHARE lock on every partition (no writes)
 * until the last one is built. The safe route: an index ON ONLY the partitioned table (catalog only; it stays
 * INVALID), each partition's own index built CONCURRENTLY, then attached with ALTER INDEX … ATTACH PARTITION; the
 * parent index becomes valid by itself when its last partition is attached (a partitioned partition's own ON ONLY
 * index likewise, which then counts for its parent).
 */
const st = (text: string): Statement => ({ text });

/** An index definition split into what a partition's index repeats: UNIQUE and the part from `USING` on. */
export interface IndexShape {
  readonly unique: boolean;
  /** ` USING btree (a, b) INCLUDE (c) WHERE (…)`: column names only, so it reads the same on every partition. */
  readonly body: string;
}

/**
 * The shape of a pg_get_indexdef() definition (`CREATE UNIQUE INDEX n ON ONLY s.t USING btree (a) WHERE …`). The
 * printer writes `USING` right after the table, and quotes a name or table that reads as that keyword.
 */
export function indexShape(definition: string): IndexShape {
  const tokens = tokenize(definition);
  const on = tokens.findIndex((t) => t.kind === 'word' && t.text === 'ON');
  const using = tokens.findIndex((t, i) => i > on && t.kind === 'word' && t.text === 'USING');
  if (on < 0 || using < 0) throw new Error(`unexpected index definition from pg_get_indexdef: ${definition}`);
  return { unique: /^CREATE UNIQUE INDEX /.test(definition), body: ` ${join(tokens.slice(using))}` };
}

/** The `USING am (…) INCLUDE (…) WHERE (…)` part of an index the author described. */
export function specShape(spec: { readonly unique: boolean; readonly columns: readonly string[]; readonly using?: string; readonly include?: readonly string[]; readonly where?: string }): IndexShape {
  const using = spec.using ? ` USING ${spec.using}` : '';
  const include = spec.include && spec.include.length > 0 ? ` INCLUDE (${spec.include.map(ident).join(', ')})` : '';
  const where = spec.where ? ` WHERE (${spec.where})` : '';
  return { unique: spec.unique, body: `${using} (${spec.columns.map(ident).join(', ')})${include}${where}` };
}

/**
 * The name of the index a partition gets for the partitioned table's index `index`. Hashed from both names: the
 * readable `<partition>_<index>` can be a name PostgreSQL itself already gave another index of that partition
 * (`<partition>_<column>_idx`), and IF NOT EXISTS would then take that one for ours.
 */
export function partitionIndexName(index: string, partition: TableName): string {
  return objectName('zd_pi', partition.name, index, partition.schema);
}

/** Catalog only: the parent's index, INVALID until every partition has one attached. A brief SHARE lock on the table alone. */
export function createIndexOnOnly(t: TableName, name: string, shape: IndexShape): Statement {
  return st(`CREATE ${shape.unique ? 'UNIQUE ' : ''}INDEX IF NOT EXISTS ${ident(name)} ON ONLY ${qualified(t)}${shape.body}`);
}

/** A partition's own index, built while writes go on; the executor drops an INVALID leftover of a killed build first. */
export function createPartitionIndexConcurrently(partition: TableName, name: string, shape: IndexShape): Statement {
  return st(`CREATE ${shape.unique ? 'UNIQUE ' : ''}INDEX CONCURRENTLY IF NOT EXISTS ${ident(name)} ON ${qualified(partition)}${shape.body}`);
}

/**
 * Catalog only: SHARE UPDATE EXCLUSIVE on the parent index, a brief ACCESS EXCLUSIVE on the partition's index.
 * Attaching an index that is attached already does nothing, so a re-run is harmless.
 */
export function attachPartitionIndex(parentIndex: TableName, partitionIndex: TableName): Statement {
  return st(`ALTER INDEX ${qualified(parentIndex)} ATTACH PARTITION ${qualified(partitionIndex)}`);
}

/** A partitioned index cannot be dropped CONCURRENTLY: this drops it and every index attached to it, catalog only. */
export function dropPartitionedIndex(index: TableName): Statement {
  return st(`DROP INDEX IF EXISTS ${qualified(index)}`);
}

export function dropConstraintIfExists(t: TableName, name: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} DROP CONSTRAINT IF EXISTS ${ident(name)}`);
}

/**
 * Fails (rolling back its step) unless `index` on `table` is valid, naming the partitions that have no index attached
 * to it. It runs after the step's catch-up (lib/engine/partition-catch-up.ts), so what is left is a partition that can
 * have no index (a foreign table attached since) or one attached in the moment between the two.
 */
export function requireIndexValid(table: TableName, index: TableName): Statement {
  const idx = `${literal(qualified(index))}::regclass`;
  return st(`DO ${dollarQuote(`
DECLARE _zd_missing text;
BEGIN
  IF (SELECT indisvalid FROM pg_index WHERE indexrelid = ${idx}) THEN RETURN; END IF;
  WITH RECURSIVE tree AS (
    SELECT i.inhrelid AS rel, ${idx}::oid AS want FROM pg_inherits i WHERE i.inhparent = ${literal(qualified(table))}::regclass
    UNION ALL
    SELECT i.inhrelid, x.indexrelid FROM tree t JOIN pg_inherits ii ON ii.inhparent = t.want
      JOIN pg_index x ON x.indexrelid = ii.inhrelid AND x.indrelid = t.rel JOIN pg_inherits i ON i.inhparent = t.rel)
  SELECT string_agg(t.rel::regclass::text, ', ' ORDER BY t.rel::regclass::text) INTO _zd_missing FROM tree t
   WHERE NOT EXISTS (SELECT 1 FROM pg_inherits ii JOIN pg_index x ON x.indexrelid = ii.inhrelid
                      WHERE ii.inhparent = t.want AND x.indrelid = t.rel AND x.indisvalid);
  RAISE EXCEPTION 'the index % of % is not valid: the partitions % have no valid index attached to their parent''s, after this step built and attached what partitions created or attached since lacked (a foreign table, which can have none, or one attached while this step ran). The indexes built so far stay; run again (it catches up with the partitions as they are then), detach a foreign partition, or run down to remove the change.',
    ${literal(qualified(index))}, ${literal(tableLabel(table))}, coalesce(_zd_missing, '(none found now)');
END`)}`);
}

/**
 * A UNIQUE constraint on a partitioned table, for PostgreSQL up to 18 at least: ADD CONSTRAINT … USING INDEX is
 * refused on partitioned tables, but ADD CONSTRAINT … UNIQUE (…) adopts, on each partition, an unattached matching
 * unique index that backs a constraint of its own, and builds only where it finds none. Every partition's was built
 * before (CONCURRENTLY, then USING INDEX; one created or attached since the change read the catalog by the step's
 * catch-up, under partitionIndexName(routeTop, partition)); this step first makes sure of it, under a lock that
 * keeps partitions from being attached or created meanwhile, so the ALTER is catalog work and never a build under a
 * write-blocking lock.
 */
export function addUniqueConstraintOnPartitioned(
  t: TableName,
  name: string,
  columns: readonly string[],
  include: readonly string[] | undefined,
  expected: readonly { readonly partition: TableName; readonly constraint: string }[],
  routeTop: string,
): Statement[] {
  const pairs = expected.length > 0 ? expected.map((e) => `(${literal(qualified(e.partition))}, ${literal(e.constraint)})`).join(', ') : `(NULL, NULL)`;
  return [
    st(`LOCK TABLE ONLY ${qualified(t)} IN SHARE UPDATE EXCLUSIVE MODE`),
    st(`DO ${dollarQuote(`
DECLARE _zd_missing text[] := '{}'; _zd_r record; ${NAME_VARS}
BEGIN
  FOR _zd_r IN
    SELECT i.inhrelid AS rel, n.nspname::text AS t_schema, c.relname::text AS t_name, e.con
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN (VALUES ${pairs}) AS e(rel, con) ON to_regclass(e.rel) = i.inhrelid
     WHERE i.inhparent = ${literal(qualified(t))}::regclass
  LOOP
    _zd_name := _zd_r.con;
    IF _zd_name IS NULL THEN${partitionIndexNameSql(literal(routeTop), '_zd_r.t_schema', '_zd_r.t_name')}
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conrelid = _zd_r.rel AND co.conname = _zd_name AND co.contype = 'u' AND co.conparentid = 0) THEN
      _zd_missing := _zd_missing || _zd_r.rel::regclass::text;
    END IF;
  END LOOP;
  IF cardinality(_zd_missing) > 0 THEN
    RAISE EXCEPTION 'cannot add the UNIQUE constraint % to % without building indexes under a lock that stops writes: the partitions % have no unique constraint of their own to adopt (created or attached after this step caught up with the partitions). Nothing was changed by this step; the partitions done so far keep theirs. Run up again: it builds theirs concurrently first.',
      ${literal(name)}, ${literal(tableLabel(t))}, array_to_string(_zd_missing, ', ');
  END IF;
END`)}`),
    st(
      `ALTER TABLE ${qualified(t)} ADD CONSTRAINT ${ident(name)} UNIQUE (${columns.map(ident).join(', ')})${include && include.length > 0 ? ` INCLUDE (${include.map(ident).join(', ')})` : ''}`,
    ),
  ];
}

/** The partitions directly below `parent` in the snapshot, in its order. */
export function partitionsOf(p: Partitioning, parent: TableName): PartitionInfo[] {
  return p.partitions.filter((x) => x.parent.schema === parent.schema && x.parent.name === parent.name);
}

/**
 * Why an index cannot be built on the partitioned table by the safe route, or null. Unique: PostgreSQL enforces it
 * partition by partition, so the key must hold every column of every level's partition key (and none may be an
 * expression). Foreign partitions hold no index, so a parent index built ON ONLY would never become valid.
 */
export function partitionedIndexProblem(t: TableName, p: Partitioning, index: { readonly unique: boolean; readonly columns: readonly string[] | null }): string | null {
  const foreign = p.partitions.filter((x) => x.kind === 'foreign').map((x) => tableLabel(x.table));
  if (foreign.length > 0) {
    return (
      `the partition${foreign.length > 1 ? 's' : ''} ${foreign.join(', ')} ${foreign.length > 1 ? 'are foreign tables' : 'is a foreign table'}, which cannot have an index: ` +
      'an index built partition by partition (ON ONLY, then ATTACH) would never become valid, and the one-statement CREATE INDEX that skips foreign partitions holds a lock that stops writes to every partition while it builds'
    );
  }
  if (!index.unique) return null;
  const levels: { readonly table: TableName; readonly columns: readonly (string | null)[] }[] = [
    { table: t, columns: p.columns },
    ...p.partitions.flatMap((x) => (x.key ? [{ table: x.table, columns: x.key.columns }] : [])),
  ];
  for (const level of levels) {
    const where = level.table === t ? tableLabel(t) : `its partition ${tableLabel(level.table)}`;
    if (level.columns.some((c) => c === null)) {
      return `${where} is partitioned by an expression, and PostgreSQL enforces a unique index on a partitioned table only when the partition key is plain columns that the index holds`;
    }
    if (index.columns === null) {
      return `its key cannot be compared with the partition key of ${where} (${level.columns.join(', ')})`;
    }
    const missing = level.columns.filter((c) => !index.columns!.includes(c!));
    if (missing.length > 0) {
      return (
        `${where} is partitioned by (${level.columns.join(', ')}), and a unique index on a partitioned table must hold every partition key column ` +
        `(PostgreSQL checks uniqueness within each partition only); ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not among (${index.columns.join(', ')})`
      );
    }
  }
  return null;
}

/**
 * ACCESS EXCLUSIVE on the table and, recursively, on every partition below it, parents before children (the order
 * DML takes them in): while it is held no partition can be created, attached or detached at any level.
 */
export function lockPartitionTree(t: TableName): Statement {
  return st(`LOCK TABLE ${qualified(t)} IN ACCESS EXCLUSIVE MODE`);
}

/**
 * Fails (rolling back its step) when a partition the change read (`expected`) is no longer below `t` at any level:
 * a step that moves the partitions it read by name would otherwise move a table detached since (someone else's now)
 * or trip on one dropped since. One created or attached since is no reason to fail: archiveLatePartitions moves it.
 * Run under lockPartitionTree(), so the tree cannot change after the check.
 */
export function requirePartitionsStillThere(t: TableName, expected: readonly TableName[], what: string): Statement {
  const read = expected.length > 0 ? `VALUES ${expected.map((p) => `(${literal(p.schema)}, ${literal(p.name)})`).join(', ')}` : `SELECT NULL::text, NULL::text WHERE false`;
  return st(`DO ${dollarQuote(`
DECLARE _zd_gone text;
BEGIN
  WITH RECURSIVE tree AS (
    SELECT i.inhrelid AS rel FROM pg_inherits i WHERE i.inhparent = ${literal(qualified(t))}::regclass
    UNION ALL
    SELECT i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.rel),
  now AS (SELECT n.nspname::text AS s, c.relname::text AS r FROM tree t JOIN pg_class c ON c.oid = t.rel JOIN pg_namespace n ON n.oid = c.relnamespace),
  read (s, r) AS (${read})
  SELECT string_agg(x.s || '.' || x.r, ', ' ORDER BY x.s, x.r) INTO _zd_gone FROM (SELECT * FROM read EXCEPT SELECT * FROM now) x;
  IF _zd_gone IS NOT NULL THEN
    RAISE EXCEPTION '%: the partitions % of % that this change read are no longer below it (detached or dropped since), so moving the partitions it read would move a table that is no longer this one''s. Nothing was changed by this step. Attach them again, or run down and up again (the change reads the partitions anew).',
      ${literal(what)}, _zd_gone, ${literal(tableLabel(t))};
  END IF;
END`)}`);
}

/**
 * Run after the partitions the change read were moved into the state schema with the table (renamed to `archive`, same
 * transaction, under lockPartitionTree()): every partition still below it outside the state schema, at any level, was
 * created or attached since the change read the catalog (pg_partman's premake between expand and contract) and goes
 * the same way, under objectName('zd_dropped', schema, name), so the archive holds all of the table's rows and no
 * partition is left behind to be written. Each one's place is recorded in the registry row of the archive
 * (`attributes.late_partitions`), which is how restoreLatePartitions knows where it came from. Each late leaf is
 * analyzed first, under the lock the step holds anyway (a sample, not a scan): a new partition is often not analyzed
 * yet (reltuples -1, counted as 0) or was analyzed while it filled, and the registry's row estimate, taken again
 * after, is then what `umzug purge` reports for the whole table.
 */
export function archiveLatePartitions(archive: TableName, registry: string, rowsSql: (regclass: string) => string): Statement {
  const arch = `${literal(qualified(archive))}::regclass`;
  return st(`DO ${dollarQuote(`
DECLARE _zd_r record; _zd_moved jsonb := '[]'; _zd_kind text; ${NAME_VARS}
BEGIN
  FOR _zd_r IN
    SELECT n.nspname::text AS t_schema, c.relname::text AS t_name, c.relkind::text AS relkind
      FROM pg_partition_tree(${arch}) p JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE p.level > 0 AND n.nspname <> ${literal(archive.schema)} ORDER BY p.level, n.nspname, c.relname
  LOOP${objectNameSql('zd_dropped', ['_zd_r.t_schema', '_zd_r.t_name'])}
    _zd_kind := CASE WHEN _zd_r.relkind = 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END;
    IF _zd_r.relkind = 'r' THEN
      EXECUTE format('ANALYZE %I.%I', _zd_r.t_schema, _zd_r.t_name);
    END IF;
    EXECUTE format('ALTER %s %I.%I RENAME TO %I', _zd_kind, _zd_r.t_schema, _zd_r.t_name, _zd_name);
    EXECUTE format('ALTER %s %I.%I SET SCHEMA %I', _zd_kind, _zd_r.t_schema, _zd_name, ${literal(archive.schema)});
    _zd_moved := _zd_moved || jsonb_build_object('archive', _zd_name, 'schema', _zd_r.t_schema, 'name', _zd_r.t_name);
  END LOOP;
  IF jsonb_array_length(_zd_moved) > 0 THEN
    UPDATE ${registry} SET attributes = attributes || jsonb_build_object('late_partitions', _zd_moved), rows = ${rowsSql(arch)}
     WHERE archive = ${literal(archive.name)};
  END IF;
END`)}`);
}

/**
 * The undo of archiveLatePartitions, run once the table is back as `t` and before its registry row is forgotten:
 * every partition below it that the archive step recorded as created or attached since goes back to its schema and
 * name. The partitions the change read are moved back by the plan's own statements.
 */
export function restoreLatePartitions(t: TableName, stateSchema: string, registry: string, archive: string): Statement {
  return st(`DO ${dollarQuote(`
DECLARE _zd_recorded jsonb; _zd_r record;
BEGIN
  IF to_regclass(${literal(registry)}) IS NULL THEN RETURN; END IF;
  SELECT attributes -> 'late_partitions' INTO _zd_recorded FROM ${registry} WHERE archive = ${literal(archive)};
  IF _zd_recorded IS NULL THEN RETURN; END IF;
  FOR _zd_r IN
    SELECT c.relname::text AS a_name, c.relkind::text AS relkind, e ->> 'schema' AS o_schema, e ->> 'name' AS o_name
      FROM pg_partition_tree(${literal(qualified(t))}::regclass) p JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN jsonb_array_elements(_zd_recorded) e ON e ->> 'archive' = c.relname
     WHERE p.level > 0 AND n.nspname = ${literal(stateSchema)}
  LOOP
    EXECUTE format('ALTER %s %I.%I SET SCHEMA %I', CASE WHEN _zd_r.relkind = 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, ${literal(stateSchema)}, _zd_r.a_name, _zd_r.o_schema);
    EXECUTE format('ALTER %s %I.%I RENAME TO %I', CASE WHEN _zd_r.relkind = 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, _zd_r.o_schema, _zd_r.a_name, _zd_r.o_name);
  END LOOP;
END`)}`);
}

/**
 * What the step that checks a partitioned index (`check-index`) first brings up to date, because partitions can
 * appear after the change read the catalog (pg_partman's premake, a CREATE TABLE … PARTITION OF or an ATTACH by
 * hand) and go (DETACH). PostgreSQL itself gives a partition created or attached while the parent index exists a
 * matching index, attached; one that appeared before the parent index existed has none, and a detach never makes
 * the parent index valid. Plain data, kept in the step, read by lib/engine/partition-catch-up.ts.
 */
export interface PartitionIndexCatchUp {
  readonly table: TableName;
  /** The index on the partitioned table, in the table's schema. */
  readonly index: string;
  readonly shape: IndexShape;
  /**
   * The partitions (`schema.name`) the change read, whose indexes carry names of the change's own (or their
   * originals'); any other partition's index is named partitionIndexName(index, partition), as the build route would
   * have named it had the partition been there when the change read the catalog.
   */
  readonly known: readonly string[];
  /**
   * A UNIQUE constraint (addUnique): no parent index exists before the step that adopts the partitions'
   * constraints, so PostgreSQL gives a late partition nothing; each such leaf gets its unique index CONCURRENTLY and
   * then its constraint USING INDEX, each partitioned one its adopting constraint, as the planned ones did.
   */
  readonly constraint?: { readonly columns: readonly string[]; readonly include?: readonly string[] };
}

/**
 * What an undo of a partitioned index (or UNIQUE constraint) drops after the parent, on partitions the change did not
 * read: the index a killed catch-up built under the route's name (partitionIndexName) and never attached, which the
 * parent's DROP does not take along, and which the plan's own drops, written from the partitions it read, do not name.
 */
export interface PartitionIndexLeftovers {
  readonly table: TableName;
  readonly index: string;
  readonly known: readonly string[];
  /** A leaf's leftover may be a UNIQUE constraint USING the index (addUnique's catch-up): dropped first. */
  readonly constraint: boolean;
}

/** A partition of a partitioned table's tree, as it is now (catch-up), by oid. */
export interface LivePartition {
  readonly oid: number;
  readonly parentOid: number;
  readonly schema: string;
  readonly name: string;
  /** pg_class.relkind: 'r' a table, 'p' partitioned, 'f' foreign. */
  readonly relkind: string;
}

/** An index of the table or of one of its partitions, and the index it is attached to (0 when none). */
export interface LiveIndex {
  readonly oid: number;
  readonly table: number;
  readonly schema: string;
  readonly name: string;
  readonly parentOid: number;
  readonly valid: boolean;
}

/** The partitions below `$1` (a qualified table name, as text) at every level, parents before their partitions. */
export const LIVE_PARTITIONS_SQL = `WITH RECURSIVE tree AS (
    SELECT i.inhrelid AS oid, i.inhparent AS parent, ARRAY[c.relname::text] AS path
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::text::regclass
    UNION ALL
    SELECT i.inhrelid, i.inhparent, t.path || c.relname::text
      FROM tree t JOIN pg_inherits i ON i.inhparent = t.oid JOIN pg_class c ON c.oid = i.inhrelid)
  SELECT t.oid::int8 AS oid, t.parent::int8 AS "parentOid", n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind
    FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY t.path`;

/** Every index of `$1` and of the partitions below it, with the index each is attached to. */
export const LIVE_INDEXES_SQL = `SELECT x.indexrelid::int8 AS oid, x.indrelid::int8 AS table, n.nspname AS schema, ic.relname AS name,
         coalesce((SELECT ii.inhparent FROM pg_inherits ii WHERE ii.inhrelid = x.indexrelid), 0)::int8 AS "parentOid", x.indisvalid AS valid
    FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
   WHERE x.indrelid = $1::text::regclass OR x.indrelid IN (SELECT relid FROM pg_partition_tree($1::text::regclass))`;

/** How many UNIQUE constraints named `$2` the table with oid `$1` has (its own, or one a parent's adopted already). */
export const OWN_UNIQUE_CONSTRAINT_SQL = `SELECT count(*)::int8 AS n FROM pg_constraint WHERE conrelid = $1::int8::oid AND conname = $2::text AND contype = 'u'`;

/**
 * Whether `$1` (a qualified name, as text) is still a partition somewhere below `$2`: a step planned for a partition
 * the change read has nothing to do once it was detached (or dropped) since.
 */
export const STILL_PARTITION_SQL = `SELECT EXISTS (SELECT 1 FROM pg_partition_ancestors(to_regclass($1::text)) a WHERE a.relid = to_regclass($2::text) AND a.relid <> to_regclass($1::text)) AS still`;

/** A late partition's index, given the name the build route gives it (catch-up): a brief lock on that index alone. */
export function renameIndexTo(index: TableName, to: string): Statement {
  return st(`ALTER INDEX ${qualified(index)} RENAME TO ${ident(to)}`);
}

/**
 * PL/pgSQL that sets the variable `_zd_name` to objectName(prefix, <values of parts>) (its FNV-1a hash over code
 * points, computed in the server): a name the plan derives from a partition's name, for a partition the change never
 * read. Needs `_zd_parts text[]; _zd_h int8; _zd_ch text; _zd_name text` declared.
 */
function objectNameSql(prefix: string, parts: readonly string[]): string {
  return `
    _zd_parts := ARRAY[${parts.join(', ')}]::text[];
    _zd_h := 2166136261;
    FOREACH _zd_ch IN ARRAY regexp_split_to_array(array_to_string(_zd_parts, chr(1)), '') LOOP
      _zd_h := ((_zd_h # ascii(_zd_ch)) * 16777619) % 4294967296;
    END LOOP;
    _zd_name := lower(${literal(`${prefix}_`)} || left(regexp_replace(array_to_string(_zd_parts, '_'), '[^a-zA-Z0-9_]', '', 'g'), 30) || '_' || lpad(to_hex(_zd_h), 8, '0'));`;
}

/** objectNameSql for partitionIndexName(<value of index_expr>, partition). */
function partitionIndexNameSql(indexExpr: string, schemaExpr: string, nameExpr: string): string {
  return objectNameSql('zd_pi', [nameExpr, indexExpr, schemaExpr]);
}

const NAME_VARS = '_zd_parts text[]; _zd_h int8; _zd_ch text; _zd_name text;';

/**
 * Renames, in one statement, the partitions' indexes of a partitioned index that a swap renamed just before (in the
 * same transaction): each partition the change read by the names it planned (`renames`), skipping one no longer in
 * the table (detached or dropped since: its index went with it, and its old name may be taken there); then every
 * index attached, at any level, to that index on a partition the change did not read (created or attached since;
 * PostgreSQL gave it an index of its own naming, also after check-index ran) gets the name the build route gives a
 * partition's index, partitionIndexName(<the index's name now>, partition): what an up that reads that partition names
 * it. The parent index is `top`, the name the swap has just given it.
 */
export function renamePartitionIndexesLive(
  t: TableName,
  renames: readonly { readonly partition: TableName; readonly depth: number; readonly from: string; readonly to: string }[],
  known: readonly TableName[],
  top: TableName,
): Statement {
  const root = literal(qualified(t));
  const idx = (r: { readonly partition: TableName; readonly from: string }) => literal(qualified({ schema: r.partition.schema, name: r.from }));
  // The parent index by the name it has at this point of the step, else through a partition's index still attached to
  // it (a step planned before the name was passed). Not through the partitions alone: every one the change read can
  // be gone by now (pg_partman's retention drops the oldest), and the late ones must still be reached.
  const tops = [`to_regclass(${literal(qualified(top))})`, ...renames.filter((r) => r.depth === 1).map((r) => `(SELECT ii.inhparent FROM pg_inherits ii WHERE ii.inhrelid = to_regclass(${idx(r)}))`)];
  const planned = renames
    .filter((r) => r.from !== r.to)
    .map(
      (r) => `
  IF EXISTS (SELECT 1 FROM pg_partition_ancestors(to_regclass(${literal(qualified(r.partition))})) a WHERE a.relid = ${root}::regclass)
     AND to_regclass(${idx(r)}) IS NOT NULL THEN
    EXECUTE ${literal(`ALTER INDEX ${qualified({ schema: r.partition.schema, name: r.from })} RENAME TO ${ident(r.to)}`)};
  END IF;`,
    )
    .join('');
  const knownList = `ARRAY[${known.map((k) => literal(tableLabel(k))).join(', ')}]::text[]`;
  return st(`DO ${dollarQuote(`
DECLARE _zd_top oid; _zd_top_name text; _zd_parts text[]; _zd_h int8; _zd_ch text; _zd_name text; _zd_r record;
BEGIN
  _zd_top := coalesce(${tops.join(', ')});${planned}
  IF _zd_top IS NULL THEN RETURN; END IF;
  SELECT c.relname::text INTO _zd_top_name FROM pg_class c WHERE c.oid = _zd_top;
  FOR _zd_r IN
    WITH RECURSIVE ix AS (
      SELECT ii.inhrelid AS idx FROM pg_inherits ii WHERE ii.inhparent = _zd_top
      UNION ALL
      SELECT ii.inhrelid FROM ix JOIN pg_inherits ii ON ii.inhparent = ix.idx)
    SELECT n.nspname::text AS idx_schema, ic.relname::text AS idx_name, tn.nspname::text AS t_schema, tc.relname::text AS t_name
      FROM ix JOIN pg_index x ON x.indexrelid = ix.idx JOIN pg_class ic ON ic.oid = ix.idx JOIN pg_namespace n ON n.oid = ic.relnamespace
      JOIN pg_class tc ON tc.oid = x.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
     WHERE NOT (tn.nspname || '.' || tc.relname) = ANY (${knownList})
  LOOP${partitionIndexNameSql('_zd_top_name', '_zd_r.t_schema', '_zd_r.t_name')}
    IF _zd_name <> _zd_r.idx_name AND to_regclass(quote_ident(_zd_r.idx_schema) || '.' || quote_ident(_zd_name)) IS NULL THEN
      EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', _zd_r.idx_schema, _zd_r.idx_name, _zd_name);
    END IF;
  END LOOP;
END`)}`);
}

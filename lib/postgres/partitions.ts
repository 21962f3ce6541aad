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
 * before (CONCURRENTLY, then USING INDEX); this step first makes sure of it, under a lock that keeps partitions from
 * being attached or created meanwhile, so the ALTER is catalog work and never a build under a write-blocking lock.
 */
export function addUniqueConstraintOnPartitioned(
  t: TableName,
  name: string,
  columns: readonly string[],
  include: readonly string[] | undefined,
  expected: readonly { readonly partition: TableName; readonly constraint: string }[],
): Statement[] {
  const pairs = expected.length > 0 ? expected.map((e) => `(${literal(qualified(e.partition))}, ${literal(e.constraint)})`).join(', ') : `(NULL, NULL)`;
  return [
    st(`LOCK TABLE ONLY ${qualified(t)} IN SHARE UPDATE EXCLUSIVE MODE`),
    st(`DO ${dollarQuote(`
DECLARE _zd_missing text;
BEGIN
  SELECT string_agg(i.inhrelid::regclass::text, ', ' ORDER BY i.inhrelid::regclass::text) INTO _zd_missing
    FROM pg_inherits i
   WHERE i.inhparent = ${literal(qualified(t))}::regclass
     AND NOT EXISTS (SELECT 1 FROM (VALUES ${pairs}) AS e(rel, con) JOIN pg_constraint co ON co.conrelid = to_regclass(e.rel) AND co.conname = e.con
                      WHERE co.conrelid = i.inhrelid AND co.contype = 'u' AND co.conparentid = 0);
  IF _zd_missing IS NOT NULL THEN
    RAISE EXCEPTION 'cannot add the UNIQUE constraint % to % without building indexes under a lock that stops writes: the partitions % have no unique constraint of their own to adopt (created or attached after this change read the catalog). Nothing was changed by this step; the partitions done so far keep theirs. Run down to remove the change and up again (it reads the partitions anew).',
      ${literal(name)}, ${literal(tableLabel(t))}, _zd_missing;
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
 * Fails (rolling back its step) unless the partitions below `t`, at every level, are exactly `expected`: a step that
 * moves every partition by the list the change read must neither leave behind one created or attached since nor trip
 * on one detached or dropped since. Run under lockPartitionTree(), so the tree cannot change after the check.
 */
export function requirePartitionsAsRead(t: TableName, expected: readonly TableName[], what: string): Statement {
  const read = expected.length > 0 ? `VALUES ${expected.map((p) => `(${literal(p.schema)}, ${literal(p.name)})`).join(', ')}` : `SELECT NULL::text, NULL::text WHERE false`;
  return st(`DO ${dollarQuote(`
DECLARE _zd_new text; _zd_gone text;
BEGIN
  WITH RECURSIVE tree AS (
    SELECT i.inhrelid AS rel FROM pg_inherits i WHERE i.inhparent = ${literal(qualified(t))}::regclass
    UNION ALL
    SELECT i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.rel),
  now AS (SELECT n.nspname::text AS s, c.relname::text AS r FROM tree t JOIN pg_class c ON c.oid = t.rel JOIN pg_namespace n ON n.oid = c.relnamespace),
  read (s, r) AS (${read})
  SELECT (SELECT string_agg(x.s || '.' || x.r, ', ' ORDER BY x.s, x.r) FROM (SELECT * FROM now EXCEPT SELECT * FROM read) x),
         (SELECT string_agg(x.s || '.' || x.r, ', ' ORDER BY x.s, x.r) FROM (SELECT * FROM read EXCEPT SELECT * FROM now) x)
    INTO _zd_new, _zd_gone;
  IF _zd_new IS NOT NULL OR _zd_gone IS NOT NULL THEN
    RAISE EXCEPTION '%: the partitions of % are not the ones this change read (created or attached since: %; detached or dropped since: %), so moving the partitions it read would leave others behind. Nothing was changed by this step. Run down and up again (the change reads the partitions anew).',
      ${literal(what)}, ${literal(tableLabel(t))}, coalesce(_zd_new, 'none'), coalesce(_zd_gone, 'none');
  END IF;
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
 * PL/pgSQL that sets the variable `_zd_name` to partitionIndexName(<value of index_expr>, partition) (objectName's
 * FNV-1a hash over code points, computed in the server): a rename in a step's own statements that reaches a partition
 * the change never read.
 */
function partitionIndexNameSql(indexExpr: string, schemaExpr: string, nameExpr: string): string {
  return `
    _zd_parts := ARRAY[${nameExpr}, ${indexExpr}, ${schemaExpr}];
    _zd_h := 2166136261;
    FOREACH _zd_ch IN ARRAY regexp_split_to_array(array_to_string(_zd_parts, chr(1)), '') LOOP
      _zd_h := ((_zd_h # ascii(_zd_ch)) * 16777619) % 4294967296;
    END LOOP;
    _zd_name := lower('zd_pi_' || left(regexp_replace(array_to_string(_zd_parts, '_'), '[^a-zA-Z0-9_]', '', 'g'), 30) || '_' || lpad(to_hex(_zd_h), 8, '0'));`;
}

/**
 * Renames, in one statement, the partitions' indexes of a partitioned index that a swap renamed just before (in the
 * same transaction): each partition the change read by the names it planned (`renames`), skipping one no longer in
 * the table (detached or dropped since: its index went with it, and its old name may be taken there); then every
 * index attached, at any level, to that index on a partition the change did not read (created or attached since;
 * PostgreSQL gave it an index of its own naming) gets the name the build route gives a partition's index,
 * partitionIndexName(<the index's name now>, partition): what an up that reads that partition names it.
 */
export function renamePartitionIndexesLive(
  t: TableName,
  renames: readonly { readonly partition: TableName; readonly depth: number; readonly from: string; readonly to: string }[],
  known: readonly TableName[],
): Statement {
  const root = literal(qualified(t));
  const idx = (r: { readonly partition: TableName; readonly from: string }) => literal(qualified({ schema: r.partition.schema, name: r.from }));
  // The parent index, found through a partition's index still attached to it (by oid: its name changed just before).
  const tops = renames.filter((r) => r.depth === 1).map((r) => `(SELECT ii.inhparent FROM pg_inherits ii WHERE ii.inhrelid = to_regclass(${idx(r)}))`);
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
  _zd_top := coalesce(${tops.length > 0 ? tops.join(', ') : 'NULL'}, NULL);${planned}
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

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
 * to it: a partition created or attached after the change read the catalog, before the parent index existed.
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
  RAISE EXCEPTION 'the index % of % is not valid: the partitions % have no valid index attached to their parent''s (created or attached after this change read the catalog, or a build that failed). The indexes built so far stay; build one on each of those partitions (CREATE INDEX CONCURRENTLY, then ALTER INDEX <its parent''s index> ATTACH PARTITION …) and run again, or run down to remove the change.',
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

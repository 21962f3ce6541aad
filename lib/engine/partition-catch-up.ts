import type { Db } from '../db/db.js';
import type { Step } from '../migration.js';
import { qualified, tableLabel, type TableName } from '../postgres/identifiers.js';
import { relationExists } from '../postgres/catalog.js';
import { addConstraintUsingIndex, dropIndexConcurrently } from '../postgres/index-sql.js';
import {
  addUniqueConstraintOnPartitioned,
  attachPartitionIndex,
  createIndexOnOnly,
  createPartitionIndexConcurrently,
  dropConstraintIfExists,
  dropPartitionedIndex,
  LIVE_INDEXES_SQL,
  LIVE_PARTITIONS_SQL,
  OWN_UNIQUE_CONSTRAINT_SQL,
  partitionIndexName,
  renameIndexTo,
  STILL_PARTITION_SQL,
  type LiveIndex,
  type PartitionIndexCatchUp,
  type PartitionIndexLeftovers,
} from '../postgres/partitions.js';

/** What a catch-up did, one line per partition, for the step's event and the tests. */
export interface CatchUpAction {
  readonly partition: string;
  readonly action: 'built' | 'created' | 'renamed' | 'revalidated' | 'dropped';
  readonly index: string;
}

interface Part {
  readonly oid: number;
  readonly parentOid: number;
  readonly table: TableName;
  readonly relkind: string;
}

type Ix = LiveIndex;

/** Whether the partition a step was planned for is still below its table (not detached or dropped since). */
export async function stillPartition(db: Db, p: { readonly root: TableName; readonly table: TableName }): Promise<boolean> {
  const r = await db.query<{ still: boolean }>(STILL_PARTITION_SQL, [qualified(p.table), qualified(p.root)]);
  return r.rows[0]?.still === true;
}

/** `table`'s oid and the partitions below it now, at every level (LIVE_PARTITIONS_SQL). */
async function livePartitions(db: Db, table: TableName): Promise<{ oid: number; parts: Part[] }> {
  const t = qualified(table);
  const oid = Number((await db.query<{ oid: string }>(`SELECT $1::text::regclass::oid::int8 AS oid`, [t])).rows[0]!.oid);
  const parts = (await db.query<{ oid: string; parentOid: string; schema: string; name: string; relkind: string }>(LIVE_PARTITIONS_SQL, [t])).rows.map((r) => ({
    oid: Number(r.oid),
    parentOid: Number(r.parentOid),
    table: { schema: r.schema, name: r.name },
    relkind: r.relkind,
  }));
  return { oid, parts };
}

/**
 * Brings a partitioned index up to the partitions the table has now, before its check: the change planned one build
 * per partition it read, but partitions can appear since (pg_partman's premake, CREATE TABLE … PARTITION OF, ATTACH)
 * and go (DETACH). PostgreSQL gives a partition created or attached while the parent index exists an index of its own
 * (built under the lock of that CREATE or ATTACH), so what is left for here is a partition that appeared before the
 * parent index did: its index is built CONCURRENTLY and attached, as the planned ones were (a partitioned one gets
 * its ON ONLY index, its partitions theirs, then it is attached). A partition the change did not read gets the name
 * the route gives a partition's index, whoever built it, so an up that reads it later names it the same. Last, a
 * parent index left INVALID by a detach (PostgreSQL counts partitions only when one is attached) is made valid by
 * attaching one of its partitions' indexes again, which makes PostgreSQL count them. Each action is a step of its own
 * through `run` (lock_timeout, retries; a build's INVALID leftover dropped first), and each is safe to run again.
 */
export async function catchUpPartitionIndex(db: Db, c: PartitionIndexCatchUp, run: (step: Step) => Promise<void>): Promise<CatchUpAction[]> {
  if (c.constraint) return catchUpPartitionConstraint(db, c, c.constraint, run);
  const actions: CatchUpAction[] = [];
  const root = qualified(c.table);
  const { oid: rootOid, parts } = await livePartitions(db, c.table);
  const readIndexes = async (): Promise<Ix[]> =>
    (await db.query<{ oid: string; table: string; schema: string; name: string; parentOid: string; valid: boolean }>(LIVE_INDEXES_SQL, [root])).rows.map((r) => ({
      oid: Number(r.oid),
      table: Number(r.table),
      schema: r.schema,
      name: r.name,
      parentOid: Number(r.parentOid),
      valid: r.valid,
    }));
  let indexes = await readIndexes();
  const top = indexes.find((x) => x.table === rootOid && x.schema === c.table.schema && x.name === c.index);
  // No parent index: nothing to catch up with; the check that follows says what is wrong.
  if (!top) return actions;
  const known = new Set(c.known);
  const exists = async (t: TableName) => (await db.query<{ oid: string | null }>(`SELECT to_regclass($1::text)::oid::int8 AS oid`, [qualified(t)])).rows[0]?.oid != null;
  const oidOf = async (t: TableName) => Number((await db.query<{ oid: string }>(`SELECT $1::text::regclass::oid::int8 AS oid`, [qualified(t)])).rows[0]!.oid);

  const visit = async (parentOid: number, parentIndex: { readonly oid: number; readonly schema: string; readonly name: string }): Promise<void> => {
    for (const p of parts.filter((x) => x.parentOid === parentOid)) {
      // A foreign partition can have no index: the check names it.
      if (p.relkind === 'f') continue;
      const on = tableLabel(p.table);
      const want = partitionIndexName(c.index, p.table);
      const parentName = { schema: parentIndex.schema, name: parentIndex.name };
      const attached = indexes.find((x) => x.table === p.oid && x.parentOid === parentIndex.oid);
      if (attached) {
        let mine = attached;
        if (!known.has(on) && attached.name !== want && !(await exists({ schema: attached.schema, name: want }))) {
          await run(step(`rename the index ${attached.name} PostgreSQL gave ${on} (created or attached after the change read the catalog) to ${want}`, [renameIndexTo({ schema: attached.schema, name: attached.name }, want)]));
          actions.push({ partition: on, action: 'renamed', index: want });
          mine = { ...attached, name: want };
        }
        if (p.relkind === 'p') await visit(p.oid, mine);
        continue;
      }
      const index = { schema: p.table.schema, name: want };
      if (p.relkind === 'p') {
        await run(step(`create index ${want} on only ${on} (a partition created or attached after the change read the catalog)`, [createIndexOnOnly(p.table, want, c.shape)]));
        actions.push({ partition: on, action: 'created', index: want });
        await visit(p.oid, { oid: await oidOf(index), ...index });
      } else {
        await run({
          id: `catch-up:${on}:build`,
          description: `build ${c.shape.unique ? 'unique ' : ''}index ${want} on partition ${on} (created or attached after the change read the catalog) concurrently`,
          statements: [createPartitionIndexConcurrently(p.table, want, c.shape)],
          transactional: false,
          concurrentIndex: index,
        });
        actions.push({ partition: on, action: 'built', index: want });
      }
      await run(step(`attach ${want} (${on}) to ${parentName.name}`, [attachPartitionIndex(parentName, index)]));
    }
  };
  await visit(rootOid, top);

  // Deepest first: a partitioned partition's index counts for its parent's only once it is valid itself.
  indexes = await readIndexes();
  const byOid = new Map(indexes.map((x) => [x.oid, x]));
  const depth = (x: Ix): number => (x.parentOid === 0 || !byOid.has(x.parentOid) ? 0 : 1 + depth(byOid.get(x.parentOid)!));
  const inTree = (x: Ix): boolean => x.oid === top.oid || (x.parentOid !== 0 && byOid.has(x.parentOid) && inTree(byOid.get(x.parentOid)!));
  const invalid = indexes.filter((x) => !x.valid && inTree(x)).sort((a, b) => depth(b) - depth(a));
  for (const x of invalid) {
    // Read again: the one before may have made this one's partitioned partition valid.
    const now = await readIndexes();
    if (now.find((y) => y.oid === x.oid)?.valid !== false) continue;
    const child = now.find((y) => y.parentOid === x.oid && y.valid);
    if (!child) continue;
    await run(
      step(`attach ${child.name} to ${x.name} again, so that PostgreSQL counts its partitions anew (one was detached since)`, [
        attachPartitionIndex({ schema: x.schema, name: x.name }, { schema: child.schema, name: child.name }),
      ]),
    );
    actions.push({ partition: tableLabel(parts.find((p) => p.oid === x.table)?.table ?? c.table), action: 'revalidated', index: x.name });
  }
  return actions;
}

/**
 * Before a step that adds a UNIQUE constraint to a partitioned table (or partition) by adopting its partitions' own:
 * a partition created or attached since the change read the catalog has none (there is no parent constraint yet for
 * PostgreSQL to clone), and ADD CONSTRAINT would build its index under a lock that stops writes. Each such leaf gets
 * the unique index CONCURRENTLY and then its constraint USING INDEX (a moment of ACCESS EXCLUSIVE on that leaf), a
 * partitioned one its leaves' first and then its own adopting constraint, under the name the route gives a partition
 * (partitionIndexName of the top constraint), as the planned partitions got theirs. A partition whose constraint is
 * there already (planned, or done by an earlier run) is left alone, so this is safe to run again.
 */
async function catchUpPartitionConstraint(
  db: Db,
  c: PartitionIndexCatchUp,
  k: NonNullable<PartitionIndexCatchUp['constraint']>,
  run: (step: Step) => Promise<void>,
): Promise<CatchUpAction[]> {
  const actions: CatchUpAction[] = [];
  const { oid: levelOid, parts } = await livePartitions(db, c.table);
  const hasOwn = async (p: Part, name: string) =>
    (await db.query<{ n: string }>(OWN_UNIQUE_CONSTRAINT_SQL, [p.oid, name])).rows[0]?.n !== '0';
  const visit = async (parentOid: number): Promise<void> => {
    for (const p of parts.filter((x) => x.parentOid === parentOid)) {
      // A foreign partition can have no index: the step's check names it.
      if (p.relkind === 'f') continue;
      const on = tableLabel(p.table);
      const want = partitionIndexName(c.index, p.table);
      if (await hasOwn(p, want)) continue;
      if (p.relkind === 'p') {
        await visit(p.oid);
        await run(
          step(`add the UNIQUE constraint ${want} to ${on} (created or attached after the change read the catalog), adopting its partitions' constraints`, addUniqueConstraintOnPartitioned(p.table, want, k.columns, k.include, [], c.index)),
        );
        actions.push({ partition: on, action: 'created', index: want });
        continue;
      }
      await run({
        id: `catch-up:${on}:build`,
        description: `build unique index ${want} on partition ${on} (created or attached after the change read the catalog) concurrently`,
        statements: [createPartitionIndexConcurrently(p.table, want, c.shape)],
        transactional: false,
        concurrentIndex: { schema: p.table.schema, name: want },
      });
      await run(step(`make ${want} a UNIQUE constraint of ${on} (created or attached after the change read the catalog)`, [addConstraintUsingIndex(p.table, want, want)]));
      actions.push({ partition: on, action: 'built', index: want });
    }
  };
  await visit(levelOid);
  return actions;
}

/**
 * After an undo dropped a partitioned index (or UNIQUE constraint) with every index attached to it: drops what a
 * killed catch-up built on a partition the change did not read and never attached (see PartitionIndexLeftovers). An
 * index of that name still attached somewhere belongs to another parent and is left alone.
 */
export async function dropPartitionIndexLeftovers(db: Db, c: PartitionIndexLeftovers, run: (step: Step) => Promise<void>): Promise<CatchUpAction[]> {
  const actions: CatchUpAction[] = [];
  if (!(await relationExists(db, qualified(c.table)))) return actions;
  const known = new Set(c.known);
  const { parts } = await livePartitions(db, c.table);
  for (const p of parts) {
    const on = tableLabel(p.table);
    if (known.has(on) || p.relkind === 'f') continue;
    const name = partitionIndexName(c.index, p.table);
    const left = await db.query<{ attached: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = x.oid) AS attached FROM (SELECT to_regclass($1::text) AS oid) x WHERE x.oid IS NOT NULL`,
      [qualified({ schema: p.table.schema, name })],
    );
    if (!left.rows[0] || left.rows[0].attached) continue;
    if (c.constraint) await run(step(`drop the UNIQUE constraint ${name} a stopped run left on ${on}, if it is one`, [dropConstraintIfExists(p.table, name)]));
    await run(
      p.relkind === 'p'
        ? step(`drop index ${name} a stopped run left on ${on}`, [dropPartitionedIndex({ schema: p.table.schema, name })])
        : { id: `leftover:${on}:drop`, description: `drop index ${name} a stopped run left on ${on} concurrently`, statements: [dropIndexConcurrently(p.table.schema, name)], transactional: false },
    );
    actions.push({ partition: on, action: 'dropped', index: name });
  }
  return actions;
}

function step(description: string, statements: Step['statements']): Step {
  return { id: `catch-up:${description}`, description, statements, transactional: true };
}

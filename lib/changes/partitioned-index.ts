import type { Statement, Step } from '../migration.js';
import type { PartitionInfo, Partitioning } from '../postgres/catalog.js';
import { tableLabel, type TableName } from '../postgres/identifiers.js';
import { addConstraintUsingIndex, dropIndexConcurrently } from '../postgres/index-sql.js';
import {
  addUniqueConstraintOnPartitioned,
  attachPartitionIndex,
  createIndexOnOnly,
  createPartitionIndexConcurrently,
  dropConstraintIfExists,
  dropPartitionedIndex,
  partitionIndexName,
  partitionsOf,
  renamePartitionIndexesLive,
  requireIndexValid,
  type IndexShape,
  type PartitionIndexCatchUp,
} from '../postgres/partitions.js';
import { txStep } from './common.js';

/**
 * The steps that build (and drop) one index of a partitioned table the safe way, one partition at a time (see
 * lib/postgres/partitions.ts for the route). Every partition is a step of its own with an id derived from its name,
 * so a run killed half-way resumes at the first partition not done, and `plan` lists each with its lock.
 */
export interface PartitionedIndex {
  readonly table: TableName;
  readonly partitioning: Partitioning;
  /** The index on the partitioned table (for a constraint: the constraint's name, which its index takes). */
  readonly name: string;
  readonly shape: IndexShape;
  /** The name of a partition's index; default partitionIndexName(). An index built again gets its original names. */
  readonly nameFor?: (partition: PartitionInfo, parentIndex: string) => string;
  /** Make it a UNIQUE constraint: each partition's index backs a constraint of its own, which the parent's adopts. */
  readonly constraint?: { readonly columns: readonly string[]; readonly include?: readonly string[] };
  /** Prefixed to every step id, for a change that builds several indexes. */
  readonly idPrefix?: string;
}

export interface PartitionedIndexSteps {
  readonly build: readonly Step[];
  /** Undoes `build` from any point it stopped at: the parent's index first, then what a partition may have left. */
  readonly drop: readonly Step[];
}

/**
 * Each partition's index that is attached to `index` (directly, or through a partitioned partition's own), by
 * partition (`schema.name`), as the snapshot saw them: what an index built again must be called to be the same.
 */
export function attachedPartitionIndexes(partitioning: Partitioning, table: TableName, index: string): ReadonlyMap<string, string> {
  const at = new Map<string, string>([[tableLabel(table), index]]);
  for (const p of partitioning.partitions) {
    const parentIndex = at.get(tableLabel(p.parent));
    const own = parentIndex === undefined ? undefined : p.indexes.find((x) => x.parentIndex === parentIndex);
    if (own) at.set(tableLabel(p.table), own.name);
  }
  at.delete(tableLabel(table));
  return at;
}

/**
 * Renames, in one transaction's statement, every partition's index of `top` (the parent index, by the name the same
 * transaction has just given it; each partition's by `fromNames`) to its name under `toNames`: a column swap gives the partitions' indexes the names the originals had, and takes them back on its undo. It
 * runs after the parent index was renamed, in the same transaction. A partition detached or dropped since the change
 * read the catalog is skipped; one created or attached since gets the name the build route would give it (see
 * renamePartitionIndexesLive).
 */
export function renamePartitionIndexes(
  partitioning: Partitioning,
  top: TableName,
  fromNames: (p: PartitionInfo) => string | undefined,
  toNames: (p: PartitionInfo) => string | undefined,
): Statement[] {
  const root = partitioning.partitions.find((p) => p.depth === 1)?.parent;
  if (!root) return [];
  const renames = partitioning.partitions.flatMap((p) => {
    const from = fromNames(p);
    const to = toNames(p);
    return from !== undefined && to !== undefined && p.kind !== 'foreign' ? [{ partition: p.table, depth: p.depth, from, to }] : [];
  });
  if (renames.length === 0) return [];
  return [renamePartitionIndexesLive(root, renames, partitioning.partitions.map((p) => p.table), top)];
}

export function partitionedIndexSteps(o: PartitionedIndex): PartitionedIndexSteps {
  const pre = o.idPrefix ?? '';
  // Derived from the top index at every level: a sub-partition's name then reads as its own, not as a hash of a hash.
  const nameFor = o.nameFor ?? ((p: PartitionInfo) => partitionIndexName(o.name, p.table));
  const id = (p: PartitionInfo, what: string) => `${pre}partition:${tableLabel(p.table)}:${what}`;
  const build: Step[] = [];
  const drop: Step[] = [];
  const top = { schema: o.table.schema, name: o.name };
  // Skipped by the executor once the partition is no longer below the table (detached or dropped since).
  const of = (p: PartitionInfo) => ({ partition: { root: o.table, table: p.table } });
  const known = o.partitioning.partitions.map((p) => p.table);
  // A constraint step first gives a partition that appeared since the change read the catalog its own constraint (see
  // catchUpPartitionConstraint), under the name the route gives it, which the step's check then expects.
  const catchUp = (level: TableName): PartitionIndexCatchUp => ({
    table: level,
    index: o.name,
    shape: o.shape,
    known: known.map(tableLabel),
    ...(o.constraint ? { constraint: o.constraint } : {}),
  });

  const visit = (parent: TableName, parentIndex: TableName): { partition: TableName; constraint: string }[] => {
    const adopted: { partition: TableName; constraint: string }[] = [];
    for (const p of partitionsOf(o.partitioning, parent)) {
      const index = { schema: p.table.schema, name: nameFor(p, parentIndex.name) };
      const on = tableLabel(p.table);
      if (p.kind === 'partitioned') {
        if (o.constraint) {
          const below = visit(p.table, index);
          build.push({
            ...txStep(id(p, 'constraint'), `add the UNIQUE constraint ${index.name} to ${on}, adopting its partitions' constraints`, addUniqueConstraintOnPartitioned(p.table, index.name, o.constraint.columns, o.constraint.include, below, o.name)),
            ...of(p),
            partitionIndexCatchUp: catchUp(p.table),
          });
          drop.push(txStep(id(p, 'drop'), `drop the UNIQUE constraint ${index.name} of ${on}, if left`, [dropConstraintIfExists(p.table, index.name)]));
        } else {
          build.push({ ...txStep(id(p, 'create'), `create index ${index.name} on only ${on} (its partitions' indexes attach to it)`, [createIndexOnOnly(p.table, index.name, o.shape)]), ...of(p) });
          drop.push(txStep(id(p, 'drop'), `drop index ${index.name} of ${on}, if left`, [dropPartitionedIndex(index)]));
          visit(p.table, index);
          build.push({ ...txStep(id(p, 'attach'), `attach ${index.name} (${on}) to ${parentIndex.name}`, [attachPartitionIndex(parentIndex, index)]), ...of(p) });
        }
      } else {
        build.push({
          id: id(p, 'build'),
          description: `build ${o.shape.unique ? 'unique ' : ''}index ${index.name} on partition ${on} concurrently`,
          statements: [createPartitionIndexConcurrently(p.table, index.name, o.shape)],
          transactional: false,
          concurrentIndex: index,
          ...of(p),
        });
        if (o.constraint) {
          build.push({ ...txStep(id(p, 'constraint'), `make ${index.name} a UNIQUE constraint of ${on}`, [addConstraintUsingIndex(p.table, index.name, index.name)]), ...of(p) });
          drop.push({
            id: id(p, 'drop'),
            description: `drop the UNIQUE constraint and index ${index.name} of ${on}, if left`,
            statements: [dropConstraintIfExists(p.table, index.name), dropIndexConcurrently(index.schema, index.name)],
            transactional: false,
          });
        } else {
          build.push({ ...txStep(id(p, 'attach'), `attach ${index.name} (${on}) to ${parentIndex.name}`, [attachPartitionIndex(parentIndex, index)]), ...of(p) });
          drop.push({ id: id(p, 'drop'), description: `drop index ${index.name} of ${on} concurrently, if left`, statements: [dropIndexConcurrently(index.schema, index.name)], transactional: false });
        }
      }
      adopted.push({ partition: p.table, constraint: index.name });
    }
    return adopted;
  };

  const label = tableLabel(o.table);
  // Last of the drops: what a stopped catch-up built on a partition the change did not read (the drops above know
  // the partitions it read; the parent's drop takes along only what is attached to it).
  const leftovers = (constraint: boolean): Step => ({
    ...txStep(`${pre}drop-late-leftovers`, `drop what a stopped run left on partitions of ${label} created or attached after the change read the catalog`, []),
    partitionIndexLeftovers: { table: o.table, index: o.name, known: o.partitioning.partitions.map((p) => tableLabel(p.table)), constraint },
  });
  if (o.constraint) {
    const below = visit(o.table, top);
    build.push({
      ...txStep(
        `${pre}add-constraint`,
        `add the UNIQUE constraint ${o.name} to ${label}, adopting its partitions' constraints (first building, concurrently, those of partitions created or attached since the change read the catalog)`,
        addUniqueConstraintOnPartitioned(o.table, o.name, o.constraint.columns, o.constraint.include, below, o.name),
      ),
      partitionIndexCatchUp: catchUp(o.table),
    });
    return {
      build,
      drop: [
        txStep(`${pre}drop-constraint`, `drop the UNIQUE constraint ${o.name} of ${label} with its partitions'`, [dropConstraintIfExists(o.table, o.name)]),
        ...drop,
        leftovers(true),
      ],
    };
  }
  build.push(txStep(`${pre}create-index`, `create index ${o.name} on only ${label} (invalid until every partition's index is attached)`, [createIndexOnOnly(o.table, o.name, o.shape)]));
  visit(o.table, top);
  build.push({
    ...txStep(
      `${pre}check-index`,
      `check that ${o.name} is valid: every partition has its index attached (first building and attaching, concurrently, the index of a partition created or attached since the change read the catalog)`,
      [requireIndexValid(o.table, top)],
    ),
    partitionIndexCatchUp: { table: o.table, index: o.name, shape: o.shape, known: o.partitioning.partitions.map((p) => tableLabel(p.table)) },
  });
  return { build, drop: [txStep(`${pre}drop-index`, `drop index ${o.name} of ${label} with its partitions' indexes`, [dropPartitionedIndex(top)]), ...drop, leftovers(false)] };
}

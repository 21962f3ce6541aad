import type { ChangeDescription, Statement, Step } from '../migration.js';
import type { ColumnInfo, Partitioning, TableInfo } from '../postgres/catalog.js';
import * as ddl from '../postgres/ddl.js';
import {
  abandonArchiveFill,
  analyzeArchive,
  archiveFill,
  archiveJoin,
  archiveName,
  archivedValueJoined,
  archivedWhereJoined,
  dropArchive,
  ensureArchive,
  finishArchiveFill,
  startArchiveFill,
  valueCol,
  type ArchiveSpec,
} from '../postgres/archive.js';
import {
  addColumnLike,
  addConstraintNotValid,
  checkTwinsStatement,
  columnAttachments,
  constraintUsingIndex,
  copyCommentAndPrivileges,
  dropConstraint,
  lockTables,
  moveSequences,
  refuseUncarriedDependents,
  renameConstraint,
  renameIndex,
  rewriteCheck,
  rewriteIncomingForeignKey,
  rewriteIndexDefinition,
  rewriteOutgoingForeignKey,
  twinName,
  yieldToWriters,
  type ColumnAttachments,
} from '../postgres/column-attachments.js';
import { ChangeInputError, ident, objectName, qualified, tableLabel, type TableName } from '../postgres/identifiers.js';
import { applyConversion, createConvertingSync, dropTrigger, type Conversion } from '../postgres/triggers.js';
import { createTryFunction, dropTryFunction, guardedExpression, recordConversionError, tryCall } from '../postgres/conversion-errors.js';
import { txStep } from './common.js';
import { FOREIGN_KEY_NOT_VALID_ON_PARTITIONED, refusePartitioned, refuseSyncTriggerBefore13 } from './partitioned.js';
import { attachedPartitionIndexes, partitionedIndexSteps, renamePartitionIndexes } from './partitioned-index.js';
import { indexShape, partitionedIndexProblem, partitionIndexName } from '../postgres/partitions.js';

/** A transactional step whose lock waits end before a writer's deadlock detector runs (see yieldToWriters). */
export const lockStep = (id: string, description: string, statements: readonly Statement[]): Step =>
  txStep(id, description, [yieldToWriters(), ...statements]);

/**
 * The plan shared by changeColumnType and renameColumn: a column C is replaced by a new column D (another type, or
 * another name) that a two-way sync trigger keeps equal to the converted value while old and new application
 * versions run. Everything attached to C is built again on D before the swap: NOT NULL through a validated CHECK,
 * CHECK and foreign-key constraints NOT VALID then VALIDATE, indexes (partial, expression, unique, primary key)
 * CONCURRENTLY, other tables' foreign keys referencing C; comment, privileges and collation are copied at expand;
 * default, identity and owned sequences move at the swap. The contract archives C's values (key + value) and swaps
 * in one short transaction; its undo restores C from the archive (rows unchanged since the contract get their old
 * value back exactly, the others the converted one) and rebuilds C's objects the same way.
 */
export interface ReplacementSpec {
  readonly what: string;
  readonly t: TableName;
  readonly info: TableInfo;
  /** The column as the snapshot saw it (C). */
  readonly col: ColumnInfo;
  /** The new column during the transition (D). */
  readonly dst: string;
  readonly dstType: string;
  /** The name the new column ends up with: C for a type change, D for a rename. */
  readonly finalName: string;
  /** C's value → D's value, written with C's name. */
  readonly up: Conversion;
  /** D's value → C's value, written with C's name (for a type change) or D's (for a rename: the identity). */
  readonly down: Conversion;
  readonly stateSchema: string;
  readonly archiveKind: string;
  /**
   * A row the sync trigger cannot convert: 'record' (default) records it and leaves the new column NULL, so the
   * application's write goes through; 'reject' fails the write. 'none' for a conversion that cannot fail (a rename).
   */
  readonly onConversionError?: 'record' | 'reject' | 'none';
  /** What the author can do about rows whose `up` fails, for the preflight's refusal. */
  readonly preflightFix?: string;
  /**
   * `down` gives back exactly the value `up` came from, for every value (a rename; a widening cast such as integer →
   * bigint): the undo of the contract then refills C from K alone, as fast as the forward backfill, instead of
   * joining each batch to the archive to recover values a lossy `down` would change.
   */
  readonly exactInverse?: boolean;
}

export function describeReplacement(s: ReplacementSpec): ChangeDescription {
  const { t, col, dst: D, finalName: K } = s;
  const C = col.name;
  if (s.info.primaryKey.length === 0) throw new ChangeInputError(`${s.what}: ${tableLabel(t)} has no primary key to backfill and archive by. Nothing was changed.`);
  if (K !== C && s.info.primaryKey.includes(C)) {
    throw new ChangeInputError(
      `${s.what}: ${tableLabel(t)}.${C} is part of the primary key; backfills and archives walk the table by its key, which a rename would move. Nothing was changed. Rename it with sql() and a brief lock.`,
    );
  }
  const att = columnAttachments(s.info, col, s.what);
  refuseSyncTriggerBefore13(s.info, s.what);
  refuseOnPartitioned(s.what, s.info, [col.name], att);
  // During a rollback of the contract the restored column needs a name of its own for a type change; a rename
  // restores C under its own name.
  const Z = K === C ? objectName('zd_restore', C) : C;
  const fn = objectName('zd_sync', t.name, C, D);
  const trigger = fn;
  const nnD = objectName('zd_nn', t.name, D);
  const nnZ = objectName('zd_nn', t.name, Z);
  const tw = (name: string, table: TableName = t) => twinName('zd_tw', table, name);
  const rs = (name: string, table: TableName = t) => twinName('zd_rs', table, name);
  const keyConstraints = att.indexes.flatMap((i) => (i.constraint ? [i.constraint.name] : []));
  const known = { indexes: att.indexes.map((i) => i.name), constraints: [...keyConstraints, ...att.constraints.map((c) => c.name), ...att.incoming.map((c) => c.name)] };
  const archive: ArchiveSpec = {
    archive: archiveName(s.stateSchema, s.archiveKind, t, C),
    table: t,
    keys: s.info.primaryKey.map((k) => ({ name: k, type: s.info.columns.find((c) => c.name === k)!.type })),
    values: [{ name: C, type: col.type }],
    kind: s.archiveKind,
  };
  const mode = s.onConversionError ?? 'record';
  const keys = s.info.primaryKey;
  const onError = mode === 'record' ? { record: recordConversionError(s.stateSchema, t, D, keys) } : undefined;
  const tryFn = objectName('zd_try', t.name, C, D);
  const upOfC = applyConversion(s.up, ident(C));
  const forwardSync = [
    ...(mode === 'record' ? [createTryFunction(s.stateSchema, t, tryFn, { param: C, paramType: col.type, resultType: s.dstType, expression: s.up.sql, target: D })] : []),
    ...createConvertingSync(t, fn, trigger, { src: C, dst: D, toDst: s.up, toSrc: s.down }, onError),
  ];
  const dropSync = [...dropTrigger(t, fn, trigger), ...(mode === 'record' ? [dropTryFunction(t, tryFn, col.type)] : [])];
  // The backfill and verify pass over rows they cannot convert (recorded), so one bad value written meanwhile does
  // not stop them; verify reads one snapshot, where a row and its record appear together.
  const upGuarded = mode === 'record' ? guardedExpression(upOfC, s.stateSchema, t, D, keys) : upOfC;
  const upForBackfill = mode === 'record' ? tryCall(t, tryFn, C, keys) : upOfC;
  const label = `${tableLabel(t)}.${C}`;

  const build = (target: string, liveFrom: string, name: (n: string, table?: TableName) => string, nn: string, only: 'all' | 'keys', prefix: string, notNull = only === 'all') =>
    buildObjects(s, att, { target, liveFrom, name, nn, only, prefix, notNull });
  // A row the trigger could not convert has D NULL: a NOT NULL check on D would turn the application's write into a
  // failure again. D's NOT NULL is built at contract then, when the old version (the only writer of C) is gone.
  const nnAtContract = mode === 'record' && col.notNull;
  const nnSteps = nnAtContract ? buildObjects(s, { ...att, constraints: [], indexes: [], incoming: [] }, { target: D, liveFrom: C, name: tw, nn: nnD, only: 'all', prefix: 'tw', notNull: true }) : [];

  const restoreExpr =
    `CASE WHEN ${archivedWhereJoined(`${ident(K)} IS NOT DISTINCT FROM ${applyConversion(s.up, `_zd_a.${valueCol(0)}`)}`)} ` +
    `THEN ${archivedValueJoined(0)} ELSE ${applyConversion(s.down, ident(K))} END`;

  return {
    summary: K === C ? `change type of ${label} from ${col.type} to ${s.dstType}` : `rename column ${label} → ${D}`,
    expand: {
      ...(mode !== 'none'
        ? {
            preflight: [{ table: t, expression: `CAST(${upOfC} AS ${s.dstType})`, what: `${s.what} ${label} → ${s.dstType}: ${upOfC}`, fix: s.preflightFix ?? 'clean those rows first' }],
          }
        : {}),
      ...(mode === 'record' ? { conversionLog: { table: t, target: D, expression: upOfC } } : {}),
      steps: [
        lockStep('add-column-and-sync', `add ${D} ${s.dstType} beside ${C} with a two-way sync trigger`, [
          refuseUncarriedDependents(t, C, known, s.what, { allowSequences: true, requirePlainTable: !s.info.partitioning }),
          addColumnLike(t, D, s.dstType, C),
          copyCommentAndPrivileges(t, C, D),
          ...forwardSync,
        ]),
      ],
      // In record mode only rows still NULL: the try function then runs once per row (in SET), not twice (WHERE too);
      // the trigger keeps every row it has written right, and verify checks them all.
      backfill: { table: t, set: [{ column: D, expression: upForBackfill }], quietTrigger: trigger, ...(mode === 'record' ? { only: 'null' as const, tryFirst: [{ column: D, expression: upOfC }] } : {}) },
      afterBackfill: build(D, C, tw, nnD, 'all', 'tw', !nnAtContract),
      verify: { table: t, equal: [{ column: D, expression: upGuarded }] },
    },
    contract: {
      steps: [
        ...nnSteps,
        lockStep('archive-start', `create the archive ${tableLabel(archive.archive)} of ${label} and the trigger that keeps it current`, startArchiveFill(archive, s.stateSchema)),
      ],
      backfill: archiveFill(archive),
      afterBackfill: [
        lockStep('archive-analyze', `analyze ${tableLabel(archive.archive)} (its row count for purge)`, [analyzeArchive(archive)]),
        // The foreign keys rebuilt against D (validated) already hold: the old ones go first, each in a transaction
        // that locks only its table and this one, in the order a writer inserting into it does.
        ...att.incoming.map((fk) => lockStep(`drop-fk-${tableLabel(fk.table)}-${fk.name}`, `drop ${fk.name} of ${tableLabel(fk.table)} (its copy references ${D})`, [dropConstraint(fk.table, fk.name)])),
        lockStep('swap', `drop ${C} (ending its archive's trigger under the same lock), give ${D} its name, constraints, indexes, default and sequences`, [
          lockTables([t]),
          ...finishArchiveFill(archive, s.stateSchema),
          ...dropSync,
          ...(col.notNull ? [ddl.setNotNull(t, D), ddl.dropConstraintIfExists(t, nnD)] : []),
          moveSequences(t, C, D),
          ...(col.default != null ? [ddl.setDefault(t, D, col.default)] : []),
          refuseUncarriedDependents(t, C, { indexes: known.indexes, constraints: [...keyConstraints, ...att.constraints.map((c) => c.name)] }, s.what, {
            allowSequences: false,
            requirePlainTable: false,
          }),
          ddl.dropColumnIfExists(t, C),
          ...(K !== D ? [renameColumn(t, D, K)] : []),
          ...renameObjects(t, att, tw, s.info.partitioning),
        ]),
        ...renameIncoming(att, tw, 'rename-fk'),
      ],
    },
    undoContract: {
      steps: [
        lockStep('restore-column', `add ${C} back as ${Z} ${col.type}, kept in sync with ${K}`, [
          ...ensureArchive(archive, s.stateSchema),
          addColumnLike(t, Z, col.type, K),
          copyCommentAndPrivileges(t, K, Z),
          ...createConvertingSync(t, fn, trigger, { src: K, dst: Z, toDst: s.down, toSrc: s.up }),
        ]),
      ],
      backfill: s.exactInverse
        ? { table: t, set: [{ column: Z, expression: applyConversion(s.down, ident(K)) }], quietTrigger: trigger }
        : { table: t, set: [{ column: Z, expression: restoreExpr }], join: archiveJoin(archive), quietTrigger: trigger },
      afterBackfill: [
        ...build(Z, K, rs, nnZ, 'all', 'rs'),
        ...att.incoming.map((fk) => lockStep(`drop-fk-${tableLabel(fk.table)}-${fk.name}`, `drop ${fk.name} of ${tableLabel(fk.table)} (its copy references ${Z})`, [dropConstraint(fk.table, fk.name)])),
        lockStep('swap-back', `give ${C} back its name, constraints, indexes, default and sequences; ${K} becomes ${D} again`, [
          lockTables([t]),
          ...(col.notNull ? [ddl.setNotNull(t, Z), ddl.dropConstraintIfExists(t, nnZ)] : []),
          moveSequences(t, K, Z),
          ...(col.default != null ? [ddl.dropDefault(t, K), ddl.setDefault(t, Z, col.default)] : []),
          ...att.indexes.map((ix) => (ix.constraint ? dropConstraint(t, ix.constraint.name) : renameIndex(t.schema, ix.name, tw(ix.name)))),
          ...renameBackPartitions(t, att, tw, s.info.partitioning),
          ...att.constraints.map((c) => renameConstraint(t, c.name, tw(c.name))),
          ...(K !== D ? [renameColumn(t, K, D)] : []),
          ...(Z !== C ? [renameColumn(t, Z, C)] : []),
          ...renameObjects(t, att, rs, s.info.partitioning),
          ...forwardSync,
          ...dropArchive(archive, s.stateSchema),
        ]),
        ...renameIncoming(att, rs, 'rename-fk'),
        ...build(D, C, tw, nnD, 'keys', 'tw'),
      ],
      verify: { table: t, equal: [{ column: D, expression: upOfC }] },
    },
    undoExpand: {
      steps: [
        // A contract that failed while filling the archive left its trigger (and a partial archive) behind.
        lockStep('abandon-archive', `drop the archive trigger of ${label} and an unfinished archive, if a contract left them`, abandonArchiveFill(archive, s.stateSchema)),
        ...att.incoming.map((fk) =>
          lockStep(`drop-fk-${tableLabel(fk.table)}-${fk.name}`, `drop the copy of ${fk.name} of ${tableLabel(fk.table)}`, [dropConstraint(fk.table, tw(fk.name, fk.table))]),
        ),
        lockStep('drop-new-column', `drop the sync trigger and ${D} with what was built on it`, [
          lockTables([t]),
          ...dropSync,
          ddl.dropConstraintIfExists(t, nnD),
          ddl.dropColumnIfExists(t, D),
        ]),
      ],
    },
  };
}

function renameColumn(t: TableName, from: string, to: string) {
  return { text: `ALTER TABLE ${qualified(t)} RENAME COLUMN ${ident(from)} TO ${ident(to)}` };
}

/**
 * Built objects (named by `built`) take the original names; a unique index becomes its constraint again. On a
 * partitioned table each partition's index takes the name its original had too, so a swap and its undo give the
 * schema back exactly.
 */
function renameObjects(t: TableName, att: ColumnAttachments, built: (n: string, table?: TableName) => string, partitioning?: Partitioning): Statement[] {
  return [
    ...att.indexes.map((ix) => (ix.constraint ? constraintUsingIndex(t, ix, built(ix.name)) : renameIndex(t.schema, built(ix.name), ix.name))),
    ...(partitioning
      ? att.indexes.flatMap((ix) => {
          const original = attachedPartitionIndexes(partitioning, t, ix.name);
          return renamePartitionIndexes(partitioning, { schema: t.schema, name: ix.name }, (p) => partitionIndexName(built(ix.name), p.table), (p) => original.get(tableLabel(p.table)));
        })
      : []),
    ...att.constraints.map((c) => renameConstraint(t, built(c.name), c.name)),
  ];
}

/** The undo of renameObjects' partition renames: the live column's partition indexes go back to their built names. */
function renameBackPartitions(t: TableName, att: ColumnAttachments, built: (n: string, table?: TableName) => string, partitioning?: Partitioning): Statement[] {
  if (!partitioning) return [];
  return att.indexes.flatMap((ix) => {
    const original = attachedPartitionIndexes(partitioning, t, ix.name);
    // The live index was given its built name just before, in the same step (swap-back).
    return renamePartitionIndexes(partitioning, { schema: t.schema, name: built(ix.name) }, (p) => original.get(tableLabel(p.table)), (p) => partitionIndexName(built(ix.name), p.table));
  });
}

/**
 * What a column swap, drop or restore cannot yet carry on a partitioned table, refused before anything runs: a
 * primary key or unique constraint on the column (ADD CONSTRAINT … USING INDEX is refused on partitioned tables, and
 * the swap adopts per-partition constraints only for addUnique so far), a foreign key of the column before
 * PostgreSQL 18 (no NOT VALID there), and an index where a partition cannot have one (a foreign table).
 */
export function refuseOnPartitioned(what: string, info: TableInfo, columns: readonly string[], att: ColumnAttachments): void {
  const p = info.partitioning;
  if (!p) return;
  const keyed = [{ table: info.table, columns: p.columns }, ...p.partitions.flatMap((x) => (x.key ? [{ table: x.table, columns: x.key.columns }] : []))].filter((k) =>
    columns.some((c) => k.columns.includes(c)),
  );
  const why = [
    ...keyed.map((k) => `its place in the partition key of ${tableLabel(k.table)} (${k.columns.join(', ')}): PostgreSQL cannot drop a partition key column, nor put another in its place`),
    ...att.indexes.flatMap((ix) => (ix.constraint ? [`the ${ix.constraint.kind === 'p' ? 'primary key' : 'unique constraint'} ${ix.constraint.name} (on partitioned tables PostgreSQL cannot make an index built partition by partition a constraint with USING INDEX)`] : [])),
    ...(p.serverVersion < FOREIGN_KEY_NOT_VALID_ON_PARTITIONED
      ? att.constraints.filter((c) => c.kind === 'f').map((c) => `the foreign key ${c.name} (PostgreSQL ${Math.floor(p.serverVersion / 10000)} cannot add one NOT VALID to a partitioned table; 18 can)`)
      : []),
    ...(att.indexes.length > 0 ? [partitionedIndexProblem(info.table, p, { unique: false, columns: null })].filter((x): x is string => x !== null) : []),
  ];
  if (why.length > 0) {
    refusePartitioned(
      info,
      what,
      `${columns.join(', ')} ${columns.length > 1 ? 'have' : 'has'} what cannot be carried over safely there: ${[...new Set(why)].join('; ')}`,
      keyed.length > 0
        ? 'A partition key column cannot be replaced in place: move the rows into a new table partitioned as you want it (sql()), or leave the column as it is.'
        : 'Drop it first (sql(), in an earlier migration) and build it again after the contract, or change the column with sql().',
    );
  }
}

/** Other tables' rebuilt foreign keys take the original names, each in a step that locks only its own table. */
function renameIncoming(att: ColumnAttachments, built: (n: string, table?: TableName) => string, prefix: string): Step[] {
  return att.incoming.map((fk) =>
    lockStep(`${prefix}-${tableLabel(fk.table)}-${fk.name}`, `give ${fk.name} of ${tableLabel(fk.table)} its name back`, [renameConstraint(fk.table, built(fk.name, fk.table), fk.name)]),
  );
}

/**
 * Steps that build on `target` what the snapshot's column has: its NOT NULL as a validated CHECK, CHECK and
 * foreign-key constraints (NOT VALID, then VALIDATE if the original was validated), indexes CONCURRENTLY, other
 * tables' foreign keys; then one check through the catalog that each object uses the same columns as its original
 * (which references `liveFrom` now). `only: 'keys'` builds the unique indexes and referencing foreign keys alone.
 */
function buildObjects(
  s: ReplacementSpec,
  att: ColumnAttachments,
  o: {
    readonly target: string;
    readonly liveFrom: string;
    readonly name: (n: string, table?: TableName) => string;
    readonly nn: string;
    readonly only: 'all' | 'keys';
    readonly prefix: string;
    readonly notNull: boolean;
  },
): Step[] {
  const { t, col } = s;
  const C = col.name;
  const steps: Step[] = [];
  const p = o.prefix;
  if (o.notNull && col.notNull) {
    steps.push(lockStep(`${p}-nn-add`, `add CHECK (${o.target} IS NOT NULL) NOT VALID`, [ddl.addNotNullCheck(t, o.nn, o.target)]));
    steps.push(lockStep(`${p}-nn-validate`, `validate CHECK (${o.target} IS NOT NULL)`, [ddl.validateConstraint(t, o.nn)]));
  }
  const constraints = o.only === 'all' ? att.constraints : [];
  for (const c of constraints) {
    const def = c.kind === 'c' ? rewriteCheck(c.definition, C, o.target) : rewriteOutgoingForeignKey(c.definition, C, o.target);
    steps.push(lockStep(`${p}-con-${c.name}-add`, `add ${c.name} on ${o.target} NOT VALID`, [addConstraintNotValid(t, o.name(c.name), def)]));
    if (c.validated) steps.push(lockStep(`${p}-con-${c.name}-validate`, `validate ${c.name} on ${o.target}`, [ddl.validateConstraint(t, o.name(c.name))]));
  }
  const indexes = att.indexes.filter((ix) => o.only === 'all' || ix.constraint !== null);
  for (const ix of indexes) {
    const name = o.name(ix.name);
    if (s.info.partitioning) {
      const shape = indexShape(rewriteIndexDefinition(ix.definition, C, o.target, name));
      steps.push(...partitionedIndexSteps({ table: t, partitioning: s.info.partitioning, name, shape, idPrefix: `${p}-index-${ix.name}:` }).build);
      continue;
    }
    steps.push({
      id: `${p}-index-${ix.name}`,
      description: `build ${ix.name} on ${o.target} concurrently`,
      statements: [{ text: rewriteIndexDefinition(ix.definition, C, o.target, name) }],
      transactional: false,
      concurrentIndex: { schema: t.schema, name },
    });
  }
  for (const fk of att.incoming) {
    const name = o.name(fk.name, fk.table);
    steps.push(
      lockStep(`${p}-fk-${tableLabel(fk.table)}-${fk.name}-add`, `add ${fk.name} of ${tableLabel(fk.table)} referencing ${o.target} NOT VALID`, [
        addConstraintNotValid(fk.table, name, rewriteIncomingForeignKey(fk.definition, C, o.target)),
      ]),
    );
    if (fk.validated) steps.push(lockStep(`${p}-fk-${tableLabel(fk.table)}-${fk.name}-validate`, `validate ${fk.name} of ${tableLabel(fk.table)}`, [ddl.validateConstraint(fk.table, name)]));
  }
  const pairs = {
    // Until the first swap an index has its own name; after it, the name of the constraint it was attached to.
    indexes: indexes.map((ix) => [o.prefix === 'tw' && o.only === 'all' ? ix.name : (ix.constraint?.name ?? ix.name), o.name(ix.name)] as const),
    constraints: [...constraints.map((c) => [t, c.name, o.name(c.name)] as const), ...att.incoming.map((fk) => [fk.table, fk.name, o.name(fk.name, fk.table)] as const)],
  };
  if (pairs.indexes.length + pairs.constraints.length > 0) {
    steps.push(lockStep(`${p}-check-objects`, `check that what was built on ${o.target} uses the same columns as the originals`, [checkTwinsStatement(t, o.liveFrom, o.target, pairs)]));
  }
  return steps;
}

/**
 * Steps that put back what was attached to a dropped column, by its original definitions and names, once the column
 * is back and filled: NOT NULL (through a validated CHECK), CHECK and foreign-key constraints (NOT VALID, then
 * VALIDATE if they were), indexes CONCURRENTLY, and a unique index promoted to its constraint.
 */
export function rebuildOriginals(t: TableName, cols: readonly ColumnInfo[], atts: readonly ColumnAttachments[], prefix: string, partitioning?: Partitioning): Step[] {
  const steps: Step[] = [];
  for (const col of cols) {
    if (!col.notNull) continue;
    const nn = objectName('zd_nn', t.name, col.name);
    steps.push(lockStep(`${prefix}-nn-add-${col.name}`, `add CHECK (${col.name} IS NOT NULL) NOT VALID`, [ddl.addNotNullCheck(t, nn, col.name)]));
    steps.push(lockStep(`${prefix}-nn-validate-${col.name}`, `validate CHECK (${col.name} IS NOT NULL)`, [ddl.validateConstraint(t, nn)]));
    steps.push(lockStep(`${prefix}-nn-set-${col.name}`, `set ${col.name} NOT NULL`, [ddl.setNotNull(t, col.name), ddl.dropConstraintIfExists(t, nn)]));
  }
  const seen = new Set<string>();
  const once = <X extends { name: string }>(xs: readonly X[]) => xs.filter((x) => !seen.has(x.name) && seen.add(x.name));
  for (const c of once(atts.flatMap((a) => a.constraints))) {
    steps.push(lockStep(`${prefix}-con-${c.name}-add`, `add ${c.name} NOT VALID`, [addConstraintNotValid(t, c.name, c.definition)]));
    if (c.validated) steps.push(lockStep(`${prefix}-con-${c.name}-validate`, `validate ${c.name}`, [ddl.validateConstraint(t, c.name)]));
  }
  for (const ix of once(atts.flatMap((a) => a.indexes))) {
    if (partitioning && !ix.constraint) {
      // refuseOnPartitioned has refused the constraints' indexes; each partition's index gets its original name back.
      const original = attachedPartitionIndexes(partitioning, t, ix.name);
      steps.push(
        ...partitionedIndexSteps({ table: t, partitioning, name: ix.name, shape: indexShape(ix.definition), nameFor: (p) => original.get(tableLabel(p.table)) ?? partitionIndexName(ix.name, p.table), idPrefix: `${prefix}-index-${ix.name}:` }).build,
      );
      continue;
    }
    const name = ix.constraint ? objectName('zd_rs', t.name, ix.name) : ix.name;
    steps.push({
      id: `${prefix}-index-${ix.name}`,
      description: `build ${ix.name} concurrently`,
      statements: [{ text: rewriteIndexDefinition(ix.definition, null, '', name) }],
      transactional: false,
      concurrentIndex: { schema: t.schema, name },
    });
    if (ix.constraint) steps.push(lockStep(`${prefix}-index-${ix.name}-constraint`, `make ${ix.name} the ${ix.constraint.name} constraint`, [constraintUsingIndex(t, ix, name)]));
  }
  return steps;
}

import { dottedName, loadSqlParser, obj, parseSqlSync, rangeVar, str, type Json } from './sql-ast.js';

export { loadSqlParser };

/**
 * The table locks a statement requests, read from PostgreSQL's own grammar (libpg-query: the server's parser
 * compiled to WebAssembly) and the lock table of the PostgreSQL documentation ("Explicit Locking" and each ALTER
 * TABLE form's notes). The plan measures locks in pg_locks, but a lock its transaction already holds from an earlier
 * step shows there as nothing new; this says what the statement takes when it runs in a transaction of its own.
 */
export type LockMode =
  | 'AccessShareLock'
  | 'RowShareLock'
  | 'RowExclusiveLock'
  | 'ShareUpdateExclusiveLock'
  | 'ShareLock'
  | 'ShareRowExclusiveLock'
  | 'ExclusiveLock'
  | 'AccessExclusiveLock';

export const LOCK_MODES: readonly LockMode[] = [
  'AccessShareLock',
  'RowShareLock',
  'RowExclusiveLock',
  'ShareUpdateExclusiveLock',
  'ShareLock',
  'ShareRowExclusiveLock',
  'ExclusiveLock',
  'AccessExclusiveLock',
];

export interface RequestedLock {
  /** `schema.name` as written (schema omitted when the statement omits it). */
  readonly relation: string;
  readonly mode: LockMode;
  /** The statement form that takes it, e.g. `ALTER TABLE … SET NOT NULL`. */
  readonly form: string;
}

const stronger = (a: LockMode, b: LockMode): LockMode => (LOCK_MODES.indexOf(a) >= LOCK_MODES.indexOf(b) ? a : b);

/** ALTER TABLE subcommands and the lock each takes; any other subcommand takes ACCESS EXCLUSIVE. */
const ALTER_TABLE: Readonly<Record<string, readonly [LockMode, string]>> = {
  AT_ValidateConstraint: ['ShareUpdateExclusiveLock', 'VALIDATE CONSTRAINT'],
  AT_SetStatistics: ['ShareUpdateExclusiveLock', 'SET STATISTICS'],
  AT_SetOptions: ['ShareUpdateExclusiveLock', 'ALTER COLUMN … SET (…)'],
  AT_ResetOptions: ['ShareUpdateExclusiveLock', 'ALTER COLUMN … RESET (…)'],
  AT_SetRelOptions: ['ShareUpdateExclusiveLock', 'SET (storage parameter)'],
  AT_ResetRelOptions: ['ShareUpdateExclusiveLock', 'RESET (storage parameter)'],
  AT_ClusterOn: ['ShareUpdateExclusiveLock', 'CLUSTER ON'],
  AT_DropCluster: ['ShareUpdateExclusiveLock', 'SET WITHOUT CLUSTER'],
  AT_AttachPartition: ['ShareUpdateExclusiveLock', 'ATTACH PARTITION'],
  AT_EnableTrig: ['ShareRowExclusiveLock', 'ENABLE TRIGGER'],
  AT_EnableAlwaysTrig: ['ShareRowExclusiveLock', 'ENABLE ALWAYS TRIGGER'],
  AT_EnableReplicaTrig: ['ShareRowExclusiveLock', 'ENABLE REPLICA TRIGGER'],
  AT_DisableTrig: ['ShareRowExclusiveLock', 'DISABLE TRIGGER'],
  AT_EnableTrigAll: ['ShareRowExclusiveLock', 'ENABLE TRIGGER ALL'],
  AT_DisableTrigAll: ['ShareRowExclusiveLock', 'DISABLE TRIGGER ALL'],
  AT_EnableTrigUser: ['ShareRowExclusiveLock', 'ENABLE TRIGGER USER'],
  AT_DisableTrigUser: ['ShareRowExclusiveLock', 'DISABLE TRIGGER USER'],
  AT_SetNotNull: ['AccessExclusiveLock', 'SET NOT NULL'],
  AT_DropNotNull: ['AccessExclusiveLock', 'DROP NOT NULL'],
  AT_AddColumn: ['AccessExclusiveLock', 'ADD COLUMN'],
  AT_DropColumn: ['AccessExclusiveLock', 'DROP COLUMN'],
  AT_AlterColumnType: ['AccessExclusiveLock', 'ALTER COLUMN … TYPE'],
  AT_ColumnDefault: ['AccessExclusiveLock', 'SET/DROP DEFAULT'],
  AT_DropConstraint: ['AccessExclusiveLock', 'DROP CONSTRAINT'],
};

/** The locks one parsed statement requests, strongest first per relation. */
function statementLocks(stmt: Json): RequestedLock[] {
  const [kind, raw] = Object.entries(stmt)[0] ?? ['', {}];
  const s = obj(raw);
  switch (kind) {
    case 'AlterTableStmt': {
      const table = rangeVar(s.relation);
      const cmds = ((s.cmds as unknown[] | undefined) ?? []).map((c) => obj(obj(c).AlterTableCmd));
      if (str(s.objtype) === 'OBJECT_INDEX' && cmds.length === 1 && str(cmds[0]!.subtype) === 'AT_AttachPartition') {
        // ALTER INDEX … ATTACH PARTITION: measured on PostgreSQL 15, the partition's index is locked ACCESS EXCLUSIVE
        // (queries planning on that partition wait for the catalog update), the parent index SHARE UPDATE EXCLUSIVE.
        return [
          { relation: rangeVar(obj(obj(cmds[0]!.def).PartitionCmd).name), mode: 'AccessExclusiveLock', form: "ALTER INDEX … ATTACH PARTITION (the partition's index)" },
          { relation: table, mode: 'ShareUpdateExclusiveLock', form: 'ALTER INDEX … ATTACH PARTITION (the parent index)' },
        ];
      }
      const out: RequestedLock[] = [];
      let mode: LockMode = 'AccessShareLock';
      const forms: string[] = [];
      for (const c of (s.cmds as unknown[] | undefined) ?? []) {
        const cmd = obj(obj(c).AlterTableCmd);
        const subtype = str(cmd.subtype);
        let entry = ALTER_TABLE[subtype] ?? (['AccessExclusiveLock', subtype.replace(/^AT_/, '')] as const);
        const con = obj(obj(cmd.def).Constraint);
        if (subtype === 'AT_AddConstraint') {
          if (str(con.contype) === 'CONSTR_FOREIGN') {
            entry = ['ShareRowExclusiveLock', `ADD FOREIGN KEY${con.skip_validation ? ' … NOT VALID' : ''}`];
            out.push({ relation: rangeVar(con.pktable), mode: 'ShareRowExclusiveLock', form: 'ADD FOREIGN KEY (the referenced table)' });
          } else {
            entry = ['AccessExclusiveLock', `ADD ${str(con.contype).replace(/^CONSTR_/, '')}${con.skip_validation ? ' … NOT VALID' : ''}`];
          }
        }
        if (subtype === 'AT_DetachPartition' && obj(obj(cmd.def).PartitionCmd).concurrent) entry = ['ShareUpdateExclusiveLock', 'DETACH PARTITION … CONCURRENTLY'];
        mode = stronger(mode, entry[0]);
        forms.push(entry[1]);
      }
      return [{ relation: table, mode, form: `ALTER TABLE … ${forms.join(', ')}` }, ...out];
    }
    case 'RenameStmt':
      // ALTER INDEX … RENAME takes SHARE UPDATE EXCLUSIVE since PostgreSQL 12; every other rename ACCESS EXCLUSIVE.
      return [{ relation: rangeVar(s.relation), mode: str(s.renameType) === 'OBJECT_INDEX' ? 'ShareUpdateExclusiveLock' : 'AccessExclusiveLock', form: `RENAME (${str(s.renameType).replace(/^OBJECT_/, '').toLowerCase()})` }];
    case 'AlterObjectSchemaStmt':
      return s.relation ? [{ relation: rangeVar(s.relation), mode: 'AccessExclusiveLock', form: 'SET SCHEMA' }] : [];
    case 'IndexStmt':
      return [{ relation: rangeVar(s.relation), mode: s.concurrent ? 'ShareUpdateExclusiveLock' : 'ShareLock', form: s.concurrent ? 'CREATE INDEX CONCURRENTLY' : 'CREATE INDEX' }];
    case 'CreateTrigStmt':
      return [{ relation: rangeVar(s.relation), mode: 'ShareRowExclusiveLock', form: 'CREATE TRIGGER' }];
    case 'DropStmt': {
      const type = str(s.removeType);
      const objects = (s.objects as unknown[] | undefined) ?? [];
      if (type === 'OBJECT_TABLE' || type === 'OBJECT_MATVIEW' || type === 'OBJECT_VIEW') return objects.map((o) => ({ relation: dottedName(o), mode: 'AccessExclusiveLock' as const, form: `DROP ${type.replace(/^OBJECT_/, '')}` }));
      if (type === 'OBJECT_INDEX') return objects.map((o) => ({ relation: dottedName(o), mode: s.concurrent ? ('ShareUpdateExclusiveLock' as const) : ('AccessExclusiveLock' as const), form: s.concurrent ? 'DROP INDEX CONCURRENTLY (on its table)' : 'DROP INDEX (on its table)' }));
      if (type === 'OBJECT_TRIGGER') {
        return objects.map((o) => ({ relation: dottedName(o).split('.').slice(0, -1).join('.'), mode: 'AccessExclusiveLock' as const, form: 'DROP TRIGGER' }));
      }
      return [];
    }
    case 'LockStmt': {
      const mode = LOCK_MODES[Number(s.mode) - 1] ?? 'AccessExclusiveLock';
      return ((s.relations as unknown[] | undefined) ?? []).map((r) => ({ relation: rangeVar(obj(r).RangeVar), mode, form: 'LOCK TABLE' }));
    }
    case 'TruncateStmt':
      return ((s.relations as unknown[] | undefined) ?? []).map((r) => ({ relation: rangeVar(obj(r).RangeVar), mode: 'AccessExclusiveLock' as const, form: 'TRUNCATE' }));
    case 'VacuumStmt': {
      const full = ((s.options as unknown[] | undefined) ?? []).some((o) => str(obj(obj(o).DefElem).defname) === 'full');
      if (!full) return [];
      return ((s.rels as unknown[] | undefined) ?? []).map((r) => ({ relation: rangeVar(obj(obj(r).VacuumRelation).relation), mode: 'AccessExclusiveLock' as const, form: 'VACUUM FULL' }));
    }
    case 'ClusterStmt':
      return s.relation ? [{ relation: rangeVar(s.relation), mode: 'AccessExclusiveLock', form: 'CLUSTER' }] : [];
    default:
      return [];
  }
}

/**
 * Every table lock the statements of `sql` request, from the parse tree. DML's ROW EXCLUSIVE and SELECT's ACCESS
 * SHARE are left out: they conflict only with the locks listed here. Throws the parser's error on invalid SQL.
 */
export async function requestedLocks(sql: string): Promise<RequestedLock[]> {
  await loadSqlParser();
  return requestedLocksSync(sql);
}

/** requestedLocks once loadSqlParser() has resolved. */
export function requestedLocksSync(sql: string): RequestedLock[] {
  return parseSqlSync(sql).flatMap((st) => statementLocks(st.node));
}

/** The locks one parsed statement (a node of parseSqlSync) requests. */
export function nodeLocks(node: Json): RequestedLock[] {
  return statementLocks(node);
}

/** The strongest of the locks, or null for none. */
export function strongestLock(locks: readonly RequestedLock[]): RequestedLock | null {
  return locks.reduce<RequestedLock | null>((best, l) => (!best || LOCK_MODES.indexOf(l.mode) > LOCK_MODES.indexOf(best.mode) ? l : best), null);
}

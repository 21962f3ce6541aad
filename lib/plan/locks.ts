import type { Connection } from '../db/db.js';
import { LOCK_MODES, type LockMode } from '../postgres/statement-locks.js';

/**
 * What one statement did to the relations it touched, as the server reports it inside the still-open transaction:
 * pg_locks for the locks this backend holds, pg_class.relfilenode for rewrites (a rewrite gives the table a new file),
 * pg_stat_xact_user_tables for scans and rows written by this transaction.
 */
export interface StatementEffects {
  /** Relation locks taken by this statement (modes this backend did not hold before it), strongest first. */
  readonly locks: readonly { readonly relation: string; readonly mode: string }[];
  /** Tables and materialized views given a new file (the whole table copied). */
  readonly rewrites: readonly string[];
  /** Tables read in full by a sequential scan, with the rows read. */
  readonly scans: readonly { readonly relation: string; readonly rows: number }[];
  /** Rows written, by table. */
  readonly writes: readonly { readonly relation: string; readonly rows: number }[];
}

export interface ServerState {
  readonly locks: ReadonlySet<string>;
  readonly files: ReadonlyMap<string, { relation: string; file: string; kind: string }>;
  readonly stats: ReadonlyMap<string, { relation: string; seqScan: number; seqRead: number; written: number }>;
}

/** `AccessExclusiveLock` → `ACCESS EXCLUSIVE`, the name the PostgreSQL documentation and LOCK TABLE use. */
export function lockName(mode: string): string {
  return mode
    .replace(/Lock$/, '')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toUpperCase();
}

/** What each lock mode blocks, in words, for the plan's readers. */
export function lockBlocks(mode: string): string {
  switch (mode) {
    case 'AccessExclusiveLock':
      return 'blocks reads and writes';
    case 'ExclusiveLock':
    case 'ShareRowExclusiveLock':
    case 'ShareLock':
      return 'blocks writes';
    case 'ShareUpdateExclusiveLock':
      return 'blocks other DDL and VACUUM, not reads or writes';
    case 'RowExclusiveLock':
      return 'normal write lock';
    default:
      return 'blocks only ACCESS EXCLUSIVE';
  }
}

const USER_RELATIONS = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'`;

export async function readServerState(conn: Connection): Promise<ServerState> {
  const locks = await conn.query<{ oid: string; mode: string }>(
    `SELECT l.relation::text AS oid, l.mode FROM pg_locks l
      WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted`,
  );
  const files = await conn.query<{ oid: string; relation: string; file: string; kind: string }>(
    `SELECT c.oid::text AS oid, n.nspname || '.' || c.relname AS relation, c.relfilenode::text AS file, c.relkind::text AS kind
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'm', 'p', 'v', 'f', 'S', 'i') AND ${USER_RELATIONS}`,
  );
  const stats = await conn.query<{ oid: string; relation: string; seq_scan: string; seq_read: string; written: string }>(
    `SELECT s.relid::text AS oid, s.schemaname || '.' || s.relname AS relation, s.seq_scan::text, coalesce(s.seq_tup_read, 0)::text AS seq_read,
            (s.n_tup_ins + s.n_tup_upd + s.n_tup_del)::text AS written
       FROM pg_stat_xact_user_tables s`,
  );
  return {
    locks: new Set(locks.rows.map((l) => `${l.oid}:${l.mode}`)),
    files: new Map(files.rows.map((f) => [f.oid, { relation: f.relation, file: f.file, kind: f.kind }])),
    stats: new Map(stats.rows.map((s) => [s.oid, { relation: s.relation, seqScan: Number(s.seq_scan), seqRead: Number(s.seq_read), written: Number(s.written) }])),
  };
}

/** The difference between the server state before and after one statement. */
export async function effectsSince(conn: Connection, before: ServerState): Promise<{ effects: StatementEffects; after: ServerState }> {
  const after = await readServerState(conn);
  const newLocks = [...after.locks].filter((l) => !before.locks.has(l)).map((l) => {
    const [oid, mode] = l.split(':') as [string, string];
    return { oid, mode };
  });
  // Names of relations this statement created are only in `after`; those of dropped ones only in `before`.
  const nameOf = (oid: string) => after.files.get(oid) ?? before.files.get(oid);
  const locks = newLocks
    .map((l) => ({ relation: nameOf(l.oid)?.relation, kind: nameOf(l.oid)?.kind, mode: l.mode }))
    .filter((l): l is { relation: string; kind: string; mode: string } => l.relation !== undefined && l.kind !== 'i')
    .sort((a, b) => LOCK_MODES.indexOf(b.mode as LockMode) - LOCK_MODES.indexOf(a.mode as LockMode) || a.relation.localeCompare(b.relation))
    .map((l) => ({ relation: l.relation, mode: l.mode }));
  const rewrites: string[] = [];
  for (const [oid, f] of after.files) {
    const b = before.files.get(oid);
    if (b && b.file !== f.file && (f.kind === 'r' || f.kind === 'm')) rewrites.push(f.relation);
  }
  const scans: { relation: string; rows: number }[] = [];
  const writes: { relation: string; rows: number }[] = [];
  for (const [oid, s] of after.stats) {
    const b = before.stats.get(oid);
    const scanDelta = s.seqScan - (b?.seqScan ?? 0);
    if (scanDelta > 0) scans.push({ relation: s.relation, rows: s.seqRead - (b?.seqRead ?? 0) });
    const writeDelta = s.written - (b?.written ?? 0);
    if (writeDelta > 0) writes.push({ relation: s.relation, rows: writeDelta });
  }
  return { effects: { locks, rewrites: rewrites.sort(), scans, writes }, after };
}

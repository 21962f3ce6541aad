import type { Db } from '../db/db.js';

/**
 * The server's wal_compression, the methods this build offers, whether this session may change it (a superuser's
 * may), and the server's version: from PostgreSQL 15 a role may also be granted SET on the parameter.
 */
const WAL_COMPRESSION_SQL = `SELECT current_setting('wal_compression') AS current,
  (SELECT enumvals FROM pg_settings WHERE name = 'wal_compression') AS methods,
  (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS may_set,
  (SELECT count(*)::int FROM pg_stat_replication) AS standbys,
  current_setting('server_version_num')::int AS version`;
/** PostgreSQL 15+ only (the function is new there): `GRANT SET ON PARAMETER wal_compression TO …`. */
const GRANTED_SET_SQL = `SELECT has_parameter_privilege('wal_compression', 'SET') AS ok`;

/**
 * What a backfill's batches set wal_compression to for their own transactions, or null to leave the server's.
 *
 * A batch rewrites every row of its pages, and the first change to a page after a checkpoint logs the whole page:
 * on the peer benchmark's 1M-row table one UPDATE of every row wrote 479 MB of WAL with compression off and 369 MB
 * with lz4, in 5 % less time. Less WAL is also shorter flushes for the application's commits, which wait on them.
 * Only where the server has compression off (a setting of the operator's own is left alone) and the session may
 * set it (a superuser, or a role granted SET on it). lz4 where the build has it and no standby is attached (the same
 * table: 455 MB, 4 % faster than none); pglz, which every build replays, while one is (451 MB, 5 % slower than
 * none): a standby built without lz4 could not replay an lz4 page image, and stops.
 */
export async function batchWalCompression(db: Db): Promise<string | null> {
  if (db.isEmbedded) return null;
  try {
    const r = await db.query<{ current: string; methods: string[] | null; may_set: boolean | null; standbys: number; version: number }>(WAL_COMPRESSION_SQL);
    const row = r.rows[0];
    if (!row || row.current !== 'off') return null;
    const maySet = row.may_set || (row.version >= 150000 && (await db.query<{ ok: boolean }>(GRANTED_SET_SQL)).rows[0]?.ok === true);
    if (!maySet) return null;
    if (row.methods?.includes('lz4') && row.standbys === 0) return 'lz4';
    return row.methods?.includes('pglz') ? 'pglz' : row.methods?.includes('on') ? 'on' : null;
  } catch {
    return null; // no such setting (before PostgreSQL 9.5) or no view of pg_settings: leave it
  }
}

import type { Db } from '../db/db.js';
import { ident } from './identifiers.js';

// pg_stat_statements as the gates (ops/queries.ts) and the monitor's relative triggers (monitor/relative.ts) read
// it: whether it is there, where its view lives, and which of its statements are ours.

/** The marker a statement's text may carry to be left out (an admin script's, a monitor's). */
export const OWN_STATEMENT_MARKER = 'umzug-zero-downtime';

export const PGSS_HOWTO = "add it to shared_preload_libraries (postgresql.conf; restart) and run CREATE EXTENSION pg_stat_statements in this database";

export type Pgss = { readonly ok: true; readonly view: string; readonly toplevel: boolean; readonly info: string | null } | { readonly ok: false; readonly problem: string };

/** Whether pg_stat_statements can be read in this database, and where its view lives. */
export async function pgStatStatements(db: Db): Promise<Pgss> {
  const ext = await db.query<{ schema: string; version: number }>(
    `SELECT n.nspname AS schema, current_setting('server_version_num')::int AS version
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'`,
  );
  const row = ext.rows[0];
  if (!row) {
    const lib = await db.query<{ loaded: boolean }>(`SELECT current_setting('shared_preload_libraries') ~ 'pg_stat_statements' AS loaded`);
    return {
      ok: false,
      problem: lib.rows[0]?.loaded
        ? 'pg_stat_statements is loaded but not installed in this database — run CREATE EXTENSION pg_stat_statements'
        : `pg_stat_statements is not installed — ${PGSS_HOWTO}`,
    };
  }
  const view = `${ident(row.schema)}.pg_stat_statements`;
  try {
    await db.query(`SELECT 1 FROM ${view} LIMIT 1`);
  } catch (e) {
    return { ok: false, problem: `pg_stat_statements cannot be read (${(e as Error).message}) — ${PGSS_HOWTO}` };
  }
  return { ok: true, view, toplevel: row.version >= 140000, info: row.version >= 140000 ? `${ident(row.schema)}.pg_stat_statements_info` : null };
}

/** A statement that is ours by shape: a `_zd_` name (the backfill's and verify's CTEs and aliases) or the marker. */
export function isOwnStatement(query: string): boolean {
  return query.includes(OWN_STATEMENT_MARKER) || /(^|[^a-z0-9_$])"?_zd_[a-z0-9_]/i.test(query);
}

/** The database's own statements (top level), in the view. */
export const ownDb = (pgss: Extract<Pgss, { ok: true }>) =>
  `s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.queryid IS NOT NULL${pgss.toplevel ? ' AND s.toplevel' : ''}`;


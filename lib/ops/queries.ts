import type { Db } from '../db/db.js';
import { removedLabel, type RemovedStructure } from '../changes/removed.js';
import { formatDuration } from '../db/duration.js';
import { ident } from '../postgres/identifiers.js';
import { ownDb, pgStatStatements, type Pgss } from '../postgres/stat-statements.js';
import { loadSqlParser } from '../postgres/sql-ast.js';
import { classifyStatement } from '../postgres/statement-kind.js';
import { sqlRefs } from '../refs/sql-refs.js';
import type { MigrationEntry, Project } from './project.js';

/**
 * Who still runs statements on what a pending contract removes, seen from the database: pg_stat_statements.
 *
 * pg_stat_statements keeps cumulative counters per (queryid, dbid, userid, toplevel) and no timestamps, so "since the
 * cutover" and "last seen" are differences against snapshots kept in the state schema (state-layout.ts, version 3):
 * - the **baseline**: every statement's `calls` when the expand finished (taken by `up` right after it; or at the
 *   first look after it, for an expand an older release ran), taken again when a read flag of the contract's changes
 *   reaches 100 % after it (the old application is meant to read the old column until then);
 * - each look (a gate evaluation: `up`, `status`, `plan`) compares the calls with the baseline and with the previous
 *   look: a statement whose calls moved and whose normalized text references a removed column or table (PostgreSQL's
 *   parser, `sqlRefs`: `SELECT *` from the table counts) is a user; its `last seen` is the time of the look that saw
 *   its calls move (an upper bound: the statement ran between that look and the one before it).
 * The gate stays closed while a user was last seen within the safety window (contract.after).
 *
 * Not users: statements that are not top level (`toplevel = false`: the sync triggers' bodies, with
 * pg_stat_statements.track = all), and what classifyStatement (postgres/statement-kind.ts, shared with the monitor's
 * relative triggers) does not call the application's data statements: ours by shape (the backfill's and verify's
 * statements name their CTEs and aliases `_zd_…`; the monitor's canary is wrapped in a `_zd_canary` CTE, and a CTE's
 * name is part of the queryid, so an application statement never shares their entry; the marker comment
 * `umzug-zero-downtime`; the state schema's), DDL and other utility statements, catalog lookups. A statement of
 * ours left unwrapped that has an application's shape (the backfill engine's own canary, `SELECT * FROM t WHERE id =
 * $1`, and its batch UPDATE, when a repair runs after the cutover) shares the entry and is counted with it.
 */

export interface QueryUse {
  /** pg_stat_statements' queryid (a bigint, as text). */
  readonly queryid: string;
  /** The role that ran it (null when the role is gone). */
  readonly role: string | null;
  /** The normalized text (constants as $1, $2 …), as pg_stat_statements first saw it. */
  readonly query: string;
  /** What it references of what the contract removes: `users.name`. */
  readonly removed: readonly string[];
  readonly callsSinceCutover: number;
  /** The first look that saw its calls move past the baseline. */
  readonly firstSeenAt: string;
  /** The latest look that saw its calls move (it ran between that look and the one before). */
  readonly lastSeenAt: string;
  /** Seen within the safety window: it keeps the gate closed (when the check is on). */
  readonly withinWindow: boolean;
}

/** `status --json` → migrations[].queries, `plan --json` → phases[].queries. */
export interface QueryUsersReport {
  /** pg_stat_statements could be read. */
  readonly available: boolean;
  /** Whether these users close the gate (contract.requireNoQueries true, or 'auto' with pg_stat_statements). */
  readonly enforced: boolean;
  /** What is watched: `users.name`. */
  readonly removed: readonly string[];
  /** When the baseline was taken (the cutover: the expand's end, or a read flag at 100 %). */
  readonly since: string | null;
  readonly cutover: string | null;
  readonly statements: readonly QueryUse[];
  /**
   * Entries of other roles in this database that this role cannot read (`<insufficient privilege>`, no queryid):
   * whether any of them uses what is removed cannot be told. Absent when there are none.
   */
  readonly hidden?: number;
  /** Why nothing can be seen, and how to enable it; or what is only partly seen. */
  readonly note?: string;
}

/**
 * What of `removed` a normalized statement text references (PostgreSQL's parser, via sqlRefs), or null when it is
 * not an application's data statement (classifyStatement) or cannot be parsed. Needs loadSqlParser().
 */
export function statementUses(query: string, removed: readonly RemovedStructure[], opts: { readonly stateSchema?: string } = {}): RemovedStructure[] | null {
  // Statements on data only: DDL is not the application's (`plan` runs the contract's own ALTER / DROP in a
  // rolled-back transaction, and pg_stat_statements tracks utility statements too).
  if (classifyStatement(query, opts) !== 'data') return null;
  let refs;
  try {
    refs = sqlRefs(query, removed);
  } catch {
    return null;
  }
  const out = new Map<string, RemovedStructure>();
  for (const r of refs) out.set(`${r.removed.schema}.${r.removed.table}.${r.removed.column ?? ''}`, r.removed);
  return [...out.values()];
}

const t = (project: Project, name: string) => `${ident(project.config.stateSchema)}.${ident(name)}`;

async function statsReset(db: Db, pgss: Extract<Pgss, { ok: true }>): Promise<Date | null> {
  if (!pgss.info) return null;
  const r = await db.query<{ at: Date | null }>(`SELECT stats_reset AS at FROM ${pgss.info}`);
  return r.rows[0]?.at ?? null;
}

/**
 * How long a project trusts what it found out about pg_stat_statements: a command (`status` over ten contracts, `up`
 * evaluating their gates) asks the catalog once, while a process that lives for hours still sees an extension
 * installed (or dropped) meanwhile.
 */
const DETECTED_FOR_MS = 60_000;
const detected = new WeakMap<Project, { readonly at: number; readonly pgss: Promise<Pgss> }>();

/** Whether pg_stat_statements can be read, found out once per command (see DETECTED_FOR_MS). */
export function detectStatStatements(project: Project, now = Date.now()): Promise<Pgss> {
  const hit = detected.get(project);
  if (hit && now - hit.at < DETECTED_FOR_MS && now >= hit.at) return hit.pgss;
  const pgss = pgStatStatements(project.db);
  const entry = { at: now, pgss };
  detected.set(project, entry);
  // A failed detection (a dropped connection) is not an answer to keep.
  pgss.catch(() => {
    if (detected.get(project) === entry) detected.delete(project);
  });
  return pgss;
}

/**
 * Takes the baseline of `expandName` (every statement's calls now), replacing an older one. `up` calls it when the
 * expand finishes; nothing happens where pg_stat_statements cannot be read.
 */
export async function takeQueryBaseline(project: Project, expandName: string, cutover = 'expand finished', now = new Date()): Promise<boolean> {
  if (project.config.requireNoQueries === false) return false;
  const pgss = await detectStatStatements(project);
  if (!pgss.ok) return false;
  await project.engine.state.ensure();
  const reset = await statsReset(project.db, pgss);
  await project.db.transaction(async (c) => {
    await c.query(`DELETE FROM ${t(project, 'query_calls')} WHERE migration = $1`, [expandName]);
    await c.query(
      `INSERT INTO ${t(project, 'query_baselines')} (migration, taken_at, stats_reset, cutover) VALUES ($1, $2, $3, $4)
       ON CONFLICT (migration) DO UPDATE SET taken_at = EXCLUDED.taken_at, stats_reset = EXCLUDED.stats_reset, cutover = EXCLUDED.cutover`,
      [expandName, now, reset, cutover],
    );
    await c.query(
      `INSERT INTO ${t(project, 'query_calls')} (migration, dbid, userid, queryid, baseline_calls, seen_calls)
       SELECT $1, s.dbid, s.userid, s.queryid, sum(s.calls), sum(s.calls) FROM ${pgss.view} s WHERE ${ownDb(pgss)}
       GROUP BY s.dbid, s.userid, s.queryid`,
      [expandName],
    );
  });
  return true;
}

/** The read flags of the contract's changes, from the catalog each expand stored. */
async function readFlags(project: Project, expandName: string, entry: MigrationEntry): Promise<string[]> {
  const out: string[] = [];
  for (const [i, change] of entry.changes.entries()) {
    const st = await project.engine.state.getChange(expandName, i);
    if (!st) continue;
    try {
      const flag = change.describe(st.snapshot, project.engine.ctx).readFlag;
      if (flag) out.push(flag);
    } catch {
      // described elsewhere (the gate reports it)
    }
  }
  return out;
}

const recent = new WeakMap<Project, Map<string, { at: number; report: QueryUsersReport | null }>>();

/**
 * Looks at pg_stat_statements for `entry` (a pending contract whose expand ran): records what moved, and returns the
 * statements that used what it removes since the cutover. null when the contract removes no column or table, or the
 * check is off. Two looks within a second share one reading (the gate's and status's).
 */
export async function queryUsers(project: Project, entry: MigrationEntry, now = new Date()): Promise<QueryUsersReport | null> {
  const mode = project.config.requireNoQueries;
  if (mode === false) return null;
  let cache = recent.get(project);
  if (!cache) recent.set(project, (cache = new Map()));
  const hit = cache.get(entry.name);
  if (hit && Math.abs(now.getTime() - hit.at) < 1000) return hit.report;
  let report: QueryUsersReport | null;
  try {
    report = await look(project, entry, now);
  } catch (e) {
    // The extension may have been dropped since it was detected: the next look finds out afresh.
    detected.delete(project);
    throw e;
  }
  cache.set(entry.name, { at: now.getTime(), report });
  return report;
}

async function look(project: Project, entry: MigrationEntry, now: Date): Promise<QueryUsersReport | null> {
  const mode = project.config.requireNoQueries;
  const expandName = entry.name.replace(/:contract$/, ':expand');
  await loadSqlParser();
  // refs.ts (and its source scanner) only where a contract is looked at.
  const { pendingRemovals } = await import('./refs.js');
  const removed = (await pendingRemovals(project, [entry])).flatMap((r) => r.removed);
  if (removed.length === 0) return null;
  const labels = [...new Set(removed.map((r) => removedLabel(r, project.config.schema)))];
  const pgss = await detectStatStatements(project);
  if (!pgss.ok) {
    return {
      available: false,
      enforced: mode === true,
      removed: labels,
      since: null,
      cutover: null,
      statements: [],
      note: `cannot see who still uses ${labels.join(', ')}: ${pgss.problem}`,
    };
  }
  await project.engine.state.ensure();
  const db = project.db;
  const baselines = t(project, 'query_baselines');
  const calls = t(project, 'query_calls');
  const readBaseline = async () =>
    (await db.query<{ taken_at: Date; stats_reset: Date | null; cutover: string }>(`SELECT taken_at, stats_reset, cutover FROM ${baselines} WHERE migration = $1`, [expandName])).rows[0];
  let base = await readBaseline();
  // The cutover: the expand's end, or the moment the last of the contract's read flags reached 100 %.
  let cutover: { at: Date; label: string } | null = null;
  for (const flag of await readFlags(project, expandName, entry)) {
    const f = await project.flags.get(flag);
    if (f?.percent === 100 && f.fullSince && (!cutover || f.fullSince > cutover.at)) cutover = { at: f.fullSince, label: `read flag "${flag}" at 100 %` };
  }
  if (!base || (cutover && base.taken_at < cutover.at)) {
    await takeQueryBaseline(project, expandName, cutover?.label ?? 'expand finished', now);
    base = await readBaseline();
  }
  // pg_stat_statements_reset(): every counter restarted at 0, after our baseline.
  const reset = await statsReset(db, pgss);
  if (base && reset && (!base.stats_reset || reset.getTime() !== base.stats_reset.getTime())) {
    await db.transaction(async (c) => {
      await c.query(`UPDATE ${calls} SET baseline_calls = 0, seen_calls = 0 WHERE migration = $1`, [expandName]);
      await c.query(`UPDATE ${baselines} SET stats_reset = $2 WHERE migration = $1`, [expandName, reset]);
    });
  }
  // Statements whose calls are past their baseline (or fell below what we saw: evicted and back, counting anew).
  const moved = await db.query<{
    dbid: string; userid: string; queryid: string; calls: string; query: string; role: string | null;
    baseline_calls: string | null; seen_calls: string | null; uses_removed: boolean | null;
  }>(
    `SELECT s.dbid::int8::text AS dbid, s.userid::int8::text AS userid, s.queryid::text AS queryid, s.calls::text AS calls, s.query,
            r.rolname AS role, c.baseline_calls::text AS baseline_calls, c.seen_calls::text AS seen_calls, c.uses_removed
       FROM (SELECT s.dbid, s.userid, s.queryid, sum(s.calls) AS calls, min(s.query) AS query FROM ${pgss.view} s WHERE ${ownDb(pgss)}
             GROUP BY s.dbid, s.userid, s.queryid) s
       LEFT JOIN ${calls} c ON c.migration = $1 AND c.dbid = s.dbid AND c.userid = s.userid AND c.queryid = s.queryid
       LEFT JOIN pg_roles r ON r.oid = s.userid
      WHERE s.calls > coalesce(c.baseline_calls, 0) OR s.calls < coalesce(c.seen_calls, 0)`,
    [expandName],
  );
  const own = { stateSchema: project.config.stateSchema };
  for (const m of moved.rows) {
    const uses = statementUses(m.query, removed, own);
    if (!uses || uses.length === 0) continue;
    const n = Number(m.calls);
    let baseline = Number(m.baseline_calls ?? 0);
    let seen = Number(m.seen_calls ?? 0);
    if (n < seen) baseline = seen = 0;
    if (n <= seen && m.uses_removed) continue;
    await db.query(
      `INSERT INTO ${calls} AS c (migration, dbid, userid, queryid, baseline_calls, seen_calls, uses_removed, first_seen_at, last_seen_at, query, role)
       VALUES ($1, $2::int8::oid, $3::int8::oid, $4::bigint, $5, $6, true, $7, $7, $8, $9)
       ON CONFLICT (migration, dbid, userid, queryid) DO UPDATE SET baseline_calls = EXCLUDED.baseline_calls, seen_calls = EXCLUDED.seen_calls,
         uses_removed = true, first_seen_at = coalesce(c.first_seen_at, EXCLUDED.first_seen_at),
         last_seen_at = CASE WHEN EXCLUDED.seen_calls > c.seen_calls OR NOT c.uses_removed OR c.last_seen_at IS NULL THEN EXCLUDED.last_seen_at ELSE c.last_seen_at END,
         query = EXCLUDED.query, role = EXCLUDED.role`,
      [expandName, m.dbid, m.userid, m.queryid, baseline, n, now, m.query, m.role],
    );
  }
  const windowMs = project.config.contractAfterMs;
  const users = await db.query<{ queryid: string; role: string | null; query: string; since: string; first_seen_at: Date; last_seen_at: Date }>(
    `SELECT queryid::text AS queryid, role, query, (seen_calls - baseline_calls)::text AS since, first_seen_at, last_seen_at
       FROM ${calls} WHERE migration = $1 AND uses_removed AND last_seen_at IS NOT NULL ORDER BY last_seen_at DESC, queryid`,
    [expandName],
  );
  const statements: QueryUse[] = users.rows.map((u) => ({
    queryid: u.queryid,
    role: u.role,
    query: u.query,
    removed: (statementUses(u.query, removed, own) ?? []).map((r) => removedLabel(r, project.config.schema)),
    callsSinceCutover: Number(u.since),
    firstSeenAt: u.first_seen_at.toISOString(),
    lastSeenAt: u.last_seen_at.toISOString(),
    withinWindow: u.last_seen_at.getTime() + windowMs > now.getTime(),
  }));
  // Another role's entries come without text and without a queryid to a role that lacks pg_read_all_stats: they
  // cannot be followed from look to look, only counted.
  const hiddenRows = await db.query<{ n: string; role: string }>(
    `SELECT count(*)::text AS n, current_user AS role FROM ${pgss.view} s
      WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.queryid IS NULL${pgss.toplevel ? ' AND s.toplevel' : ''}`,
  );
  const hidden = Number(hiddenRows.rows[0]?.n ?? 0);
  const notes: string[] = [];
  if (hidden > 0) {
    notes.push(
      `${hidden} statement${hidden === 1 ? '' : 's'} of other roles ${hidden === 1 ? 'is' : 'are'} hidden from role ${hiddenRows.rows[0]!.role} (<insufficient privilege>), ` +
        `so whether ${hidden === 1 ? 'it uses' : 'they use'} ${labels.join(', ')} cannot be seen: GRANT pg_read_all_stats TO ${ident(hiddenRows.rows[0]!.role)} to see them`,
    );
  }
  return {
    available: true,
    enforced: true,
    removed: labels,
    since: base?.taken_at.toISOString() ?? null,
    cutover: base?.cutover ?? null,
    statements,
    ...(hidden > 0 ? { hidden } : {}),
    ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
  };
}

/** A statement shortened for one line: whitespace collapsed, cut at `max` characters. */
export function shortQuery(query: string, max = 80): string {
  const one = query.replace(/\s+/g, ' ').trim();
  return one.length <= max ? one : `${one.slice(0, max - 1)}…`;
}

/**
 * contract.requireNoQueries: the reasons `entry` must wait (one per statement seen within the safety window), and
 * when the last of them stops counting. With `true` and no pg_stat_statements, a reason saying it cannot see; with
 * 'auto', nothing (status and plan carry the note).
 */
export async function queryGateReasons(project: Project, entry: MigrationEntry, now = new Date()): Promise<{ reasons: string[]; opensAt: Date | null }> {
  let report: QueryUsersReport | null;
  try {
    report = await queryUsers(project, entry, now);
  } catch (e) {
    if (project.config.requireNoQueries !== true) return { reasons: [], opensAt: null };
    return { reasons: [`pg_stat_statements could not be checked for statements on what this contract removes (contract.requireNoQueries): ${(e as Error).message}`], opensAt: null };
  }
  if (!report) return { reasons: [], opensAt: null };
  if (!report.available) return { reasons: report.enforced && report.note ? [`${report.note} (contract.requireNoQueries: true)`] : [], opensAt: null };
  const windowMs = project.config.contractAfterMs;
  let opensAt: Date | null = null;
  const reasons: string[] = [];
  // `true` closes the gate where it cannot see; statements it cannot read are a part it cannot see.
  if (project.config.requireNoQueries === true && (report.hidden ?? 0) > 0 && report.note) reasons.push(`${report.note} (contract.requireNoQueries: true)`);
  for (const s of report.statements.filter((x) => x.withinWindow)) {
    const until = new Date(new Date(s.lastSeenAt).getTime() + windowMs);
    if (!opensAt || until > opensAt) opensAt = until;
    reasons.push(
      `still used since the cutover (pg_stat_statements): ${s.removed.join(', ') || report.removed.join(', ')} by "${shortQuery(s.query)}"` +
        `${s.role ? ` (role ${s.role})` : ''}, ${s.callsSinceCutover} call${s.callsSinceCutover === 1 ? '' : 's'}, last seen ${s.lastSeenAt}; ` +
        `waits until it has not run for ${formatDuration(windowMs)} (until ${until.toISOString()} at the earliest)`,
    );
  }
  return { reasons, opensAt };
}

/** Text lines for `status` and `plan`: the note, then one line per statement. */
export function formatQueryUsers(report: QueryUsersReport, indent = '    '): string[] {
  const lines: string[] = [];
  if (report.note) lines.push(`${indent}${report.note}`);
  if (!report.available) return lines;
  if (report.statements.length === 0) {
    lines.push(`${indent}no statement used ${report.removed.join(', ')} since the cutover (${report.cutover ?? 'expand finished'}, ${report.since ?? '?'}; pg_stat_statements)`);
    return lines;
  }
  lines.push(`${indent}statements that used ${report.removed.join(', ')} since the cutover (${report.cutover ?? 'expand finished'}, ${report.since ?? '?'}; pg_stat_statements):`);
  for (const s of report.statements) {
    lines.push(`${indent}  ${s.withinWindow ? '!' : '-'} ${shortQuery(s.query)}  ${s.callsSinceCutover} calls, last seen ${s.lastSeenAt}${s.role ? `, role ${s.role}` : ''}${s.withinWindow ? '' : ' (window passed)'}`);
  }
  return lines;
}

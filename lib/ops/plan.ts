import type { Connection, SqlParam } from '../db/db.js';
import { setConfig, sqlState } from '../db/db.js';
import { checkPreconditions, type GateStatus } from '../runner.js';
import type { Change, PhasePlan, Step } from '../migration.js';
import { readCatalog, tableInfo, columnInfo, type CatalogSnapshot } from '../postgres/catalog.js';
import { ident, qualified, tableLabel } from '../postgres/identifiers.js';
import { keysetRangeUpdateSql, type KeyColumn } from '../postgres/batch-sql.js';
import { effectsSince, lockBlocks, lockName, readServerState, type StatementEffects } from '../plan/locks.js';
import { LOCK_MODES, requestedLocks, strongestLock, type LockMode, type RequestedLock } from '../postgres/statement-locks.js';
import type { MigrationEntry, Project } from './project.js';
import { formatQueryUsers, queryUsers, type QueryUsersReport } from './queries.js';

export interface PlannedStatement {
  readonly text: string;
  readonly values?: readonly SqlParam[];
  /** measured: run in the plan's transaction, effects read from the server; described: not run (see note); failed: run, and refused. */
  readonly run: 'measured' | 'described' | 'failed';
  readonly effects?: StatementEffects;
  /**
   * isolated: the step was also run alone on the current database (its own transaction, rolled back), so `effects.locks`
   * are exactly the locks it takes; after-earlier-steps: it could only run after the earlier pending steps, in the same
   * transaction, so a lock mode one of those already held on the same table is not shown again.
   */
  readonly lockSource?: 'isolated' | 'after-earlier-steps';
  /** For statements plan cannot run in a transaction: the lock the PostgreSQL documentation gives. */
  readonly documentedLock?: { readonly mode: string; readonly note: string };
  /**
   * The table locks the statement requests, from PostgreSQL's grammar (libpg-query) and the documentation's lock
   * table: what it takes in a transaction of its own, even where the plan's transaction already held the lock.
   */
  readonly requested?: readonly RequestedLock[];
  readonly error?: string;
}

export interface PlannedStep {
  readonly id: string;
  readonly description: string;
  readonly transactional: boolean;
  /** Recorded as done by an earlier, interrupted run: `up` skips it. */
  readonly done: boolean;
  readonly statements: readonly PlannedStatement[];
  /** Every lock the step holds until it commits (the union of its statements'). */
  readonly holds: readonly { readonly relation: string; readonly mode: string }[];
}

export interface PlannedChange {
  readonly index: number;
  readonly kind: string;
  readonly summary: string | null;
  /** Why this change cannot be planned (a failed precondition, bad input); `up` would stop here, having changed nothing. */
  readonly error?: string;
  readonly steps: readonly PlannedStep[];
  readonly backfill?: {
    readonly table: string;
    readonly estimatedRows: number | null;
    /** statistics: pg_class.reltuples from the last ANALYZE; planner: never analyzed, the planner's guess from the table's size. */
    readonly estimateSource: 'statistics' | 'planner' | 'none';
    readonly batchSize: number;
    readonly description: string;
    /** One batch, run on the first row only, to read its locks. */
    readonly sample: PlannedStatement | null;
  };
  readonly afterBackfill: readonly PlannedStep[];
  readonly verify?: { readonly table: string; readonly chunkSize: number; readonly description: string };
}

export interface PlannedPhase {
  readonly name: string;
  readonly file: string;
  readonly phase: MigrationEntry['phase'];
  /** For contracts: whether `up` would run it now, and if not, why. */
  readonly gate?: { readonly open: boolean; readonly reasons: readonly string[]; readonly opensAt: string | null };
  /** For contracts whose expand ran: the statements that used what it removes since the cutover (see status). */
  readonly queries?: QueryUsersReport;
  readonly note?: string;
  readonly changes: readonly PlannedChange[];
}

export interface PlanReport {
  readonly generatedAt: string;
  /** Always true: the statements ran in one transaction that was rolled back. */
  readonly rolledBack: boolean;
  readonly phases: readonly PlannedPhase[];
}

const SAVEPOINT = 'zd_plan_statement';

/**
 * Every statement the pending phases would run, in the order `up` runs them (pending expands and plain migrations,
 * then contracts), each run inside one transaction that is rolled back at the end, with what the server says it did:
 * the locks it took (pg_locks), whether it rewrote a table (new relfilenode) or scanned one (pg_stat_xact_user_tables).
 * Statements that cannot run in a transaction (CONCURRENTLY) are described, not run. Nothing is changed: the state
 * schema is not even created.
 */
export interface PlanOptions {
  /**
   * statement_timeout of each measured statement. The measured statements take their real locks until the plan's
   * transaction rolls back, so a scan or rewrite of a big table is cut short instead of blocking the table. Default 5 s.
   */
  readonly statementTimeoutMs?: number;
}

export async function buildPlan(umzug: Project, options: PlanOptions = {}): Promise<PlanReport> {
  const entries = await umzug.entries();
  // The state store's reads find nothing where its tables do not exist, so the plan creates none.
  const executed = new Set(await umzug.engine.state.executedNames());
  const pending = entries.filter((e) => !executed.has(e.name));
  const ordered = [...pending.filter((e) => e.phase !== 'contract'), ...pending.filter((e) => e.phase === 'contract')];
  const { engine } = umzug;
  const ctx = engine.ctx;

  // State is read first, through the pool: the simulation's connection is inside its own transaction.
  const stored = new Map<string, { snapshot: CatalogSnapshot; summary: string; done: Set<string> } | null>();
  const gates = new Map<string, GateStatus>();
  const queries = new Map<string, QueryUsersReport>();
  for (const e of ordered) {
    if (e.phase === 'plain') continue;
    const key = e.name.replace(/:(expand|contract)$/, ':expand');
    for (const i of e.changes.keys()) {
      const st = await engine.state.getChange(key, i);
      stored.set(`${e.name}#${i}`, st ? { snapshot: st.snapshot, summary: st.summary, done: await engine.state.doneSteps(key, i, e.phase === 'expand' ? 'expand' : 'contract') } : null);
    }
    if (e.phase === 'contract' && executed.has(key)) {
      gates.set(e.name, await umzug.gate(e));
      const q = await queryUsers(umzug, e).catch(() => null);
      if (q) queries.set(e.name, q);
    }
  }

  const lock = umzug.config.lock;
  const timeouts = (conn: Connection) => setConfig(conn, [['lock_timeout', `${lock.lockTimeoutMs}ms`], ['statement_timeout', `${options.statementTimeoutMs ?? 5000}ms`]], true);
  const probes: Probe[] = [];
  const report = await umzug.db.withConnection(async (conn) => {
    await conn.query('BEGIN');
    try {
      await timeouts(conn);
      // Some steps archive into the state schema; inside this transaction only.
      await conn.query(`CREATE SCHEMA IF NOT EXISTS ${ident(umzug.config.stateSchema)}`);
      const snapshots = new Map<string, CatalogSnapshot>();
      const phases: PlannedPhase[] = [];
      for (const e of ordered) {
        const file = e.name.replace(/:(expand|contract)$/, '');
        if (e.phase === 'plain') {
          phases.push(await planPlain(conn, e));
          continue;
        }
        const key = `${file}:expand`;
        const gate = gates.get(e.name);
        const changes: PlannedChange[] = [];
        for (const [i, change] of e.changes.entries()) {
          changes.push(await planChange(conn, umzug, e, i, change, stored.get(`${e.name}#${i}`) ?? null, snapshots, `${key}#${i}`, ctx, probes));
        }
        phases.push({
          name: e.name,
          file: e.file,
          phase: e.phase,
          ...(e.phase === 'contract'
            ? {
                gate: gate
                  ? { open: gate.open, reasons: gate.reasons, opensAt: gate.opensAt?.toISOString() ?? null }
                  : { open: false, reasons: ['its expand is pending: the contract runs at a later `up`, once the gate opens'], opensAt: null },
                ...(queries.has(e.name) ? { queries: queries.get(e.name)! } : {}),
              }
            : {}),
          changes,
        });
      }
      return { generatedAt: new Date().toISOString(), rolledBack: true, phases };
    } finally {
      await conn.query('ROLLBACK').catch(() => undefined);
    }
  });
  // Second pass: each step alone, in its own rolled-back transaction, so no earlier step's locks hide its own.
  await umzug.db.withConnection(async (conn) => {
    for (const probe of probes) {
      await conn.query('BEGIN');
      try {
        await timeouts(conn);
        const measured: PlannedStatement[] = [];
        for (const s of probe.step.statements) {
          const m = await measure(conn, s.text, s.values);
          if (m.run !== 'measured') break;
          measured.push(m);
        }
        if (measured.length === probe.statements.length) {
          probe.statements.forEach((st, i) => {
            st.effects = { ...st.effects!, locks: measured[i]!.effects!.locks };
            st.lockSource = 'isolated';
          });
        }
      } finally {
        await conn.query('ROLLBACK').catch(() => undefined);
      }
      probe.finish();
    }
  });
  return report;
}

/**
 * A plain migration in the plan: its statements as the lint recorder captures them (its up() against a Knex that
 * records instead of sending; no database), then each run in the plan's transaction like a typed step's, so the
 * locks, rewrites and scans are the server's. Where the recorder's empty answers differ from the database's, the
 * migration may send other statements when it runs; a statement that cannot run in a transaction is described.
 */
async function planPlain(conn: Connection, e: MigrationEntry): Promise<PlannedPhase> {
  const { captureMigration } = await import('../lint/capture.js');
  const captured = await captureMigration(e.file);
  const statements: PlannedStatement[] = [];
  for (const c of captured.statements) {
    if (/^(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|END)\b/i.test(c.sql)) continue;
    const requested = await requestedLocks(c.sql).catch(() => null);
    const strongest = requested && strongestLock(requested);
    if (/\bCONCURRENTLY\b/i.test(c.sql) || /^(VACUUM|REINDEX)\b/i.test(c.sql)) {
      statements.push({
        text: c.sql,
        run: 'described',
        ...(requested ? { requested } : {}),
        ...(strongest ? { documentedLock: { mode: strongest.mode, note: `${strongest.form} (line ${c.line}): the lock PostgreSQL documents for it; not run by plan (it cannot run inside a transaction)` } } : {}),
      });
      continue;
    }
    statements.push({ ...(await measure(conn, c.sql, c.values as SqlParam[] | undefined)), ...(requested ? { requested } : {}), lockSource: 'after-earlier-steps' });
  }
  const note = captured.error
    ? `plain migration: its up() threw against the recorder (${captured.error}); the statements before that point are shown`
    : 'plain migration: its statements as its up() sends them (captured without a database, then run in the plan\'s transaction); `umzug lint` checks them';
  const seen = new Set<string>();
  const holds = statements.flatMap((st) => st.effects?.locks ?? []).filter((l) => !seen.has(`${l.relation}:${l.mode}`) && seen.add(`${l.relation}:${l.mode}`));
  const step: PlannedStep = { id: 'up', description: 'the plain migration\'s up()', transactional: true, done: false, statements, holds };
  return { name: e.name, file: e.file, phase: 'plain', note, changes: [{ index: 0, kind: 'plain', summary: null, steps: [step], afterBackfill: [] }] };
}

/** A measured step waiting for its second, isolated run; `statements` are updated in place. */
interface Probe {
  readonly step: Step;
  readonly statements: Mutable<PlannedStatement>[];
  finish(): void;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

async function planChange(
  conn: Connection,
  umzug: Project,
  e: MigrationEntry,
  i: number,
  change: Change,
  st: { snapshot: CatalogSnapshot; summary: string; done: Set<string> } | null,
  snapshots: Map<string, CatalogSnapshot>,
  snapshotKey: string,
  ctx: Project['engine']['ctx'],
  probes: Probe[],
): Promise<PlannedChange> {
  const base = { index: i, kind: change.kind, steps: [] as PlannedStep[], afterBackfill: [] as PlannedStep[] };
  let snapshot = st?.snapshot ?? snapshots.get(snapshotKey);
  try {
    if (!snapshot) {
      // Read inside the transaction, so an earlier pending migration's simulated changes are seen.
      snapshot = await readCatalog(conn, change.tables(ctx));
      const problems = checkPreconditions(snapshot, change.preconditions(ctx));
      if (problems.length > 0) return { ...base, summary: null, error: `cannot run: ${problems.join('; ')}` };
      snapshots.set(snapshotKey, snapshot);
    }
    const description = change.describe(snapshot, ctx);
    const plan: PhasePlan = e.phase === 'expand' ? description.expand : description.contract;
    const done = st?.done ?? new Set<string>();
    const steps: PlannedStep[] = [];
    for (const step of plan.steps) steps.push(await planStep(conn, step, done.has(step.id), probes));
    let backfill: PlannedChange['backfill'];
    if (plan.backfill) {
      const spec = plan.backfill;
      const what = spec.copy
        ? `copies rows of ${tableLabel(spec.table)} into ${tableLabel(spec.copy.into)} in keyset batches (${spec.copy.mode})`
        : `UPDATE ${tableLabel(spec.table)} SET ${spec.set.map((s) => `${s.column} = ${s.expression}`).join(', ')} in keyset batches, only rows that differ`;
      const estimate = await rowEstimate(conn, spec.table);
      backfill = {
        table: tableLabel(spec.table),
        estimatedRows: estimate.rows,
        estimateSource: estimate.source,
        batchSize: umzug.config.backfill.batchSize,
        description: `${what}; each batch is its own short transaction (ROW EXCLUSIVE on the table, row locks on the batch's rows), progress saved with it`,
        sample: spec.copy ? null : await sampleBatch(conn, spec.table, spec.set, spec.only ?? 'distinct', snapshot),
      };
    }
    const afterBackfill: PlannedStep[] = [];
    for (const step of plan.afterBackfill ?? []) afterBackfill.push(await planStep(conn, step, done.has(`after:${step.id}`), probes));
    return {
      ...base,
      summary: st?.summary ?? description.summary,
      steps,
      ...(backfill ? { backfill } : {}),
      afterBackfill,
      ...(plan.verify
        ? {
            verify: {
              table: tableLabel(plan.verify.table),
              chunkSize: 10_000,
              description: `reads every row in key order, chunk by chunk (ACCESS SHARE, no write lock), and compares ${plan.verify.equal.map((x) => `${x.column} with ${x.expression}`).join(', ')}`,
            },
          }
        : {}),
    };
  } catch (err) {
    return { ...base, summary: null, error: (err as Error).message };
  }
}

async function planStep(conn: Connection, step: Step, done: boolean, probes: Probe[]): Promise<PlannedStep> {
  const statements: Mutable<PlannedStatement>[] = [];
  for (const s of step.statements) {
    const requested = await requestedLocks(s.text).catch(() => null);
    const values = { ...(s.values ? { values: s.values } : {}), ...(requested ? { requested } : {}) };
    if (done) {
      statements.push({ text: s.text, ...values, run: 'described' });
      continue;
    }
    if (!step.transactional) {
      const doc = requested && strongestLock(requested);
      statements.push({
        text: s.text,
        ...values,
        run: 'described',
        ...(doc
          ? { documentedLock: { mode: doc.mode, note: `${doc.form}: the lock PostgreSQL documents for it; not run by plan (it cannot run inside a transaction)` } }
          : { error: 'not run: this step runs outside a transaction, so plan cannot run it and roll it back' }),
      });
      continue;
    }
    statements.push({ ...(await measure(conn, s.text, s.values)), ...(requested ? { requested } : {}), lockSource: 'after-earlier-steps' });
  }
  const planned: Mutable<PlannedStep> = { id: step.id, description: step.description, transactional: step.transactional, done, statements, holds: [] };
  const finish = () => {
    const seen = new Set<string>();
    planned.holds = statements
      .flatMap((st) => st.effects?.locks ?? [])
      .filter((l) => !seen.has(`${l.relation}:${l.mode}`) && seen.add(`${l.relation}:${l.mode}`));
  };
  finish();
  if (!done && step.transactional && statements.every((st) => st.run === 'measured')) probes.push({ step, statements, finish });
  return planned;
}

async function measure(conn: Connection, text: string, values?: readonly SqlParam[]): Promise<PlannedStatement> {
  const before = await readServerState(conn);
  await conn.query(`SAVEPOINT ${SAVEPOINT}`);
  try {
    await conn.query(text, values);
  } catch (err) {
    await conn.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
    const code = sqlState(err);
    if (code === '57014') {
      return {
        text,
        ...(values ? { values } : {}),
        run: 'failed',
        error: 'did not finish within the plan\'s statement timeout (`plan --statement-timeout`): it scans or rewrites a big table, and `up` will take that long too (cut at lock.statementTimeout)',
      };
    }
    const why =
      code === '55P03'
        ? 'could not get its lock within lock.timeout: another session holds a conflicting lock right now (`up` would retry with backoff)'
        : `refused by the server${code ? ` (${code})` : ''}: ${(err as Error).message}`;
    return { text, ...(values ? { values } : {}), run: 'failed', error: `${why}. It may depend on an earlier step that plan could not run.` };
  }
  const { effects } = await effectsSince(conn, before);
  await conn.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
  return { text, ...(values ? { values } : {}), run: 'measured', effects };
}

/**
 * The backfill's row count: the statistics' when the table was ever analyzed, else the planner's guess from the
 * table's size (what `SELECT` would be planned with), never a bare 0 for a table nobody analyzed.
 */
async function rowEstimate(conn: Connection, table: NonNullable<PhasePlan['backfill']>['table']): Promise<{ rows: number | null; source: 'statistics' | 'planner' | 'none' }> {
  const r = await conn.query<{ reltuples: number }>(`SELECT reltuples::float8 AS reltuples FROM pg_class WHERE oid = $1::regclass`, [qualified(table)]).catch(() => null);
  const reltuples = r?.rows[0]?.reltuples;
  if (reltuples === undefined) return { rows: null, source: 'none' };
  if (reltuples >= 0) return { rows: Math.round(reltuples), source: 'statistics' };
  const plan = await conn.query<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(`EXPLAIN (FORMAT JSON) SELECT 1 FROM ${qualified(table)}`);
  const rows = plan.rows[0]?.['QUERY PLAN'][0]?.Plan['Plan Rows'];
  return rows === undefined ? { rows: null, source: 'none' } : { rows: Math.round(rows), source: 'planner' };
}

/** One backfill batch limited to the first row, to read the locks a batch takes. */
async function sampleBatch(
  conn: Connection,
  table: NonNullable<PhasePlan['backfill']>['table'],
  set: NonNullable<PhasePlan['backfill']>['set'],
  only: 'distinct' | 'null',
  snapshot: CatalogSnapshot,
): Promise<PlannedStatement | null> {
  const info = tableInfo(snapshot, table);
  if (!info || info.primaryKey.length === 0) return null;
  const keys: KeyColumn[] = info.primaryKey.map((name) => ({ name, type: columnInfo(snapshot, table, name)?.type ?? 'text' }));
  const first = await conn.query<{ k: string[] }>(
    `SELECT json_build_array(${keys.map((k) => `${ident(k.name)}::text`).join(', ')}) AS k FROM ${qualified(table)} ORDER BY ${keys.map((k) => ident(k.name)).join(', ')} LIMIT 1`,
  );
  const k = first.rows[0]?.k;
  if (!k) return null;
  return measure(conn, keysetRangeUpdateSql(table, keys, set, only, false, true), k);
}

// ---- text output -------------------------------------------------------------------------------------------------

const rank = (mode: string) => LOCK_MODES.indexOf(mode as LockMode);
const sameRelation = (measured: string, requested: string) => measured === requested || measured.endsWith(`.${requested}`);

/**
 * The locks a statement requests that its measurement did not show because the plan's transaction already held
 * them (or a stronger one) from an earlier step: `up` runs each step in its own transaction and takes them there.
 */
function heldEarlier(s: PlannedStatement): RequestedLock[] {
  if (s.run !== 'measured' || !s.requested) return [];
  const shown = s.effects?.locks ?? [];
  return s.requested.filter((r) => !shown.some((l) => sameRelation(l.relation, r.relation) && rank(l.mode) >= rank(r.mode)) && rank(r.mode) > rank('RowExclusiveLock'));
}

function effectsLine(s: PlannedStatement): string[] {
  const asks = strongestLock(s.requested ?? []);
  if (s.run === 'failed') return [`      ! ${s.error}`, ...(asks ? [`      lock it requests: ${lockName(asks.mode)} on ${asks.relation} (${lockBlocks(asks.mode)}; ${asks.form})`] : [])];
  if (s.documentedLock) return [`      lock: ${lockName(s.documentedLock.mode)} (${lockBlocks(s.documentedLock.mode)}) — ${s.documentedLock.note}`];
  if (s.run === 'described') return s.error ? [`      ${s.error}`] : ['      (already done by an earlier run: skipped)'];
  const e = s.effects!;
  const out: string[] = [];
  const earlier = heldEarlier(s);
  const caveat = s.lockSource === 'after-earlier-steps' && earlier.length === 0 ? ' [measured after the earlier pending steps: modes they hold are not repeated]' : '';
  const parts = [
    ...e.locks.map((l) => `${lockName(l.mode)} on ${l.relation} (${lockBlocks(l.mode)})`),
    ...earlier.map((l) => `${lockName(l.mode)} on ${l.relation} (${lockBlocks(l.mode)}; ${l.form}: held in the plan's transaction since an earlier step, taken by this step in \`up\`)`),
  ];
  out.push(parts.length > 0 ? `      lock: ${parts.join('; ')}${caveat}` : `      lock: nothing beyond what the step already holds${caveat}`);
  const table: string[] = [];
  table.push(e.rewrites.length > 0 ? `REWRITES ${e.rewrites.join(', ')}` : 'no rewrite');
  table.push(e.scans.length > 0 ? `scans ${e.scans.map((x) => `${x.relation} (${x.rows} rows)`).join(', ')}` : 'no scan');
  if (e.writes.length > 0) table.push(`writes ${e.writes.map((x) => `${x.relation} (${x.rows} rows)`).join(', ')}`);
  out.push(`      ${table.join(', ')}`);
  return out;
}

/** A step in one line: the strongest lock it takes (measured, or requested and held earlier in the plan), rewrites, scans. */
function stepLine(s: PlannedStep): string {
  const head = `    step ${s.id}${s.transactional ? '' : ' (outside a transaction)'}${s.done ? ' [done]' : ''}`;
  if (s.done) return `${head}: already done by an earlier run`;
  const failed = s.statements.find((st) => st.run === 'failed');
  const locks = s.statements.flatMap((st) => [...(st.effects?.locks ?? []), ...heldEarlier(st), ...(st.run !== 'measured' ? (st.requested ?? []) : [])]);
  const strongest = locks.reduce<{ relation: string; mode: string } | null>((b, l) => (!b || rank(l.mode) > rank(b.mode) ? l : b), null);
  const rewrites = [...new Set(s.statements.flatMap((st) => st.effects?.rewrites ?? []))];
  const scans = s.statements.flatMap((st) => st.effects?.scans ?? []);
  const facts = [
    strongest ? `${lockName(strongest.mode)} on ${strongest.relation} (${lockBlocks(strongest.mode)})` : 'no lock beyond a normal write',
    rewrites.length > 0 ? `REWRITES ${rewrites.join(', ')}` : '',
    scans.length > 0 ? `scans ${scans.map((x) => `${x.relation} (${x.rows} rows)`).join(', ')}` : '',
    failed ? `! ${failed.error}` : '',
  ].filter(Boolean);
  return `${head}: ${facts.join(' · ')}`;
}

const indentSql = (text: string) =>
  text
    .trim()
    .split('\n')
    .map((l, i) => (i === 0 ? `    $ ${l}` : `      ${l}`))
    .join('\n');

const estimateText = (b: NonNullable<PlannedChange['backfill']>) =>
  b.estimatedRows === null ? 'no row estimate' : `~${b.estimatedRows} rows (${b.estimateSource === 'statistics' ? 'from the statistics' : 'never analyzed: the planner\'s guess from its size'})`;

export interface FormatPlanOptions {
  /** Every statement with its measured effects, instead of one line per step. */
  readonly verbose?: boolean;
}

export function formatPlan(report: PlanReport, options: FormatPlanOptions = {}): string {
  if (report.phases.length === 0) return 'Nothing pending: `umzug up` would run nothing.';
  const verbose = options.verbose === true;
  const lines: string[] = verbose
    ? ['Plan of the pending phases, in the order `umzug up` runs them. Every statement ran in one transaction that was rolled back;', 'locks, rewrites and scans are what PostgreSQL reported (pg_locks, relfilenode, pg_stat_xact_user_tables). Nothing was changed.', '']
    : ['Plan of the pending phases, in the order `umzug up` runs them: each step with the strongest lock it takes. Measured in one rolled-back transaction; nothing was changed. `--verbose` shows every statement.', ''];
  for (const p of report.phases) {
    const gate = p.gate ? (p.gate.open ? ' — gate open: runs in this `up`' : ` — waits: ${p.gate.reasons.join('; ')}`) : '';
    lines.push(`${p.name}${gate}`);
    if (p.queries && (p.queries.note || p.queries.statements.length > 0)) lines.push(...formatQueryUsers(p.queries, '  '));
    if (p.note) lines.push(`  ${p.note}`);
    for (const c of p.changes) {
      lines.push(`  #${c.index + 1} ${c.kind}${c.summary ? ` — ${c.summary}` : ''}`);
      if (c.error) {
        lines.push(`    ! ${c.error}`);
        continue;
      }
      const steps = (list: readonly PlannedStep[]) => {
        for (const s of list) {
          if (!verbose) {
            lines.push(stepLine(s));
            continue;
          }
          lines.push(`   step ${s.id}: ${s.description}${s.transactional ? '' : ' (outside a transaction)'}${s.done ? ' [done]' : ''}`);
          for (const st of s.statements) {
            lines.push(indentSql(st.text));
            lines.push(...effectsLine(st));
          }
          if (s.transactional && !s.done && s.statements.length > 1 && s.holds.length > 0) {
            lines.push(`    = the step holds until it commits: ${s.holds.map((l) => `${lockName(l.mode)} on ${l.relation}`).join('; ')}`);
          }
        }
      };
      steps(c.steps);
      if (c.backfill) {
        if (!verbose) lines.push(`    backfill ${c.backfill.table}: ${estimateText(c.backfill)}, batches of ${c.backfill.batchSize}, each its own short transaction (ROW EXCLUSIVE, row locks on the batch's rows)`);
        else {
          lines.push(`   backfill ${c.backfill.table} (${estimateText(c.backfill)}, batches of ${c.backfill.batchSize}): ${c.backfill.description}`);
          if (c.backfill.sample) {
            lines.push(indentSql(c.backfill.sample.text));
            lines.push(...effectsLine(c.backfill.sample).map((l) => l + (c.backfill!.sample!.run === 'measured' ? ' [measured on a one-row batch]' : '')));
          }
        }
      }
      steps(c.afterBackfill);
      if (c.verify) lines.push(verbose ? `   verify ${c.verify.table} (chunks of ${c.verify.chunkSize} rows): ${c.verify.description}` : `    verify ${c.verify.table}: reads every row in key order (ACCESS SHARE), chunks of ${c.verify.chunkSize}`);
    }
  }
  return lines.join('\n');
}

import type { Project } from './project.js';
import { formatMonitorStatus, readMonitorStatus, type MonitorStatusReport } from '../monitor/status.js';
import type { CopyStatus } from '../runner.js';
import { migrationLockHolder } from '../engine/migration-lock.js';
import { formatQueryUsers, queryUsers, type QueryUsersReport } from './queries.js';
import { partitionProgress, type PartitionProgress } from '../backfill/chunks.js';

export interface ChangeStatus {
  readonly index: number;
  readonly kind: string;
  readonly summary: string | null;
  readonly expandFinishedAt: string | null;
  readonly contractFinishedAt: string | null;
  readonly backfill: {
    readonly rowsDone: number;
    readonly totalEstimate: number | null;
    readonly done: boolean;
    /** A partitioned table walked leaf by leaf: each partition its walk has reached so far, in the order it reached them. */
    readonly partitions?: readonly PartitionProgress[];
  } | null;
  readonly verify: { readonly rowsChecked: number; readonly mismatches: number; readonly at: string | null } | null;
  /** For a copy from another system (a MongoDB move): items read, rows written, items quarantined (reasons in the state schema). */
  readonly copy?: CopyStatus;
}

export interface MigrationStatus {
  readonly file: string;
  readonly kind: 'phased' | 'plain';
  readonly expand: 'pending' | 'in-progress' | 'applied';
  /** null for plain migrations, which have one phase. */
  readonly contract: 'pending' | 'waiting' | 'ready' | 'applied' | null;
  readonly waitingFor: readonly string[];
  readonly opensAt: string | null;
  readonly changes: readonly ChangeStatus[];
  /**
   * For a contract whose expand ran: the statements (pg_stat_statements) that used what it removes since the cutover,
   * or why they cannot be seen. Absent when the contract removes no column or table, or contract.requireNoQueries is false.
   */
  readonly queries?: QueryUsersReport;
}

export interface StatusReport {
  readonly generatedAt: string;
  readonly migrations: readonly MigrationStatus[];
  /** Health (red while a threshold breach is open), breaches, the monitor's latest figures, flags. */
  readonly monitor?: MonitorStatusReport;
  /** The run holding the migration lock now (host, pid, command, since, last heartbeat), or null. */
  readonly migrationLock: { readonly holder: string; readonly sessionPid: number | null; readonly since: string; readonly heartbeatAgeSeconds: number; readonly alive: boolean } | null;
}

export async function buildStatus(umzug: Project): Promise<StatusReport> {
  const entries = await umzug.entries();
  const executed = new Set(await umzug.engine.state.executedNames());
  const out: MigrationStatus[] = [];
  for (const e of entries) {
    if (e.phase === 'plain') {
      out.push({ file: e.name, kind: 'plain', expand: executed.has(e.name) ? 'applied' : 'pending', contract: null, waitingFor: [], opensAt: null, changes: [] });
      continue;
    }
    if (e.phase !== 'expand') continue;
    const contractEntry = entries.find((x) => x.name === e.name.replace(/:expand$/, ':contract'))!;
    const changes: ChangeStatus[] = [];
    for (const [i, change] of e.changes.entries()) {
      const st = await umzug.engine.state.getChange(e.name, i);
      const bf = st ? await umzug.engine.state.getBackfill(e.name, i, 'expand') : null;
      const partitions = bf ? await partitionProgress(umzug.db, umzug.engine.state, { migration: e.name, changeIndex: i, phase: 'expand' }) : [];
      const copy = st ? await umzug.engine.moverFor(change).status(umzug.engine, change) : null;
      changes.push({
        index: i,
        kind: change.kind,
        summary: st?.summary ?? null,
        expandFinishedAt: st?.expandFinishedAt?.toISOString() ?? null,
        contractFinishedAt: st?.contractFinishedAt?.toISOString() ?? null,
        backfill: bf ? { rowsDone: bf.rowsDone, totalEstimate: bf.totalEstimate, done: bf.done, ...(partitions.length > 0 ? { partitions } : {}) } : null,
        verify:
          st && st.verifiedRows != null
            ? { rowsChecked: st.verifiedRows, mismatches: st.verifyMismatches ?? 0, at: st.verifiedAt?.toISOString() ?? null }
            : null,
        ...(copy ? { copy } : {}),
      });
    }
    const expandApplied = executed.has(e.name);
    const started = changes.some((c) => c.summary !== null);
    let contract: MigrationStatus['contract'] = 'pending';
    let waitingFor: readonly string[] = [];
    let opensAt: string | null = null;
    let queries: QueryUsersReport | null = null;
    if (executed.has(contractEntry.name)) contract = 'applied';
    else if (expandApplied) {
      const gate = await umzug.gate(contractEntry);
      contract = gate.open ? 'ready' : 'waiting';
      waitingFor = gate.reasons;
      opensAt = gate.opensAt?.toISOString() ?? null;
      queries = await queryUsers(umzug, contractEntry).catch((err: unknown) => ({
        available: false, enforced: false, removed: [], since: null, cutover: null, statements: [],
        note: `pg_stat_statements could not be read: ${(err as Error).message}`,
      }));
    }
    out.push({
      file: e.name.replace(/:expand$/, ''),
      kind: 'phased',
      expand: expandApplied ? 'applied' : started ? 'in-progress' : 'pending',
      contract,
      waitingFor,
      opensAt,
      changes,
      ...(queries ? { queries } : {}),
    });
  }
  const lock = await migrationLockHolder(umzug.db, umzug.config.stateSchema);
  return {
    generatedAt: new Date().toISOString(),
    migrations: out,
    monitor: await readMonitorStatus(umzug),
    migrationLock: lock
      ? { holder: lock.holder, sessionPid: lock.sessionPid, since: lock.acquiredAt.toISOString(), heartbeatAgeSeconds: Math.round(lock.heartbeatAgeSeconds), alive: lock.alive }
      : null,
  };
}

function bar(done: number, total: number | null, width = 20): string {
  if (!total || total <= 0) return `${done} rows`;
  const ratio = Math.min(1, done / total);
  const filled = Math.round(ratio * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(1)}% (${done}/${total})`;
}

const PHASE_WORDS: Record<string, string> = {
  pending: 'pending',
  'in-progress': 'RUNNING',
  applied: 'applied',
  waiting: 'WAITING',
  ready: 'ready',
};

/** A running backfill's partitions, one line each (a finished one's are in `--json` only: they would be all done). */
function partitionLines(c: ChangeStatus, indent: string): string[][] {
  if (!c.backfill?.partitions || c.backfill.done) return [];
  return c.backfill.partitions.map((p) => [
    `${indent}${p.partition}: ${p.done ? 'done' : p.pages === null || p.pagesDone === null ? 'running' : `${((100 * p.pagesDone) / Math.max(1, p.pages)).toFixed(1)}% of ${p.pages} pages`}, ${p.rowsDone} rows`,
  ]);
}

function copyLine(m: CopyStatus): string {
  return `     ${m.system}: ${m.read} ${m.items} read, ${m.written} rows written, ${m.quarantined} quarantined${m.quarantined > 0 ? ' (reasons in the state schema)' : ''}`;
}

/** Pads cells to their column's width; the last column is left ragged; a one-cell row is a note spanning the line. */
function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) if (r.length > 1) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, [...c].length)));
  return rows.map((r) => (r.length === 1 ? r[0]! : r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i]! - [...c].length))).join('  ').trimEnd()));
}

/**
 * A table of migrations × phases (expand, backfill, verify, contract); a migration with several changes gets a row per
 * change for its backfill and verify. Under the table, why each waiting contract waits.
 */
export function formatStatus(report: StatusReport): string {
  if (report.migrations.length === 0) return 'No migrations found.';
  const lines: string[] = report.monitor ? formatMonitorStatus(report.monitor) : [];
  const rows: string[][] = [['MIGRATION', 'EXPAND', 'BACKFILL', 'VERIFY', 'CONTRACT']];
  for (const m of report.migrations) {
    if (m.kind === 'plain') {
      rows.push([m.file, PHASE_WORDS[m.expand] ?? m.expand, '-', '-', '(plain)']);
      continue;
    }
    const contract = m.contract === null ? '-' : (PHASE_WORDS[m.contract] ?? m.contract) + (m.contract === 'waiting' && m.opensAt ? ` until ${m.opensAt}` : '');
    const cells = (c: ChangeStatus): [string, string] => [
      c.backfill ? `${bar(c.backfill.rowsDone, c.backfill.done ? c.backfill.rowsDone : c.backfill.totalEstimate)}${c.backfill.done ? '' : ' running'}` : '-',
      c.verify ? (c.verify.mismatches === 0 ? `consistent (${c.verify.rowsChecked} rows)` : `${c.verify.mismatches} MISMATCHES / ${c.verify.rowsChecked}`) : '-',
    ];
    if (m.changes.length === 1) {
      rows.push([m.file, PHASE_WORDS[m.expand] ?? m.expand, ...cells(m.changes[0]!), contract]);
      rows.push([`  #1 ${m.changes[0]!.kind}${m.changes[0]!.summary ? `: ${m.changes[0]!.summary}` : ''}`]);
      if (m.changes[0]!.copy) rows.push([copyLine(m.changes[0]!.copy)]);
      rows.push(...partitionLines(m.changes[0]!, '     '));
    } else {
      rows.push([m.file, PHASE_WORDS[m.expand] ?? m.expand, '', '', contract]);
      for (const c of m.changes) {
        rows.push([`  #${c.index + 1} ${c.kind}`, c.expandFinishedAt ? 'done' : c.summary ? 'started' : '', ...cells(c), c.contractFinishedAt ? 'done' : '']);
        if (c.summary) rows.push([`     ${c.summary}`]);
        if (c.copy) rows.push([`   ${copyLine(c.copy)}`]);
        rows.push(...partitionLines(c, '       '));
      }
    }
  }
  if (report.migrationLock) {
    const l = report.migrationLock;
    lines.push(`Migration lock: held by ${l.holder} since ${l.since}, last heartbeat ${l.heartbeatAgeSeconds} s ago${l.alive ? '' : ' (its holder is gone: the next run takes it over)'}`);
  }
  if (lines.length > 0) lines.push('');
  lines.push(...table(rows));
  const waiting = report.migrations.filter((m) => m.waitingFor.length > 0);
  if (waiting.length > 0) {
    lines.push('', 'Contracts waiting (`umzug up` runs each once its gate opens):');
    for (const m of waiting) {
      lines.push(`  ${m.file}${m.opensAt ? ` (opens ${m.opensAt} at the earliest)` : ''}`);
      for (const r of m.waitingFor) lines.push(`    - ${r}`);
    }
  }
  const watched = report.migrations.filter((m) => m.queries && (m.queries.note || m.queries.statements.length > 0));
  if (watched.length > 0) {
    lines.push('', 'Who still uses what the contracts remove, from the database (pg_stat_statements; ! = within the safety window):');
    for (const m of watched) {
      lines.push(`  ${m.file}`);
      lines.push(...formatQueryUsers(m.queries!));
    }
  }
  const mismatched = report.migrations.flatMap((m) => m.changes.filter((c) => (c.verify?.mismatches ?? 0) > 0).map((c) => `${m.file} #${c.index + 1}`));
  if (mismatched.length > 0) lines.push('', `Inconsistent: ${mismatched.join(', ')} (run \`umzug verify\` for sample keys).`);
  return lines.join('\n');
}

import type { Project, MigrationEntry } from './project.js';
import { removedByChange, removedLabel, type RemovedStructure } from '../changes/removed.js';
import { globBase } from '../config.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { checkPreconditions } from '../runner.js';
import { readCatalog, type CatalogSnapshot } from '../postgres/catalog.js';
import { loadSqlParser } from '../postgres/sql-ast.js';
import { listSourceFiles, scanFiles, type RefFinding, type ScanCache } from '../refs/scan.js';

export type { RemovedStructure } from '../changes/removed.js';
export type { RefFinding, RefKind } from '../refs/scan.js';

/** What one change of a pending contract removes. */
export interface ContractRemoval {
  /** The contract entry, `<file>:contract`. */
  readonly contract: string;
  readonly changeIndex: number;
  readonly kind: string;
  readonly removed: readonly RemovedStructure[];
  /** Why nothing could be said for this change (its expand has not run, and the catalog does not fit it yet). */
  readonly note?: string;
}

export interface RefsFinding extends RefFinding {
  /** The removed structure as people read it: `users.name`, `audit_log`, `billing.invoices.total`. */
  readonly label: string;
  /** The pending contracts that remove it. */
  readonly contracts: readonly string[];
}

/** `umzug refs --json`. */
export interface RefsReport {
  readonly generatedAt: string;
  /** What was read: config `refs.src` or `--src`, relative to the project folder (empty: all of it). */
  readonly src: readonly string[];
  readonly filesScanned: number;
  /** Each pending contract's changes and what they remove (with a note where a change could not be described). */
  readonly removals: readonly ContractRemoval[];
  /** Everything looked for, once each, with the contracts that remove it. */
  readonly removed: readonly (RemovedStructure & { readonly label: string; readonly contracts: readonly string[] })[];
  readonly findings: readonly RefsFinding[];
}

/** `umzug refs --fail-on-refs` found references. */
export class RefsFoundError extends ZeroDowntimeError {
  override name = 'RefsFoundError';
  readonly code: ZeroDowntimeErrorCode = 'refs-found';
}

/**
 * The pending contracts (contract entries not executed) and what each of their changes removes, read from the
 * change's contract plan (removedByContract). A change whose expand ran is described from the catalog stored then,
 * as its contract will be; one whose expand has not run, from the catalog as it is now.
 */
export async function pendingRemovals(project: Project, only?: readonly MigrationEntry[]): Promise<ContractRemoval[]> {
  await loadSqlParser();
  const entries = only ?? (await project.entries());
  const executed = new Set(await project.engine.state.executedNames());
  const ctx = project.engine.ctx;
  const out: ContractRemoval[] = [];
  for (const e of entries) {
    if (e.phase !== 'contract' || executed.has(e.name)) continue;
    const expandName = e.name.replace(/:contract$/, ':expand');
    for (const [i, change] of e.changes.entries()) {
      const st = await project.engine.state.getChange(expandName, i);
      if (st?.contractFinishedAt) continue;
      const base = { contract: e.name, changeIndex: i, kind: change.kind };
      let snapshot: CatalogSnapshot | undefined = st?.snapshot;
      try {
        if (!snapshot) {
          snapshot = await project.db.withConnection((c) => readCatalog(c, change.tables(ctx)));
          const problems = checkPreconditions(snapshot, change.preconditions(ctx));
          if (problems.length > 0) {
            out.push({ ...base, removed: [], note: `not described before its expand runs: ${problems.join('; ')}` });
            continue;
          }
        }
        out.push({ ...base, removed: removedByChange(change, snapshot, ctx) });
      } catch (err) {
        out.push({ ...base, removed: [], note: `not described: ${(err as Error).message}` });
      }
    }
  }
  return out;
}

const caches = new WeakMap<Project, ScanCache>();

/**
 * The application's source files: `src` (else config `refs.src`, else the project folder), without node_modules,
 * dist, .git, declaration files, the migrations folder (its files name the old structure on purpose), the project's
 * umzug config and knexfile, and config `refs.ignore`.
 */
export async function sourceFiles(project: Project, src?: readonly string[]): Promise<{ readonly src: readonly string[]; readonly files: string[] }> {
  const config = project.config;
  const roots = src && src.length > 0 ? src : config.refs.src;
  const migrations = config.migrations.map((g) => {
    const base = globBase(g);
    return base ? `${base}/**` : g;
  });
  const ignore = [...migrations, 'umzug.config.*', 'knexfile.*', ...config.refs.ignore];
  return { src: roots, files: await listSourceFiles(config.cwd, roots, ignore) };
}

/** Scans the source for what the pending contracts (or `removals`) remove: `umzug refs`. */
export async function findReferences(project: Project, options: { readonly src?: readonly string[]; readonly removals?: readonly ContractRemoval[] } = {}): Promise<RefsReport> {
  const removals = options.removals ?? (await pendingRemovals(project));
  const byKey = new Map<string, { removed: RemovedStructure; contracts: Set<string> }>();
  for (const r of removals) {
    for (const x of r.removed) {
      const key = `${x.schema}.${x.table}.${x.column ?? ''}`;
      const entry = byKey.get(key) ?? { removed: x, contracts: new Set<string>() };
      entry.contracts.add(r.contract);
      byKey.set(key, entry);
    }
  }
  const removed = [...byKey.values()].map((v) => v.removed);
  const { src, files } = await sourceFiles(project, options.src);
  let cache = caches.get(project);
  if (!cache) caches.set(project, (cache = new Map()));
  const config = project.config;
  const scan = await scanFiles(files, { removed, fields: config.refs.fields, defaultSchema: config.schema }, config.cwd, cache);
  const findings = scan.findings.map((f) => ({
    ...f,
    label: removedLabel(f.removed, config.schema),
    contracts: [...(byKey.get(`${f.removed.schema}.${f.removed.table}.${f.removed.column ?? ''}`)?.contracts ?? [])],
  }));
  findings.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
  return {
    generatedAt: new Date().toISOString(),
    src,
    filesScanned: scan.filesScanned,
    removals,
    removed: [...byKey.values()].map((v) => ({ ...v.removed, label: removedLabel(v.removed, config.schema), contracts: [...v.contracts] })),
    findings,
  };
}

/**
 * contract.requireNoRefs: the reasons `entry` (a pending contract) must wait, one per change whose removed
 * structures the source still mentions. A scan that cannot run (no TypeScript parser for .ts files) is a reason
 * too: the gate never opens on a check that did not happen. Files unchanged since the last call are not read again.
 */
export async function referenceGateReasons(project: Project, entry: MigrationEntry): Promise<string[]> {
  let report: RefsReport;
  try {
    const removals = (await pendingRemovals(project, [entry])).filter((r) => r.removed.length > 0);
    if (removals.length === 0) return [];
    report = await findReferences(project, { removals });
  } catch (e) {
    return [`the source could not be checked for references to what this contract removes (contract.requireNoRefs): ${(e as Error).message}`];
  }
  const reasons: string[] = [];
  for (const r of report.removals) {
    const keys = new Set(r.removed.map((x) => `${x.schema}.${x.table}.${x.column ?? ''}`));
    const mine = report.findings.filter((f) => keys.has(`${f.removed.schema}.${f.removed.table}.${f.removed.column ?? ''}`));
    if (mine.length === 0) continue;
    const labels = [...new Set(mine.map((f) => f.label))];
    const first = mine[0]!;
    reasons.push(
      `change #${r.changeIndex + 1} (${r.kind}): ${mine.length} reference${mine.length === 1 ? '' : 's'} to ${labels.join(', ')} in the source (first: ${first.file}:${first.line}); see \`umzug refs\``,
    );
  }
  return reasons;
}

/** One line per reference, `file:line:col  users.name  kind  the line`, then a summary. */
export function formatRefs(report: RefsReport): string {
  const lines: string[] = [];
  for (const r of report.removals) if (r.note) lines.push(`${r.contract} change #${r.changeIndex + 1} (${r.kind}): ${r.note}`);
  if (report.removed.length === 0) {
    lines.push('No pending contract removes a column or table: nothing to look for.');
    return lines.join('\n');
  }
  const where = report.src.length > 0 ? report.src.join(', ') : 'the project folder';
  const width = Math.max(0, ...report.findings.map((f) => `${f.file}:${f.line}:${f.column}`.length));
  const labelWidth = Math.max(0, ...report.findings.map((f) => f.label.length));
  const kindWidth = Math.max(0, ...report.findings.map((f) => f.kind.length));
  for (const f of report.findings) {
    lines.push(`${`${f.file}:${f.line}:${f.column}`.padEnd(width)}  ${f.label.padEnd(labelWidth)}  ${f.kind.padEnd(kindWidth)}  ${f.text}`);
  }
  const labels = report.removed.map((r) => r.label);
  const files = new Set(report.findings.map((f) => f.file)).size;
  const n = report.findings.length;
  if (lines.length > 0) lines.push('');
  lines.push(
    n === 0
      ? `No references to ${labels.join(', ')} in ${report.filesScanned} files of ${where}.`
      : `${n} reference${n === 1 ? '' : 's'} in ${files} of ${report.filesScanned} files of ${where} to what pending contracts remove (${labels.join(', ')}): ` +
          'change the code (or mark a line `umzug-zero-downtime: allow ref`) before the contract runs.',
  );
  return lines.join('\n');
}

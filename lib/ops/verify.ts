import type { Project } from './project.js';
import type { MoverRunOptions, SourceCounts } from '../runner.js';

export interface VerifiedChange {
  readonly migration: string;
  readonly changeIndex: number;
  readonly kind: string;
  readonly summary: string;
  readonly rowsChecked: number;
  readonly mismatches: number;
  /** Up to 10 keys (as text) of rows where the old and the new structure disagree. */
  readonly sampleKeys: readonly (readonly string[])[];
  readonly ms: number;
  /** For a copy from another system (a MongoDB move): counts on both sides; rowsChecked then counts its items, a sample key is [key, kind]. */
  readonly source?: SourceCounts;
}

export interface VerifyReport {
  readonly generatedAt: string;
  readonly changes: readonly VerifiedChange[];
  /** Changes in flight whose kind has nothing to compare (an index, a constraint): listed, not checked. */
  readonly nothingToCompare: readonly { readonly migration: string; readonly changeIndex: number; readonly kind: string }[];
  readonly mismatches: number;
}

/**
 * Re-runs the consistency check of every change in flight (expand finished, contract not yet run) and records the
 * result, which the contract gate reads: rows checked, mismatches, sample keys.
 */
export async function verifyInFlight(umzug: Project, onChange?: (c: VerifiedChange) => void): Promise<VerifyReport> {
  const changes: VerifiedChange[] = [];
  const nothing: { migration: string; changeIndex: number; kind: string }[] = [];
  for (const e of await umzug.entries()) {
    if (e.phase !== 'expand') continue;
    for (const [i, change] of e.changes.entries()) {
      const st = await umzug.engine.state.getChange(e.name, i);
      if (!st || !st.expandFinishedAt || st.contractFinishedAt) continue;
      const started = Date.now();
      const result = await umzug.engine.moverFor(change).verify(umzug.engine, e.name, i, change);
      if (!result) {
        nothing.push({ migration: e.name, changeIndex: i, kind: change.kind });
        continue;
      }
      const v: VerifiedChange = {
        migration: e.name,
        changeIndex: i,
        kind: change.kind,
        summary: st.summary,
        rowsChecked: result.rowsChecked,
        mismatches: result.mismatches,
        sampleKeys: result.sampleKeys,
        ms: Date.now() - started,
        ...(result.source ? { source: result.source } : {}),
      };
      changes.push(v);
      onChange?.(v);
    }
  }
  return { generatedAt: new Date().toISOString(), changes, nothingToCompare: nothing, mismatches: changes.reduce((n, c) => n + c.mismatches, 0) };
}

export function formatVerifiedChange(c: VerifiedChange): string {
  const head =
    `${c.migration.replace(/:expand$/, '')} #${c.changeIndex + 1} ${c.kind} — ${c.summary}` +
    (c.source ? `\n  ${c.source.system} ${c.source.sourceCount} items; PostgreSQL ${c.source.targetCount} rows + ${c.source.quarantineCount} quarantined` : '');
  if (c.mismatches === 0) return `${head}\n  consistent: ${c.rowsChecked} rows checked in ${c.ms} ms`;
  return `${head}\n  ${c.mismatches} of ${c.rowsChecked} rows disagree; sample keys: ${c.sampleKeys.map((k) => `(${k.join(', ')})`).join(' ')}`;
}

export interface RepairedChange {
  readonly migration: string;
  readonly changeIndex: number;
  readonly kind: string;
  readonly mismatchesBefore: number;
  /** Rows the repair walked and rows it rewrote; null when it could not repair (see `reason`). */
  readonly rowsWalked: number | null;
  readonly rowsRewritten: number | null;
  /** The verification after the repair; null when it could not repair. */
  readonly after: VerifiedChange | null;
  readonly reason?: string;
}

/**
 * `verify --repair`: for each change the report found different, the expand's backfill again (rows that differ
 * only), then that change verified again and recorded. A change whose copy cannot run again is left as it was,
 * with the reason.
 */
export async function repairMismatches(umzug: Project, report: VerifyReport, opts: MoverRunOptions = {}): Promise<RepairedChange[]> {
  const out: RepairedChange[] = [];
  const entries = await umzug.entries();
  for (const v of report.changes) {
    if (v.mismatches === 0) continue;
    const change = entries.find((e) => e.name === v.migration)?.changes[v.changeIndex];
    const base = { migration: v.migration, changeIndex: v.changeIndex, kind: v.kind, mismatchesBefore: v.mismatches };
    if (!change) {
      out.push({ ...base, rowsWalked: null, rowsRewritten: null, after: null, reason: 'its migration file is no longer in the migrations folder' });
      continue;
    }
    const mover = umzug.engine.moverFor(change);
    const progress = mover.repair ? await mover.repair(umzug.engine, v.migration, v.changeIndex, change, opts) : null;
    if (!progress) {
      const reason = mover.repair
        ? 'it has no backfill to run again: fix the rows by hand (the sample keys say where), then run `umzug verify`'
        : `a ${mover.kind} copy is not repaired by verify: run its reconcile() for writes that bypassed the dual-writer, or down and up the change`;
      out.push({ ...base, rowsWalked: null, rowsRewritten: null, after: null, reason });
      continue;
    }
    const started = Date.now();
    const st = await umzug.engine.state.getChange(v.migration, v.changeIndex);
    const result = await mover.verify(umzug.engine, v.migration, v.changeIndex, change);
    const after: VerifiedChange | null = result
      ? { migration: v.migration, changeIndex: v.changeIndex, kind: v.kind, summary: st?.summary ?? v.summary, rowsChecked: result.rowsChecked, mismatches: result.mismatches, sampleKeys: result.sampleKeys, ms: Date.now() - started, ...(result.source ? { source: result.source } : {}) }
      : null;
    out.push({ ...base, rowsWalked: progress.rowsDone, rowsRewritten: progress.rowsUpdated, after });
  }
  return out;
}

export function formatRepairedChange(r: RepairedChange): string {
  const head = `${r.migration.replace(/:expand$/, '')} #${r.changeIndex + 1} ${r.kind}: ${r.mismatchesBefore} rows disagreed`;
  if (!r.after) return `${head}; not repaired: ${r.reason}`;
  return `${head}; repair walked ${r.rowsWalked} rows and rewrote ${r.rowsRewritten}; verified again: ${r.after.mismatches === 0 ? `consistent (${r.after.rowsChecked} rows)` : `${r.after.mismatches} still disagree`}`;
}

import type { Project } from './project.js';
import type { SourceCounts } from '../engine/runner.js';

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

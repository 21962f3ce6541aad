import type { Project } from './project.js';
import { verifyMongoChange } from '../mongo/tasks.js';
import type { MoveValidation } from '../mongo/validate.js';

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
  /** For a MongoDB move: the validation's counts (rowsChecked counts documents; a sample key is [key, kind]). */
  readonly mongo?: Pick<MoveValidation, 'mongoCount' | 'postgresCount' | 'quarantineCount' | 'mismatchRate' | 'chunks' | 'bisections'>;
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
      const mongo = await verifyMongoChange(umzug.engine, e.name, i, change);
      const result = mongo ?? (await umzug.engine.verify(e.name, i, change));
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
        ...(mongo
          ? {
              mongo: {
                mongoCount: mongo.validation.mongoCount,
                postgresCount: mongo.validation.postgresCount,
                quarantineCount: mongo.validation.quarantineCount,
                mismatchRate: mongo.validation.mismatchRate,
                chunks: mongo.validation.chunks,
                bisections: mongo.validation.bisections,
              },
            }
          : {}),
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
    (c.mongo ? `\n  MongoDB ${c.mongo.mongoCount} documents; PostgreSQL ${c.mongo.postgresCount} rows + ${c.mongo.quarantineCount} quarantined` : '');
  if (c.mismatches === 0) return `${head}\n  consistent: ${c.rowsChecked} rows checked in ${c.ms} ms`;
  return `${head}\n  ${c.mismatches} of ${c.rowsChecked} rows disagree; sample keys: ${c.sampleKeys.map((k) => `(${k.join(', ')})`).join(' ')}`;
}

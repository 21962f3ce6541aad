import { CommandLineAction, type CommandLineFlagParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { ZeroDowntimeUmzug } from '../zero-downtime.js';
import { verifyMongoChange } from '../mongo/tasks.js';
import type { MoveValidation } from '../mongo/validate.js';
import { printJson } from './json-output.js';

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
export async function verifyInFlight(umzug: ZeroDowntimeUmzug, onChange?: (c: VerifiedChange) => void): Promise<VerifyReport> {
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

export class VerifyMismatchError extends Error {
  override name = 'VerifyMismatchError';
}

class VerifyAction extends CommandLineAction {
  private readonly json: CommandLineFlagParameter;
  constructor(private readonly umzug: ZeroDowntimeUmzug) {
    super({
      actionName: 'verify',
      summary: 'Checks every change in flight: rows where the old and the new structure disagree, with sample keys',
      documentation:
        'Walks each expanded, not yet contracted change in key order (short chunks, no long snapshot) and compares old and new. ' +
        'The result is recorded: a contract waits until its change verifies clean. Exits with 1 when any row disagrees.',
    });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the report as JSON' });
  }
  protected override async onExecute(): Promise<void> {
    const json = this.json.value;
    const report = await this.umzug.asCommand('verify', () => verifyInFlight(this.umzug, json ? undefined : (c) => process.stdout.write(formatVerifiedChange(c) + '\n')));
    if (json) printJson(report);
    else if (report.changes.length === 0) process.stdout.write('No change in flight to verify (nothing expanded and not yet contracted).\n');
    for (const n of json ? [] : report.nothingToCompare) process.stdout.write(`${n.migration.replace(/:expand$/, '')} #${n.changeIndex + 1} ${n.kind}: nothing to compare\n`);
    if (report.mismatches > 0) {
      throw new VerifyMismatchError(
        `verify found ${report.mismatches} rows where old and new disagree. Nothing was changed; contracts of these changes stay closed. ` +
          (report.changes.some((c) => c.mongo && c.mismatches > 0) ? 'For a MongoDB move: look for a writer that bypasses the dual-writer and run its reconcile(). ' : '') +
          'Look for a writer that bypasses the sync triggers (a disabled trigger, session_replication_role = replica) or a wrong up/down expression, fix it, and run `umzug verify` again.',
      );
    }
  }
}

export function addVerifyAction(cli: UmzugCLI, umzug: ZeroDowntimeUmzug): void {
  cli.addAction(new VerifyAction(umzug));
}

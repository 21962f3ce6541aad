import { CommandLineAction, type CommandLineFlagParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { Project } from '../ops/project.js';
import { printJson } from './json-output.js';
import { VerificationFailedError } from '../db/errors.js';
import { verifyInFlight, formatVerifiedChange, formatRepairedChange, repairMismatches, type RepairedChange } from '../ops/verify.js';
import { chooseDisplayMode, createDisplay, followBackfills } from './display.js';

class VerifyAction extends CommandLineAction {
  private readonly json: CommandLineFlagParameter;
  private readonly repair: CommandLineFlagParameter;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'verify',
      summary: 'Checks every change in flight: rows where the old and the new structure disagree, with sample keys',
      documentation:
        'Walks each expanded, not yet contracted change in key order (short chunks, no long snapshot) and compares old and new. ' +
        'The result is recorded: a contract waits until its change verifies clean. Exits with 1 when any row disagrees. ' +
        'With --repair, each change found different has its expand backfill run again (writing only the rows that differ, paced and resumable like any backfill) and is verified again; it exits 1 only if rows still disagree.',
    });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the report as JSON' });
    this.repair = this.defineFlagParameter({ parameterLongName: '--repair', description: 're-sync the rows found different (the expand backfill again, rows that differ only), then verify those changes again' });
  }
  protected override async onExecute(): Promise<void> {
    const json = this.json.value;
    let repaired: RepairedChange[] = [];
    const report = await this.umzug.asCommand('verify', async () => {
      const r = await verifyInFlight(this.umzug, json ? undefined : (c) => process.stdout.write(formatVerifiedChange(c) + '\n'));
      if (!this.repair.value || r.mismatches === 0) return r;
      const stopFollowing = followBackfills(this.umzug.engine, createDisplay(chooseDisplayMode({ json })));
      try {
        repaired = await repairMismatches(this.umzug, r);
        stopFollowing('done');
      } catch (e) {
        stopFollowing('failed');
        throw e;
      }
      for (const x of json ? [] : repaired) process.stdout.write(formatRepairedChange(x) + '\n');
      // What still disagrees: the repaired changes' new count, the others' as found.
      const left = r.changes.reduce((n, c) => n + (repaired.find((x) => x.migration === c.migration && x.changeIndex === c.changeIndex)?.after?.mismatches ?? c.mismatches), 0);
      return { ...r, mismatches: left };
    });
    if (json) printJson(this.repair.value ? { ...report, repaired } : report);
    else if (report.changes.length === 0) process.stdout.write('No change in flight to verify (nothing expanded and not yet contracted).\n');
    for (const n of json ? [] : report.nothingToCompare) process.stdout.write(`${n.migration.replace(/:expand$/, '')} #${n.changeIndex + 1} ${n.kind}: nothing to compare\n`);
    if (report.mismatches > 0) {
      throw new VerificationFailedError(
        (repaired.length > 0
          ? `after the repair, ${report.mismatches} rows still disagree. Contracts of these changes stay closed. `
          : `verify found ${report.mismatches} rows where old and new disagree. Nothing was changed; contracts of these changes stay closed. `) +
          (report.changes.some((c) => c.source && c.mismatches > 0) ? 'For a copy from another system (a MongoDB move): look for a writer that bypasses the dual-writer and run its reconcile(). ' : '') +
          'Look for a writer that bypasses the sync triggers (a disabled trigger, session_replication_role = replica) or a wrong up/down expression, fix it, and run `umzug verify --repair` (it rewrites only the rows that differ).',
        report,
      );
    }
  }
}

export function addVerifyAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new VerifyAction(umzug));
}

import { CommandLineAction, type CommandLineFlagParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { Project } from '../ops/project.js';
import { printJson } from './json-output.js';
import { VerificationFailedError } from '../db/errors.js';
import { verifyInFlight, formatVerifiedChange } from '../ops/verify.js';

class VerifyAction extends CommandLineAction {
  private readonly json: CommandLineFlagParameter;
  constructor(private readonly umzug: Project) {
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
      throw new VerificationFailedError(
        `verify found ${report.mismatches} rows where old and new disagree. Nothing was changed; contracts of these changes stay closed. ` +
          (report.changes.some((c) => c.source && c.mismatches > 0) ? 'For a copy from another system (a MongoDB move): look for a writer that bypasses the dual-writer and run its reconcile(). ' : '') +
          'Look for a writer that bypasses the sync triggers (a disabled trigger, session_replication_role = replica) or a wrong up/down expression, fix it, and run `umzug verify` again.',
        report,
      );
    }
  }
}

export function addVerifyAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new VerifyAction(umzug));
}

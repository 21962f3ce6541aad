import { CommandLineAction, type CommandLineFlagParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { Project } from '../ops/project.js';
import { printJson } from './json-output.js';
import { rehearse, formatRehearsal, RehearsalFailedError } from '../ops/rehearse.js';

class RehearseAction extends CommandLineAction {
  private readonly json: CommandLineFlagParameter;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'rehearse',
      summary: 'For staging: up to the end (contract gates bypassed), down to the start, compare schema and data checksums, up again',
      documentation:
        'Snapshots the schema (catalog definitions: columns, constraints, indexes, triggers, functions, views, sequences) and a checksum of ' +
        'every table, runs every pending phase including contracts whose gate is closed, reverts them all, and compares. A difference ' +
        '(typically a hand-written down that forgets something) is printed as a diff and the command exits with 1. Never run it in production: ' +
        'it runs contracts early and reverts them. A pass leaves everything applied; a failure or a difference reverts what it applied, so ' +
        'the same phases are pending as before (only a failing down can stop that; the report then says what is left and how to revert it).',
    });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the report as JSON' });
  }
  protected override async onExecute(): Promise<void> {
    const json = this.json.value;
    const report = await rehearse(this.umzug, json ? undefined : (l) => process.stdout.write(`${l}\n`));
    if (json) printJson(report);
    else process.stdout.write(formatRehearsal(report) + '\n');
    if (!report.ok) {
      throw new RehearsalFailedError(
        report.failed
          ? `rehearsal failed at "${report.failed.stage}"; see above for the error and where the database was left.`
          : report.endedAt === 'start'
            ? 'rehearsal found differences: a down does not undo its up (see the diff above). The phases are pending again; remove what the diff lists as left behind (+ lines), fix that migration\'s down, and rehearse again.'
            : `rehearsal found differences: a down does not undo its up (see the diff above), and the database is not back at the start: run ${report.toStart}.`,
      );
    }
  }
}

export function addRehearseAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new RehearseAction(umzug));
}

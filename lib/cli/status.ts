import { CommandLineAction, type CommandLineFlagParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { Project } from '../ops/project.js';
import { printJson } from './json-output.js';
import { buildStatus, formatStatus } from '../ops/status.js';

class StatusAction extends CommandLineAction {
  private readonly json: CommandLineFlagParameter;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'status',
      summary: 'Shows each migration with its phases, backfill progress, verification and contract gate',
      documentation: 'Phases of every migration file; why a contract is waiting. --json for pipelines.',
    });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the report as JSON' });
  }
  protected override async onExecute(): Promise<void> {
    const report = await buildStatus(this.umzug);
    if (this.json.value) printJson(report);
    else process.stdout.write(formatStatus(report) + '\n');
  }
}

export function addStatusAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new StatusAction(umzug));
}

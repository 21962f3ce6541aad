import { CommandLineAction, type CommandLineFlagParameter, type CommandLineStringParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import { parseDuration } from '../db/duration.js';
import { REGISTRY } from '../postgres/archive.js';
import type { Project } from '../ops/project.js';
import { printJson } from './json-output.js';
import { purgeArchives, formatPurge } from '../ops/purge.js';

class PurgeAction extends CommandLineAction {
  private readonly olderThan: CommandLineStringParameter;
  private readonly json: CommandLineFlagParameter;
  private readonly dryRun: CommandLineFlagParameter;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'purge',
      summary: 'Deletes the archives of dropped and replaced columns and of dropped tables older than a retention',
      documentation:
        `Contracts keep the columns and tables they drop in archive tables of the state schema (listed in ${REGISTRY}), so down can restore them. ` +
        'purge --older-than 30d deletes those made more than 30 days ago. A dropColumn or dropTable contract whose archive is gone can no longer be undone with its data.',
    });
    this.olderThan = this.defineStringParameter({
      parameterLongName: '--older-than',
      argumentName: 'DURATION',
      description: 'retention, e.g. 30d, 12h, 90m',
      required: true,
    });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the report as JSON' });
    this.dryRun = this.defineFlagParameter({ parameterLongName: '--dry-run', description: 'list what would be purged, delete nothing' });
  }
  protected override async onExecute(): Promise<void> {
    const olderThanMs = parseDuration(this.olderThan.value!, '--older-than');
    const report = await purgeArchives(this.umzug, { olderThanMs, dryRun: this.dryRun.value });
    if (this.json.value) printJson(report);
    else process.stdout.write(formatPurge(report) + '\n');
  }
}

export function addPurgeAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new PurgeAction(umzug));
}

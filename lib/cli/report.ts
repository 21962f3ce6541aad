import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CommandLineAction, type CommandLineFlagParameter, type CommandLineStringParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import { parseDuration } from '../db/duration.js';
import { renderHtml } from '../monitor/report.js';
import { formatMonitorStatus, readMonitorStatus } from '../monitor/status.js';
import type { Project } from '../ops/project.js';
import { printJson } from './json-output.js';
import { collectReport } from '../ops/report.js';

class ReportAction extends CommandLineAction {
  private readonly html: CommandLineStringParameter;
  private readonly since: CommandLineStringParameter;
  private readonly migration: CommandLineStringParameter;
  private readonly json: CommandLineFlagParameter;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'report',
      summary: 'Health, threshold breaches and monitor figures; --html FILE writes a page with plots',
      documentation:
        'Reads what the monitor recorded in the state schema (from any machine): backfill progress and rate over time, the canary against its ' +
        'baseline and limit, flag rollouts, and every threshold breach explained. --html writes one self-contained file (inline SVG, no network).',
    });
    this.html = this.defineStringParameter({ parameterLongName: '--html', argumentName: 'FILE', description: 'write an HTML report with plots to FILE' });
    this.since = this.defineStringParameter({ parameterLongName: '--since', argumentName: 'DURATION', description: 'only the last DURATION (e.g. 24h, 7d); default 7d' });
    this.migration = this.defineStringParameter({ parameterLongName: '--migration', argumentName: 'NAME', description: 'only this migration file' });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the health report as JSON' });
  }

  protected override async onExecute(): Promise<void> {
    const sinceMs = parseDuration(this.since.value ?? '7d', '--since');
    const data = await collectReport(this.umzug, { since: new Date(Date.now() - sinceMs), ...(this.migration.value ? { migration: this.migration.value } : {}) });
    if (this.html.value) {
      const file = path.resolve(this.html.value);
      writeFileSync(file, renderHtml(data));
      process.stdout.write(`Wrote ${file} (${data.samples.length} samples, ${data.breaches.length} breaches, ${data.flagHistory.length} flag changes).\n`);
      return;
    }
    const status = await readMonitorStatus(this.umzug);
    if (this.json.value) printJson(status);
    else process.stdout.write(formatMonitorStatus(status).join('\n') + '\n');
  }
}

export function addReportAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new ReportAction(umzug));
}

import { CommandLineAction, type CommandLineFlagParameter, type CommandLineStringParameter } from '@rushstack/ts-command-line';
import { parseDuration } from '../db/duration.js';
import type { UmzugCLI } from 'umzug';
import type { Project } from '../ops/project.js';
import { printJson } from './json-output.js';
import { buildPlan, formatPlan } from '../ops/plan.js';

class PlanAction extends CommandLineAction {
  private readonly json: CommandLineFlagParameter;
  private readonly verbose: CommandLineFlagParameter;
  private readonly timeout: CommandLineStringParameter;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'plan',
      summary: 'Shows every statement the pending phases would run, with the lock each takes and whether it rewrites or scans a table; changes nothing',
      documentation:
        'Runs the statements of pending expands and contracts in one transaction that is rolled back, and reads the locks from pg_locks, rewrites ' +
        'from pg_class.relfilenode and scans from pg_stat_xact_user_tables before the rollback. Statements that cannot run in a transaction ' +
        '(CREATE INDEX CONCURRENTLY) are described with the lock PostgreSQL documents for them. Statements wait at most lock.timeout for a lock. ' +
        'The measured statements take their real locks until the rollback, so run plan on staging or at a quiet moment on big tables.',
    });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the plan as JSON (every statement, as --verbose)' });
    this.verbose = this.defineFlagParameter({ parameterLongName: '--verbose', description: 'every statement with its SQL, locks, rewrites and scans, instead of one line per step' });
    this.timeout = this.defineStringParameter({
      parameterLongName: '--statement-timeout',
      argumentName: 'DURATION',
      description: 'cut each measured statement after this long (default 5s); a scan or rewrite of a big table is reported, not waited for',
    });
  }
  protected override async onExecute(): Promise<void> {
    const statementTimeoutMs = this.timeout.value ? parseDuration(this.timeout.value, '--statement-timeout') : undefined;
    const report = await buildPlan(this.umzug, statementTimeoutMs !== undefined ? { statementTimeoutMs } : {});
    if (this.json.value) printJson(report);
    else process.stdout.write(formatPlan(report, { verbose: this.verbose.value }) + '\n');
  }
}

export function addPlanAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new PlanAction(umzug));
}

import { CommandLineAction, type CommandLineFlagParameter, type CommandLineStringListParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { Project } from '../ops/project.js';
import { printJson } from './json-output.js';
import { findReferences, formatRefs, RefsFoundError } from '../ops/refs.js';

class RefsAction extends CommandLineAction {
  private readonly src: CommandLineStringListParameter;
  private readonly json: CommandLineFlagParameter;
  private readonly failOnRefs: CommandLineFlagParameter;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'refs',
      summary: "Lists the places in the application's source that still mention a column or table a pending contract removes",
      documentation:
        'For each pending contract (renameColumn drops the old column, dropColumn, dropTable, renameTable, splitTable, mergeTables…), ' +
        'what it removes is read from its contract plan, and the source is searched for it: SQL in strings and template literals and in .sql files ' +
        "(read by PostgreSQL's parser, so a column of another table, a comment or a log message does not count), Knex builder chains " +
        "(knex('users').select('name'), .where, .update({ name })…), ORM property names given in config refs.fields, and 'users.name' strings. " +
        'Prints file:line:col, the removed name, the kind and the line. node_modules, dist, .git and the migrations folder are not read. ' +
        'Exit code 0 (it is a report) unless --fail-on-refs is given and references are found: then 1. contract.requireNoRefs: true in the config ' +
        'makes the same check part of every contract gate.',
    });
    this.src = this.defineStringListParameter({
      parameterLongName: '--src',
      argumentName: 'DIR',
      description: 'a folder, file or glob of the application source, relative to the project folder; repeat for more (default: config refs.src, else the project folder)',
    });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the report as JSON' });
    this.failOnRefs = this.defineFlagParameter({ parameterLongName: '--fail-on-refs', description: 'exit 1 when a reference is found (for CI)' });
  }
  protected override async onExecute(): Promise<void> {
    const report = await findReferences(this.umzug, { src: this.src.values });
    if (this.json.value) printJson(report);
    else process.stdout.write(formatRefs(report) + '\n');
    if (this.failOnRefs.value && report.findings.length > 0) {
      const n = report.findings.length;
      throw new RefsFoundError(`refs: ${n} reference${n === 1 ? '' : 's'} to what pending contracts remove (--fail-on-refs).`);
    }
  }
}

export function addRefsAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new RefsAction(umzug));
}

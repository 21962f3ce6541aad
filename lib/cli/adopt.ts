import { CommandLineAction, type CommandLineChoiceParameter, type CommandLineFlagParameter, type CommandLineStringParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { Project } from '../ops/project.js';
import { adoptHistory, formatAdoptReport, type AdoptSource } from '../ops/adopt.js';
import { printJson } from './json-output.js';

class AdoptAction extends CommandLineAction {
  private readonly from: CommandLineChoiceParameter;
  private readonly table: CommandLineStringParameter;
  private readonly schema: CommandLineStringParameter;
  private readonly column: CommandLineStringParameter;
  private readonly path: CommandLineStringParameter;
  private readonly dryRun: CommandLineFlagParameter;
  private readonly json: CommandLineFlagParameter;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'adopt',
      summary: "Imports an Umzug project's history (SequelizeMeta, a JSON file, a table of names): the migrations it ran count as executed",
      documentation:
        'Reads the names the project\'s own Umzug storage holds and records each one that matches a plain migration file (by its name, or its name without ' +
        'the extension) as executed, so `umzug up` does not run it again. Idempotent: run it again and it records nothing new. Typed migrations are not ' +
        'recorded (their expand must run through `umzug up`); names that match no file are listed, not recorded. A Knex project needs no adopt: its knexfile makes knex_migrations the history.',
    });
    this.from = this.defineChoiceParameter({ parameterLongName: '--from', alternatives: ['sequelize-meta', 'json', 'table'], required: true, description: "the storage: Umzug's SequelizeStorage, its JSONStorage, or any table with a column of names" });
    this.table = this.defineStringParameter({ parameterLongName: '--table', argumentName: 'NAME', description: 'the storage table (sequelize-meta: default SequelizeMeta; table: required)' });
    this.schema = this.defineStringParameter({ parameterLongName: '--schema', argumentName: 'NAME', description: "the storage table's schema (default: the config's schema, public)" });
    this.column = this.defineStringParameter({ parameterLongName: '--column', argumentName: 'NAME', description: 'the column of names (sequelize-meta: default name; table: required)' });
    this.path = this.defineStringParameter({ parameterLongName: '--path', argumentName: 'FILE', description: 'json: the JSON storage file (default umzug.json)' });
    this.dryRun = this.defineFlagParameter({ parameterLongName: '--dry-run', description: 'say what would be recorded; record nothing' });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the report as JSON' });
  }

  protected override async onExecute(): Promise<void> {
    const from = this.from.value as AdoptSource['kind'];
    const opt = <K extends string>(k: K, v: string | undefined) => (v !== undefined ? ({ [k]: v } as Record<K, string>) : {});
    let source: AdoptSource;
    if (from === 'json') source = { kind: 'json', ...opt('path', this.path.value) };
    else if (from === 'sequelize-meta') source = { kind: 'sequelize-meta', ...opt('table', this.table.value), ...opt('schema', this.schema.value), ...opt('column', this.column.value) };
    else {
      if (!this.table.value || !this.column.value) throw new Error('adopt --from table needs --table and --column (the table that holds the names, and its column). Nothing was recorded.');
      source = { kind: 'table', table: this.table.value, column: this.column.value, ...opt('schema', this.schema.value) };
    }
    const report = await this.umzug.asCommand('adopt', () => adoptHistory(this.umzug, source, { dryRun: this.dryRun.value }));
    if (this.json.value) printJson(report);
    else process.stdout.write(formatAdoptReport(report) + '\n');
  }
}

export function addAdoptAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new AdoptAction(umzug));
}

import { CommandLineAction, type CommandLineChoiceParameter, type CommandLineFlagParameter, type CommandLineRemainder } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { ResolvedConfig } from '../config.js';
import type { Project } from '../ops/project.js';
import { formatLintGithub, formatLintSarif, formatLintText, lintFileList, lintFiles, type LintReport } from '../ops/lint.js';
import { printJson } from './json-output.js';
import { LintFailedError } from '../lint/lint.js';

export type LintFormat = 'text' | 'json' | 'github' | 'sarif';

/** What lint needs of a project; without one (no config, no database) the defaults. */
export type LintSettings = Pick<ResolvedConfig, 'cwd' | 'migrations' | 'plainMigrations' | 'lint'>;

/** Runs the linter and prints the report; `code` is 1 when an error-level finding is not allowed, else 0. */
export async function runLint(settings: LintSettings, files: readonly string[], format: LintFormat): Promise<{ report: LintReport; code: number }> {
  const list = await lintFileList(settings.cwd, files, settings.migrations);
  if (files.length > 0 && list.length === 0) throw new Error(`lint: no migration file matches ${files.join(' ')}`);
  const report = await lintFiles(list, { cwd: settings.cwd, style: settings.plainMigrations, rules: settings.lint.rules });
  if (format === 'json') printJson(report);
  else if (format === 'sarif') process.stdout.write(formatLintSarif(report) + '\n');
  else if (format === 'github') {
    const out = formatLintGithub(report);
    if (out) process.stdout.write(out + '\n');
    process.stdout.write(`${report.errors} errors, ${report.warnings} warnings in ${report.files.length} migrations\n`);
  } else process.stdout.write(formatLintText(report) + '\n');
  return { report, code: report.errors > 0 ? 1 : 0 };
}

class LintAction extends CommandLineAction {
  private readonly format: CommandLineChoiceParameter;
  private readonly json: CommandLineFlagParameter;
  private readonly files: CommandLineRemainder;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'lint',
      summary: 'Finds unsafe DDL in plain and SQL migrations (no database needed): the lock it takes, what breaks, the safe way',
      documentation:
        "Each plain migration's up() runs against a Knex that records statements instead of sending them (builder calls and raw SQL), .sql files are read as they are, " +
        "and every statement is parsed by PostgreSQL's own parser and checked against the rules. Typed migrations are safe by construction and not linted. " +
        'Accept a finding with `-- umzug-zero-downtime: allow <rule> because <reason>` in the migration. Exits 1 when an error-level finding is not accepted. ' +
        'Files: paths or globs; default the project\'s migrations.',
    });
    this.format = this.defineChoiceParameter({ parameterLongName: '--format', alternatives: ['text', 'json', 'github', 'sarif'], description: 'text (default), json, github (workflow annotations), sarif (code scanning)' });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'the report as JSON (as --format json)' });
    this.files = this.defineCommandLineRemainder({ description: 'migration files or globs (default: the project\'s migrations)' });
  }
  protected override async onExecute(): Promise<void> {
    const format = (this.json.value ? 'json' : (this.format.value ?? 'text')) as LintFormat;
    const { report } = await runLint(this.umzug.config, this.files.values, format);
    if (report.errors > 0) throw new LintFailedError(`lint: ${report.errors} unsafe statement${report.errors === 1 ? '' : 's'} (level error, not allowed); nothing was run.`);
  }
}

export function addLintAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new LintAction(umzug));
}

import { Umzug, CreateAction } from 'umzug';
import type { CommandLineChoiceParameter, CommandLineFlagParameter, CommandLineStringListParameter, CommandLineStringParameter } from '@rushstack/ts-command-line';
import type { CliProject } from '../ops/project.js';
import { printJson } from './json-output.js';
import { createInterface } from 'node:readline/promises';
import { allFlags, checkWithConstructor, loadTemplates, missingParameters, requireGiven, requests, TemplateError, templateParams } from '../ops/create.js';

/**
 * Umzug's own `create`, plus `--template <kind>` and the template's parameters. Umzug's flags (--name, --prefix,
 * --folder, --skip-verify …) and its checks (ordering, the file showing up in `pending`) are kept as they are.
 */
export class TemplateCreateAction extends CreateAction {
  private template!: CommandLineChoiceParameter;
  private json!: CommandLineStringParameter;
  private jsonOut!: CommandLineFlagParameter;
  private draft!: CommandLineFlagParameter;
  private readonly values = new Map<string, CommandLineStringListParameter | CommandLineFlagParameter>();

  constructor(private readonly zd: CliProject) {
    super(zd as unknown as Umzug);
  }

  override onDefineParameters(): void {
    super.onDefineParameters();
    const names = [...loadTemplates().keys()];
    this.template = this.defineChoiceParameter({
      parameterLongName: '--template',
      alternatives: names,
      description: `Write a typed migration for one change (parameters below, checked against templates/<kind>.json). Without it, Umzug's plain template.`,
    });
    this.jsonOut = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the created files (and placeholders left) as JSON' });
    this.draft = this.defineFlagParameter({ parameterLongName: '--draft', description: 'write missing required parameters as TODO placeholders, in a draft that `up` refuses to run until they are filled in' });
    this.json = this.defineStringParameter({
      parameterLongName: '--params',
      argumentName: 'JSON',
      description: 'The change options as a JSON object (flags override its keys).',
    });
    for (const [flag, info] of allFlags()) {
      // argparse formats help texts with sprintf: a literal % must be doubled.
      const description = `${info.descriptions.join('; ')} [${info.templates.join(', ')}]`.replace(/%/g, '%%');
      this.values.set(
        flag,
        info.kind === 'flag'
          ? this.defineFlagParameter({ parameterLongName: flag, description })
          : this.defineStringListParameter({ parameterLongName: flag, argumentName: 'VALUE', description }),
      );
    }
  }

  override async onExecute(): Promise<void> {
    const raw = new Map<string, string[]>();
    for (const [flag, p] of this.values) {
      if ('values' in p && p.values.length > 0) raw.set(flag, [...p.values]);
      else if (!('values' in p) && p.value) raw.set(flag, ['true']);
    }
    const template = this.template.value;
    if (!template && (raw.size > 0 || this.json.value)) throw new TemplateError(`${[...raw.keys(), ...(this.json.value ? ['--params'] : [])].join(', ')} need --template <kind>`);
    let { params, placeholders } = template ? templateParams(template, raw, this.json.value) : { params: {}, placeholders: [] as string[][] };
    // On a terminal, a required parameter not given is asked for; in a pipeline (or with --json) it is refused.
    if (template && placeholders.length > 0 && !this.draft.value && !this.jsonOut.value && process.stdin.isTTY && process.stdout.isTTY) {
      const rl = createInterface({ input: process.stdin, output: process.stdout });
      // The line iterator keeps lines typed (or pasted) ahead of their question; question() would drop them.
      const lines = rl[Symbol.asyncIterator]();
      try {
        for (const m of missingParameters(template, placeholders)) {
          process.stdout.write(`${m.flag}${m.description ? ` (${m.description})` : ''}: `);
          const next = await lines.next();
          if (next.done) break;
          const answer = String(next.value).trim();
          if (answer) raw.set(m.flag, [answer]);
        }
      } finally {
        rl.close();
      }
      ({ params, placeholders } = templateParams(template, raw, this.json.value));
    }
    if (template) {
      requireGiven(template, placeholders, this.draft.value);
      await checkWithConstructor(template, params);
      requests.set(this.zd, { template, params, placeholders });
    }
    // Umzug reports the files it wrote through its logger only: with --json, collect them from there instead.
    const created: string[] = [];
    const options = this.zd.options as { logger?: unknown };
    const logger = options.logger;
    if (this.jsonOut.value) {
      const quiet = () => {};
      options.logger = { info: (m: { event?: string; path?: string }) => void (m.event === 'created' && m.path && created.push(m.path)), warn: quiet, error: quiet, debug: quiet };
    }
    try {
      await super.onExecute();
    } finally {
      requests.delete(this.zd);
      options.logger = logger;
    }
    if (this.jsonOut.value) {
      printJson({ command: 'create', template: template ?? null, created, placeholders: placeholders.map((p) => p.join('.')) });
    } else if (placeholders.length > 0) {
      process.stderr.write(`Placeholders to replace (marked TODO in the file): ${placeholders.map((p) => p.join('.')).join(', ')}\n`);
    }
  }
}

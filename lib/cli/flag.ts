import { CommandLineAction, type CommandLineFlagParameter, type CommandLineRemainder } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { FlagRecord } from '../flags/store.js';
import { checkFlagName, checkPercent } from '../flags/names.js';
import type { Project } from '../ops/project.js';
import { printJson } from './json-output.js';

const USAGE = 'usage: umzug flag set NAME PCT | umzug flag get NAME | umzug flag list   (add --json for JSON)';

function describe(f: FlagRecord): string {
  const since = f.fullSince ? `, at 100 % since ${f.fullSince.toISOString()}` : '';
  return `${f.name}  ${f.percent} %${since}  (set ${f.updatedAt.toISOString()}${f.updatedBy ? ` by ${f.updatedBy}` : ''})`;
}

const toJson = (f: FlagRecord) => ({ name: f.name, percent: f.percent, fullSince: f.fullSince?.toISOString() ?? null, updatedAt: f.updatedAt.toISOString(), updatedBy: f.updatedBy });

/** The changes (of every migration file) that declare a flag as their read flag, for `flag get`. */
async function readers(umzug: Project, name: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await umzug.entries()) {
    if (e.phase !== 'expand') continue;
    for (const [i, change] of e.changes.entries()) {
      const st = await umzug.engine.state.getChange(e.name, i);
      if (!st) continue;
      if (change.describe(st.snapshot, umzug.engine.ctx).readFlag === name) out.push(`${e.name.replace(/:expand$/, '')} #${i + 1} ${change.kind}`);
    }
  }
  return out;
}

class FlagAction extends CommandLineAction {
  private readonly json: CommandLineFlagParameter;
  private readonly args: CommandLineRemainder;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'flag',
      summary: 'Sets, shows or lists read-cutover flags (percentage rollouts kept in the target database)',
      documentation:
        `${USAGE}\n\nApplication instances read flags with flags(knex).flag(NAME).isEnabled(key) (or the OpenFeature provider) and see a ` +
        'change within their cache TTL (5 s by default). A key is in the rollout by a stable hash, so raising the percentage only adds keys. ' +
        "A change's contract waits until its read flag has been at 100 %% for the safety window.",
    });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print JSON' });
    this.args = this.defineCommandLineRemainder({ description: 'set NAME PCT | get NAME | list' });
  }

  protected override async onExecute(): Promise<void> {
    // Everything after the sub-command lands in the remainder, --json included when written last.
    const raw = [...this.args.values];
    const json = this.json.value || raw.includes('--json');
    const [sub, ...rest] = raw.filter((a) => a !== '--json');
    const out = (text: string, data: unknown) => (json ? printJson(data) : process.stdout.write(text + '\n'));
    const store = this.umzug.flags;
    switch (sub) {
      case 'set': {
        if (rest.length !== 2) throw new Error(USAGE);
        const name = checkFlagName(rest[0]);
        const pct = checkPercent(rest[1]);
        const before = await store.get(name);
        const f = await store.set(name, pct);
        out(`${describe(f)}${before ? ` (was ${before.percent} %)` : ' (new)'}`, { ...toJson(f), previousPercent: before?.percent ?? null });
        return;
      }
      case 'get': {
        if (rest.length !== 1) throw new Error(USAGE);
        const name = checkFlagName(rest[0]);
        const f = await store.get(name);
        const used = await readers(this.umzug, name);
        if (!f) {
          if (json) out('', { name, percent: null, readBy: used });
          else out(`${name}: not set (reads as 0 %: every key on the old path)${used.length ? `; read flag of ${used.join(', ')}` : ''}`, null);
          process.exitCode = 1;
          return;
        }
        out(`${describe(f)}${used.length ? `\n  read flag of ${used.join(', ')}` : ''}`, { ...toJson(f), readBy: used });
        return;
      }
      case 'list':
      case undefined: {
        if (rest.length !== 0) throw new Error(USAGE);
        const all = await store.list();
        out(all.length === 0 ? 'No flags set.' : all.map(describe).join('\n'), all.map(toJson));
        return;
      }
      default:
        throw new Error(`unknown flag command ${JSON.stringify(sub)}. ${USAGE}`);
    }
  }
}

export function addFlagAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new FlagAction(umzug));
}

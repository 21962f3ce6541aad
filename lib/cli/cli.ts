import { CommandLineParser, type CommandLineFlagParameter } from '@rushstack/ts-command-line';
import { DownAction, ListAction, UpAction, type Umzug, type UmzugCLI } from 'umzug';
import type { ZeroDowntimeUmzug } from '../zero-downtime.js';
import { TemplateCreateAction } from './create.js';

/**
 * Umzug's up or down, plus `--json`: the phases it applied or reverted (and for up, the contracts left waiting and
 * why), as one JSON document on stdout. The logger is muted meanwhile, so stdout holds nothing else.
 */
function withJson<T extends new (u: Umzug) => UpAction | DownAction>(Base: T, umzug: ZeroDowntimeUmzug): UpAction | DownAction {
  const Json = class extends (Base as unknown as new (u: Umzug) => UpAction) {
    private json!: CommandLineFlagParameter;
    override onDefineParameters(): void {
      super.onDefineParameters();
      this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the phases applied or reverted as JSON' });
    }
    override async onExecute(): Promise<void> {
      if (!this.json.value) return super.onExecute();
      const names: string[] = [];
      const event = this.actionName === 'up' ? 'migrated' : 'reverted';
      const collect = ({ name }: { name: string }) => void names.push(name);
      const options = umzug.options as { logger?: unknown };
      const logger = options.logger;
      options.logger = undefined;
      umzug.on(event, collect);
      try {
        await super.onExecute();
      } finally {
        umzug.off(event, collect);
        options.logger = logger;
      }
      const waiting = this.actionName === 'up' ? umzug.lastGated.map((g) => ({ name: g.name, reasons: g.gate.reasons, opensAt: g.gate.opensAt?.toISOString() ?? null })) : undefined;
      process.stdout.write(JSON.stringify({ command: this.actionName, [event === 'migrated' ? 'applied' : 'reverted']: names, ...(waiting ? { waiting } : {}) }, null, 2) + '\n');
    }
  };
  return new Json(umzug as unknown as Umzug);
}

/**
 * Umzug's CLI with its `create` replaced by one that also takes `--template`. UmzugCLI's constructor adds its own
 * `create` and an action name cannot be registered twice, so the parser is assembled here from Umzug's exported
 * actions (up, down, pending, executed: unchanged) and our create, which extends Umzug's.
 */
export class ZeroDowntimeCLI extends CommandLineParser {
  constructor(
    readonly umzug: ZeroDowntimeUmzug,
    options: { toolFileName: string; toolDescription: string },
  ) {
    super({ toolFilename: options.toolFileName, toolDescription: options.toolDescription });
    // Umzug's actions are typed for Umzug<object>; its context type is invariant, the actions never touch it.
    const plain = umzug as unknown as Umzug;
    this.addAction(withJson(UpAction, umzug));
    this.addAction(withJson(DownAction, umzug));
    this.addAction(new ListAction('pending', plain));
    this.addAction(new ListAction('executed', plain));
    this.addAction(new TemplateCreateAction(umzug));
  }

  override onDefineParameters(): void {}
}

export function createCli(umzug: ZeroDowntimeUmzug, options: { toolFileName: string; toolDescription: string }): UmzugCLI {
  return new ZeroDowntimeCLI(umzug, options) as unknown as UmzugCLI;
}

import { CommandLineFlagParameter, CommandLineParser, type CommandLineStringParameter } from '@rushstack/ts-command-line';
import { DownAction, ListAction, UpAction, type Umzug, type UmzugCLI } from 'umzug';
import { BackfillInterrupted } from '../backfill/keyset.js';
import { CANARY_FLAG_HELP, PACE_FLAG_HELP, parseEmergencyFlags } from '../config/backfill.js';
import type { CliProject } from '../ops/project.js';
import { TemplateCreateAction } from './create.js';
import { printJson, withJsonStdout } from './json-output.js';
import { chooseDisplayMode, createDisplay, followBackfills } from './display.js';
import { addStatusAction } from './status.js';
import { addAdoptAction } from './adopt.js';
import { addLintAction } from './lint.js';
import { addBackfillAction } from './backfill.js';
import { addFlagAction } from './flag.js';
import { addReportAction } from './report.js';
import { addPurgeAction } from './purge.js';
import { addPlanAction } from './plan.js';
import { addVerifyAction } from './verify.js';
import { addRehearseAction } from './rehearse.js';
import { addRefsAction } from './refs.js';

/** The backfill stop (a keyset backfill's or a Mongo move's) somewhere in an error's cause chain; Umzug wraps migration errors. */
function interruption(e: unknown): Error | null {
  for (let x: unknown = e, depth = 0; x instanceof Error && depth < 10; x = (x as { cause?: unknown }).cause, depth++) {
    if (x instanceof BackfillInterrupted) return x;
  }
  return null;
}

/**
 * Umzug's up or down, plus `--json`: the phases it applied or reverted (and for up, the contracts left waiting and
 * why), as one JSON document on stdout, its last line, after the backfills' JSON lines. The logger is muted
 * meanwhile, so stdout holds nothing else. `up` also stops cleanly on SIGINT/SIGTERM: the running backfill ends
 * after its batch, and the exit code is 130.
 */
function withJson<T extends new (u: Umzug) => UpAction | DownAction>(Base: T, umzug: CliProject): UpAction | DownAction {
  const Json = class extends (Base as unknown as new (u: Umzug) => UpAction) {
    private json!: CommandLineFlagParameter;
    private canary!: CommandLineStringParameter;
    private pace!: CommandLineStringParameter;
    override onDefineParameters(): void {
      super.onDefineParameters();
      this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the phases applied or reverted as JSON' });
      this.canary = this.defineStringParameter({ parameterLongName: '--canary', argumentName: 'ON_OFF', description: `canary read during this run's backfills: ${CANARY_FLAG_HELP}` });
      this.pace = this.defineStringParameter({ parameterLongName: '--pace', argumentName: 'FRACTION_OR_OFF', description: `pacing of this run's backfills: ${PACE_FLAG_HELP}` });
    }
    override async onExecute(): Promise<void> {
      const overrides = parseEmergencyFlags({ canary: this.canary.value, pace: this.pace.value });
      // --canary off silences both canaries: the backfill's pacer and the monitor's threshold, which also holds it.
      const resume = overrides.canary === false ? umzug.monitor.suspendCanary() : () => {};
      try {
        return await umzug.engine.withBackfillOptions(overrides, () => this.execute());
      } finally {
        resume();
      }
    }
    private async execute(): Promise<void> {
      if (this.actionName !== 'up') return this.run();
      // Ctrl-C (or a deploy tool's SIGTERM) during a backfill: stop after the current batch, whose progress commits
      // with it, rather than dying mid-statement. A second Ctrl-C gets Node's default: exit at once (still safe).
      const controller = new AbortController();
      const stop = () => {
        process.stderr.write('Stopping after the current batch; finished batches are kept (Ctrl-C again to quit at once)…\n');
        controller.abort();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await umzug.engine.withSignal(controller.signal, () => this.run());
      } catch (e) {
        const interrupted = controller.signal.aborted ? interruption(e) : null;
        if (!interrupted) throw e;
        const message = `Stopped: ${interrupted.message}. Every finished batch is committed; \`umzug up\` (or \`umzug backfill\`) resumes from there.`;
        if (this.json.value) printJson({ command: 'up', interrupted: true, message });
        else process.stderr.write(message + '\n');
        // 128 + SIGINT, as shells expect; set on exit because the bin sets the code from the CLI's own result.
        process.once('exit', () => {
          process.exitCode = 130;
        });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    }

    /** Runs the command with its backfills shown as `umzug backfill` shows them (bar, lines in CI, JSON lines). */
    private async run(): Promise<void> {
      const stopFollowing = followBackfills(umzug.engine, createDisplay(chooseDisplayMode({ json: this.json.value })));
      let outcome: 'done' | 'interrupted' | 'failed' = 'failed';
      try {
        await this.runCommand();
        outcome = 'done';
      } catch (e) {
        if (interruption(e)) outcome = 'interrupted';
        throw e;
      } finally {
        stopFollowing(outcome);
      }
    }

    private async runCommand(): Promise<void> {
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
      printJson({ command: this.actionName, [event === 'migrated' ? 'applied' : 'reverted']: names, ...(waiting ? { waiting } : {}) });
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
    readonly umzug: CliProject,
    options: { toolFileName: string; toolDescription: string },
  ) {
    super({ toolFilename: options.toolFileName, toolDescription: options.toolDescription });
    // Umzug's actions are typed for Umzug<object>; its context type is invariant, the actions never touch it.
    const plain = umzug as unknown as Umzug;
    this.addAction(withJson(UpAction, umzug));
    this.addAction(withJson(DownAction, umzug));
    this.addAction(new JsonListAction('pending', plain, umzug));
    this.addAction(new JsonListAction('executed', plain, umzug));
    this.addAction(new TemplateCreateAction(umzug));
  }

  override onDefineParameters(): void {}

  /** Any action's `--json`, ours or Umzug's, present or added later: stdout carries only its JSON lines meanwhile. */
  protected override async onExecute(): Promise<void> {
    const json = this.selectedAction?.parameters.some((p) => p.longName === '--json' && p instanceof CommandLineFlagParameter && p.value) ?? false;
    return json ? withJsonStdout(() => super.onExecute()) : super.onExecute();
  }
}

/**
 * Umzug's `pending` / `executed`; `--json` prints one line through printJson (Umzug's console.log would go to stderr
 * under the redirect). `pending` also lists the contracts waiting at their gate (which `up` would skip), each with
 * the reasons and when the gate opens.
 */
class JsonListAction extends ListAction {
  constructor(
    private readonly which: 'pending' | 'executed',
    private readonly list: Umzug,
    private readonly project: CliProject,
  ) {
    super(which, list);
  }
  override async onExecute(): Promise<void> {
    const json = this.getFlagParameter('--json').value;
    const listed = await this.list[this.which]();
    // Contracts whose expand has run and that wait at their gate (`pending` just evaluated the gates); one whose
    // expand is still pending is implied by it. The history is read from the state store: Umzug's executed() would
    // list and gate every migration again.
    const expanded = this.which === 'pending' ? new Set(await this.project.engine.state.executedNames()) : new Set<string>();
    const waiting = this.project.lastGated
      .filter((g) => expanded.has(g.name.replace(/:contract$/, ':expand')))
      .map((g) => ({ name: g.name, waiting: { reasons: g.gate.reasons, opensAt: g.gate.opensAt?.toISOString() ?? null } }));
    if (json) return printJson([...listed, ...waiting]);
    for (const m of listed) process.stdout.write(`${m.name}\n`);
    for (const w of waiting) process.stdout.write(`${w.name} (waiting: ${w.waiting.reasons.join('; ')})\n`);
  }
}

export function createCli(umzug: CliProject, options: { toolFileName: string; toolDescription: string }): UmzugCLI {
  return new ZeroDowntimeCLI(umzug, options) as unknown as UmzugCLI;
}

/** Umzug's command line with the zero-downtime commands added, for a configured project. */
export function zeroDowntimeCli(project: CliProject, options?: { toolFileName?: string; toolDescription?: string }): UmzugCLI {
  const cli = createCli(project, {
    toolFileName: options?.toolFileName ?? 'umzug',
    toolDescription:
      options?.toolDescription ??
      'Umzug with zero-downtime phases: `up` runs pending expands (with backfill and verify), then contracts whose gate is open. ' +
        'Before the command: --config FILE, --database-url URL, --migrations GLOB, --knexfile FILE and --env NAME (as the knex CLI takes them) choose the project; --metrics-port PORT ' +
        '[--metrics-host HOST] serves Prometheus metrics on /metrics while the command runs.',
  });
  addStatusAction(cli, project);
  addBackfillAction(cli, project);
  addFlagAction(cli, project);
  addReportAction(cli, project);
  addPurgeAction(cli, project);
  addPlanAction(cli, project);
  addVerifyAction(cli, project);
  addRehearseAction(cli, project);
  addAdoptAction(cli, project);
  addLintAction(cli, project);
  addRefsAction(cli, project);
  return cli;
}

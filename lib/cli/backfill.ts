import { CommandLineAction, type CommandLineFlagParameter, type CommandLineIntegerParameter, type CommandLineStringParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import { BackfillInterrupted } from '../backfill/keyset.js';
import { CANARY_FLAG_HELP, PACE_FLAG_HELP, parseEmergencyFlags } from '../config/backfill.js';
import { chooseDisplayMode, createDisplay } from './display.js';
import type { Project } from '../ops/project.js';
import { runBackfills } from '../ops/backfill.js';

class BackfillAction extends CommandLineAction {
  private readonly workers: CommandLineIntegerParameter;
  private readonly json: CommandLineFlagParameter;
  private readonly worker: CommandLineFlagParameter;
  private readonly canary: CommandLineStringParameter;
  private readonly pace: CommandLineStringParameter;
  constructor(private readonly umzug: Project) {
    super({
      actionName: 'backfill',
      summary: 'Runs, resumes or joins the backfills of expanded migrations, with N workers',
      documentation:
        'Walks every pending backfill in keyset batches (adaptive size; held by replication lag and your health check; paced by a canary read so that the application\'s reads stay within budget). ' +
        'Run it on several machines at once: they share the work by claiming chunks. --worker waits for a backfill to start (e.g. from `umzug up` ' +
        'on another machine) and helps until none is left. Ctrl-C stops after the current batch; progress is saved.',
    });
    this.workers = this.defineIntegerParameter({ parameterLongName: '--workers', argumentName: 'N', description: 'workers in this process (default: backfill.workers, 1)' });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print progress as JSON lines' });
    this.worker = this.defineFlagParameter({ parameterLongName: '--worker', description: 'worker mode for extra machines: wait for a backfill to start, help until none is left' });
    this.canary = this.defineStringParameter({ parameterLongName: '--canary', argumentName: 'ON_OFF', description: CANARY_FLAG_HELP });
    this.pace = this.defineStringParameter({ parameterLongName: '--pace', argumentName: 'FRACTION_OR_OFF', description: PACE_FLAG_HELP });
  }

  protected override async onExecute(): Promise<void> {
    if (this.workers.value !== undefined && this.workers.value < 1) throw new Error('--workers must be at least 1');
    const options = parseEmergencyFlags({ canary: this.canary.value, pace: this.pace.value });
    // --canary off silences both canaries: the backfill's pacer and the monitor's threshold, which also holds it.
    const resume = options.canary === false ? this.umzug.monitor.suspendCanary() : () => {};
    const display = createDisplay(chooseDisplayMode({ json: this.json.value }));
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      const done = await runBackfills(this.umzug, {
        ...(this.workers.value !== undefined ? { workers: this.workers.value } : {}),
        options,
        signal: controller.signal,
        display,
        waitForWork: this.worker.value,
      });
      if (done.length === 0) display.note(controller.signal.aborted ? 'Stopped; nothing was running.' : 'No backfill to run.');
    } catch (e) {
      if (e instanceof BackfillInterrupted) {
        display.note(`Stopped: ${e.message}.`);
        // 128 + SIGINT, as shells expect; set on exit because the bin sets the code from the CLI's own result.
        process.once('exit', () => {
          process.exitCode = 130;
        });
        return;
      }
      throw e;
    } finally {
      resume();
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  }
}

export function addBackfillAction(cli: UmzugCLI, umzug: Project): void {
  cli.addAction(new BackfillAction(umzug));
}

import cliProgress from 'cli-progress';
import type { BackfillProgress } from '../backfill/keyset.js';
import { writeJsonLine } from './json-output.js';
import type { BackfillDisplay } from '../ops/backfill.js';
import type { Engine } from '../runner.js';

export type DisplayMode = 'bar' | 'lines' | 'json';

/** A bar only where someone watches: a TTY, and not CI (CI logs keep every redraw as a line). */
export function chooseDisplayMode(opts: { json: boolean; stream?: NodeJS.WriteStream; env?: NodeJS.ProcessEnv }): DisplayMode {
  if (opts.json) return 'json';
  const env = opts.env ?? process.env;
  const ci = env.CI !== undefined && env.CI !== '' && env.CI !== 'false' && env.CI !== '0';
  return (opts.stream ?? process.stdout).isTTY && !ci ? 'bar' : 'lines';
}

function eta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** Rate over the rows this process has seen done since it started watching (others' work on other machines included). */
class Rate {
  private readonly t0 = Date.now();
  private first: number | null = null;
  observe(rowsDone: number): number {
    this.first ??= rowsDone;
    const secs = (Date.now() - this.t0) / 1000;
    return secs > 0 ? (rowsDone - this.first) / secs : 0;
  }
}

export function createDisplay(mode: DisplayMode, out: NodeJS.WritableStream = process.stdout, linesEveryMs = 5000): BackfillDisplay {
  let label = '';
  let total = 0;
  let rate = new Rate();
  let lastLine = 0;
  // JSON lines on process.stdout go through the real stream: under --json every other write to stdout goes to stderr.
  const write = (s: string) => (mode === 'json' && out === process.stdout ? writeJsonLine(s) : out.write(s + '\n'));
  const ended = (p: BackfillProgress | null, outcome: string) =>
    `backfill ${label}: ${outcome}${p ? `, ${p.rowsDone} rows walked, ${p.rowsUpdated} written in ${p.batches} batches` : ''}`;
  if (mode === 'json') {
    return {
      start: (l, t) => {
        label = l;
        write(JSON.stringify({ event: 'backfill-start', backfill: l, totalEstimate: t, at: new Date().toISOString() }));
      },
      update: (p) => write(JSON.stringify({ event: 'backfill-progress', backfill: label, ...p, at: new Date().toISOString() })),
      throttle: (l, e) => write(JSON.stringify({ event: 'backfill-throttle', backfill: l, ...e, at: new Date().toISOString() })),
      note: (message) => write(JSON.stringify({ event: 'note', message })),
      finish: (p, outcome) => write(JSON.stringify({ event: 'backfill-end', backfill: label, outcome, ...(p ?? {}), at: new Date().toISOString() })),
    };
  }
  if (mode === 'lines') {
    const line = (p: BackfillProgress) => {
      const r = rate.observe(p.rowsDone);
      const t = Math.max(total, p.rowsDone);
      const pct = t > 0 ? ` (${((100 * p.rowsDone) / t).toFixed(1)} %)` : '';
      return `backfill ${label}: ${p.rowsDone}/${t || '?'} rows${pct}, ${Math.round(r)} rows/s, ETA ${eta(r > 0 ? (t - p.rowsDone) / r : NaN)}`;
    };
    return {
      start: (l, t) => {
        label = l;
        total = t;
        rate = new Rate();
        lastLine = 0;
        write(`backfill ${l}: starting (about ${t} rows)`);
      },
      update: (p) => {
        const now = Date.now();
        const text = line(p);
        if (now - lastLine >= linesEveryMs) {
          lastLine = now;
          write(text);
        }
      },
      throttle: (l, e) =>
        write(`backfill ${l}: ${e.state === 'resumed' ? `resumed after ${e.pausedMs ?? 0} ms` : `${e.state}: ${e.reason}`}`),
      note: (m) => write(m),
      finish: (p, outcome) => write(ended(p, outcome)),
    };
  }
  // cli-progress: bar, percentage, value/total, ETA from a moving average, redraw throttling and clean TTY handling.
  let bar: cliProgress.SingleBar | null = null;
  return {
    start: (l, t) => {
      label = l;
      total = t;
      rate = new Rate();
      bar = new cliProgress.SingleBar(
        {
          format: `${l} [{bar}] {percentage}% | {value}/{total} rows | {rate} | ETA {eta_formatted}`,
          etaBuffer: 50,
          hideCursor: true,
          stream: out as NodeJS.WritableStream & { isTTY?: boolean },
        } as cliProgress.Options,
        cliProgress.Presets.shades_classic,
      );
      bar.start(Math.max(1, t), 0, { rate: '0 rows/s' });
    },
    update: (p) => {
      if (!bar) return;
      if (p.rowsDone > total) {
        total = p.rowsDone;
        bar.setTotal(total);
      }
      bar.update(p.rowsDone, { rate: `${Math.round(rate.observe(p.rowsDone))} rows/s` });
    },
    throttle: (l, e) => {
      if (e.state === 'paused') bar?.update({ rate: `paused (${e.reason})` });
      else if (e.state === 'resumed') bar?.update({ rate: 'resuming' });
      else if (e.state === 'paced' && e.busyFraction !== undefined && e.busyFraction < 1) bar?.update({ rate: `paced to ${Math.round(e.busyFraction * 100)} % by the canary` });
      void l;
    },
    note: (m) => {
      bar?.stop();
      write(m);
    },
    finish: (p, outcome) => {
      if (p && outcome === 'done') {
        bar?.setTotal(Math.max(1, p.rowsDone));
        bar?.update(p.rowsDone);
      }
      bar?.stop();
      bar = null;
      write(ended(p, outcome));
    },
  };
}

/**
 * Shows the backfills an `up` or `down` runs, as `umzug backfill` does: each one started, its progress, its holds,
 * its end. Returns the function that stops following, ending any backfill still shown as `outcome`.
 */
export function followBackfills(engine: Engine, display: BackfillDisplay): (outcome: 'done' | 'interrupted' | 'failed') => void {
  const shown = new Map<string, BackfillProgress>();
  const label = (migration: string, changeIndex: number, phase: string) =>
    `${migration.replace(/:(expand|contract)$/, '')} #${changeIndex + 1} ${PHASE_LABEL[phase] ?? phase}`;
  const unsubscribe = engine.subscribe((ev) => {
    if (ev.type === 'backfill') {
      const p = ev.progress;
      const key = `${p.migration}#${p.changeIndex}#${p.phase}`;
      if (!shown.has(key)) display.start(label(p.migration, p.changeIndex, p.phase), p.totalEstimate);
      shown.set(key, p);
      display.update(p);
      if (p.done) {
        display.finish(p, 'done');
        shown.delete(key);
      }
    } else if (ev.type === 'backfill-throttle') display.throttle(label(ev.migration, ev.changeIndex, ev.phase), ev.throttle);
  });
  return (outcome) => {
    unsubscribe();
    for (const p of shown.values()) display.finish(p, outcome);
    shown.clear();
  };
}

const PHASE_LABEL: Readonly<Record<string, string>> = {
  expand: 'expand backfill',
  contract: 'archive fill',
  undoContract: 'restore (down of the contract)',
  undoExpand: 'down of the expand',
  repair: 'repair (the expand backfill again, rows that differ)',
};

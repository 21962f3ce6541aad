// The canary phase of bench/backfill.ts: what a throttled backfill costs an application's reads.
//
// Three processes besides this one: two application writers, an independent probe (the canary's query, timed by
// the benchmark, not by the engine), and the backfill with its own canary and pacer. After a warm-up the backfill
// is switched on and off in windows (off, on, off, on, …, off): the probes of the on windows are compared with
// those of the off windows around them. On a shared machine the p99 of one 5–20 s stretch moves by 30–200 % with
// nothing running (bench/README.md), so one "before" and one "during" stretch compare two moments of the machine
// rather than the backfill; alternating windows expose both sides to the same drift. The plain before / during /
// after figures are printed as well.
import { lastLine, percentile, spawnBenchScript } from './support.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface CanaryPhaseOptions {
  readonly url: string;
  readonly table: string;
  readonly column: string;
  readonly expression: string;
  readonly rows: number;
  /** The backfill's canary settings (budget, slackMs). */
  readonly canary: { budget: number; slackMs: number };
  /** Length of one on and one off window. */
  readonly windowMs: number;
  /** Total on time at most; the backfill is stopped after it (progress kept). */
  readonly maxOnMs: number;
  readonly warmupMs: number;
  readonly log: (s: string) => void;
}

export interface CanaryPhaseResult {
  readonly offP99: number;
  readonly onP99: number;
  readonly offP50: number;
  readonly onP50: number;
  readonly offProbes: number;
  readonly onProbes: number;
  /** p99 of each on window ÷ p99 of the off windows before and after it. */
  readonly perWindow: readonly { on: number; off: number }[];
  /** The first off window, all on windows together, the last off window (the simple reading). */
  readonly before: number;
  readonly after: number;
  readonly onRowsPerSec: number;
  readonly rowsDone: number;
  readonly finished: boolean;
  readonly writerOps: number;
  readonly engineBaselineMs: number | null;
  readonly engineFinalBaselineMs: number | null;
  /** The engine's pacing decisions, as it printed them. */
  readonly paced: readonly string[];
}

export async function canaryPhase(o: CanaryPhaseOptions): Promise<CanaryPhaseResult> {
  const writers = spawnBenchScript('load.ts', ['writers', o.url, o.table, String(o.rows), '2']);
  const probe = spawnBenchScript('load.ts', ['probe', o.url, o.table, String(o.rows)]);
  const options = { canary: { ...o.canary } };
  const backfill = spawnBenchScript('backfill-child.ts', [o.url, o.table, o.column, o.expression, JSON.stringify(options), 'controlled']);
  let rowsDone = 0;
  let finished = false;
  let last: { rows?: number; done?: boolean; baselineP99Ms?: number; finalBaselineP99Ms?: number } = {};
  let engineBaselineMs = null as number | null;
  const paced: string[] = [];
  let ended = false;
  backfill.onLine((l) => {
    const e = JSON.parse(l) as { event?: string; state?: string; reason?: string; rows?: number; canaryBaselineP99Ms?: number | null };
    if (e.event === 'start') engineBaselineMs = e.canaryBaselineP99Ms ?? null;
    else if (e.event === 'throttle' && e.state !== undefined) paced.push(`${e.state}: ${e.reason}`);
    else if (e.event === undefined) {
      last = e as typeof last;
      ended = true;
    }
  });
  void backfill.exited.catch(() => (ended = true));

  // Warm-up: connections, plans, caches and the machine's own settling after the table load; the backfill process
  // starts meanwhile (its canary measures its first baseline under the same load) and waits, held.
  await sleep(o.warmupMs);
  const send = (cmd: string) => backfill.child.stdin!.write(cmd + '\n');
  const on: [number, number][] = [];
  const off: [number, number][] = [];
  let onTime = 0;
  let windowStart = Date.now();
  while (!ended && onTime < o.maxOnMs) {
    await sleep(o.windowMs);
    // An off window starts once the batch in flight at the switch has ended and its wake has passed.
    off.push([windowStart, Date.now()]);
    const goAt = Date.now();
    send('go');
    while (!ended && Date.now() - goAt < o.windowMs) await sleep(50);
    send('hold');
    const holdAt = Date.now();
    on.push([goAt, holdAt]);
    onTime += holdAt - goAt;
    windowStart = holdAt + 1000;
  }
  await sleep(o.windowMs + 1000);
  off.push([windowStart, Date.now()]);
  backfill.child.stdin!.end();
  probe.child.stdin!.end();
  writers.child.stdin!.end();
  const [, probeOut, writersOut] = await Promise.all([backfill.exited, probe.exited, writers.exited]);
  rowsDone = last.rows ?? 0;
  finished = last.done === true;
  const samples = JSON.parse(lastLine(probeOut)) as [number, number][];
  const within = (ivs: readonly [number, number][]) => samples.filter(([t]) => ivs.some(([a, b]) => t >= a && t < b)).map(([, ms]) => ms);
  const onMs = within(on);
  const offMs = within(off);
  const perWindow = on.map((w, i) => ({ on: percentile(within([w]), 99), off: percentile(within([off[i]!, off[i + 1]!].filter(Boolean)), 99) }));
  const result: CanaryPhaseResult = {
    offP99: percentile(offMs, 99),
    onP99: percentile(onMs, 99),
    offP50: percentile(offMs, 50),
    onP50: percentile(onMs, 50),
    offProbes: offMs.length,
    onProbes: onMs.length,
    perWindow,
    before: percentile(within([off[0]!]), 99),
    after: percentile(within([off[off.length - 1]!]), 99),
    onRowsPerSec: rowsDone / (onTime / 1000),
    rowsDone,
    finished,
    writerOps: (JSON.parse(lastLine(writersOut)) as { ops: number }).ops,
    engineBaselineMs,
    engineFinalBaselineMs: last.finalBaselineP99Ms ?? null,
    paced,
  };
  o.log(
    `canary: on ${result.onProbes} probes p99 ${result.onP99.toFixed(3)} ms, off ${result.offProbes} probes p99 ${result.offP99.toFixed(3)} ms; ` +
      `${on.length} on windows, ${rowsDone} rows${finished ? ' (done)' : ''}, engine baseline ${engineBaselineMs?.toFixed(3) ?? '-'} → ${result.engineFinalBaselineMs?.toFixed(3) ?? '-'} ms`,
  );
  o.log(`  per on window (p99 on / off around it): ${perWindow.map((w) => `${w.on.toFixed(2)}/${w.off.toFixed(2)}`).join('  ')}`);
  for (const p of paced.slice(0, 12)) o.log(`  engine ${p}`);
  if (paced.length > 12) o.log(`  … ${paced.length - 12} more pacing events`);
  return result;
}

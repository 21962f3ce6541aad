// One backfill in a process of its own, so that its peak RSS (maxRSS) belongs to the backfill alone and its
// JavaScript never delays the benchmark's probe.
// argv: url table column expression optionsJson [controlled]
// Prints one JSON line { rows, ms, maxRssKb, batches } at the end. With `controlled`, it starts held and reads
// `go` / `hold` lines on stdin (the benchmark's on and off windows), printing { event: 'held' | 'going', at } when
// it obeys, and { event: 'throttle', … } for the engine's pacing; stdin closing stops it (progress is kept).
import readline from 'node:readline';
import knexFactory from 'knex';
import { Db } from '../lib/db/db.js';
import { StateStore } from '../lib/engine/state.js';
import { DEFAULT_LOCK_SAFETY } from '../lib/engine/executor.js';
import { runKeysetBackfill, DEFAULT_BACKFILL, BackfillInterrupted, type BackfillOptions } from '../lib/backfill/keyset.js';

const [url, table, column, expression, json, mode] = process.argv.slice(2);
const controlled = mode === 'controlled';
const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

let go = !controlled;
let wake: () => void = () => {};
const stop = new AbortController();
if (controlled) {
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (l) => {
    go = l.trim() === 'go';
    wake();
  });
  lines.on('close', () => {
    stop.abort();
    wake();
  });
}

const knex = knexFactory({ client: 'pg', connection: url!, pool: { min: 0, max: 10 } });
const db = new Db(knex);
const state = new StateStore(db, 'zero_downtime');
const report: { baselineP99Ms?: number; finalBaselineP99Ms?: number } = {};
const started = performance.now();
let held = false;
let latest: { rowsDone: number; rowsUpdated: number; batches: number; done: boolean } | null = null;
const p = await runKeysetBackfill({
  db,
  state,
  key: { migration: `bench-${table}-${column}`, changeIndex: 0, phase: 'expand' },
  spec: { table: { schema: 'public', name: table! }, set: [{ column: column!, expression: expression! }] },
  keys: [{ name: 'id', type: 'bigint' }],
  totalEstimate: 0,
  options: { ...DEFAULT_BACKFILL, ...(JSON.parse(json!) as Partial<BackfillOptions>) },
  lock: DEFAULT_LOCK_SAFETY,
  signal: stop.signal,
  canaryReport: report,
  onProgress: (pr) => (latest = pr),
  onThrottle: (e) => say({ event: 'throttle', at: Date.now(), ...e }),
  onStart: (e) => say({ event: 'start', at: Date.now(), canaryBaselineP99Ms: e.canaryBaselineP99Ms }),
  beforeBatch: async () => {
    while (!go && !stop.signal.aborted) {
      if (!held) say({ event: 'held', at: Date.now() });
      held = true;
      await new Promise<void>((r) => (wake = r));
    }
    if (held) say({ event: 'going', at: Date.now() });
    held = false;
  },
}).catch((e: unknown) => {
  if (e instanceof BackfillInterrupted) return null;
  throw e;
});
const ms = performance.now() - started;
await knex.destroy();
const end = p ?? latest;
say({ rows: end?.rowsDone ?? 0, updated: end?.rowsUpdated ?? 0, batches: end?.batches ?? 0, done: end?.done ?? false, ms, maxRssKb: process.resourceUsage().maxRSS, ...report });

// One backfill in a process of its own, so that its peak RSS (maxRSS) belongs to the backfill alone.
// argv: url table column expression optionsJson → prints one JSON line { rows, ms, maxRssKb, batches }.
import knexFactory from 'knex';
import { Db } from '../lib/engine/db.js';
import { StateStore } from '../lib/engine/state.js';
import { DEFAULT_LOCK_SAFETY } from '../lib/engine/executor.js';
import { runKeysetBackfill, DEFAULT_BACKFILL, type BackfillOptions } from '../lib/backfill/keyset.js';

const [url, table, column, expression, json] = process.argv.slice(2);
const knex = knexFactory({ client: 'pg', connection: url!, pool: { min: 0, max: 10 } });
const db = new Db(knex);
const state = new StateStore(db, 'zero_downtime');
const started = performance.now();
const p = await runKeysetBackfill({
  db,
  state,
  key: { migration: `bench-${table}-${column}`, changeIndex: 0, phase: 'expand' },
  spec: { table: { schema: 'public', name: table! }, set: [{ column: column!, expression: expression! }] },
  keys: [{ name: 'id', type: 'bigint' }],
  totalEstimate: 0,
  options: { ...DEFAULT_BACKFILL, ...(JSON.parse(json!) as Partial<BackfillOptions>) },
  lock: DEFAULT_LOCK_SAFETY,
});
const ms = performance.now() - started;
await knex.destroy();
process.stdout.write(JSON.stringify({ rows: p.rowsDone, updated: p.rowsUpdated, batches: p.batches, ms, maxRssKb: process.resourceUsage().maxRSS }) + '\n');

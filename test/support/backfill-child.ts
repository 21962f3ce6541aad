// Runs one backfill in a process of its own, so a test can kill it (SIGKILL) or run several side by side.
// argv: databaseUrl optionsJson. The backfill increments items.hits: any row done twice (or never) shows.
import { Db } from '../../lib/db/db.js';
import { StateStore } from '../../lib/engine/state.js';
import { DEFAULT_LOCK_SAFETY } from '../../lib/engine/executor.js';
import { runKeysetBackfill, DEFAULT_BACKFILL, type BackfillOptions } from '../../lib/backfill/keyset.js';
import type { KeyColumn } from '../../lib/postgres/batch-sql.js';
import { knexFor } from './pg.js';

const [url, json] = process.argv.slice(2);
const opts = JSON.parse(json!) as { table: string; keys: KeyColumn[]; options: Partial<BackfillOptions> };
const knex = knexFor(url!);
const db = new Db(knex);
const state = new StateStore(db, 'zero_downtime');
const controller = new AbortController();
process.on('SIGINT', () => controller.abort());
state
  .ensure()
  .then(() =>
    runKeysetBackfill({
      db,
      state,
      key: { migration: 'm1', changeIndex: 0, phase: 'expand' },
      spec: { table: { schema: 'public', name: opts.table }, set: [{ column: 'hits', expression: 'hits + 1' }] },
      keys: opts.keys,
      totalEstimate: 0,
      options: { ...DEFAULT_BACKFILL, canary: false, ...opts.options },
      lock: DEFAULT_LOCK_SAFETY,
      signal: controller.signal,
    }),
  )
  .then(async (p) => {
    await knex.destroy();
    process.stdout.write(JSON.stringify(p) + '\n');
  })
  .catch(async (e: unknown) => {
    process.stderr.write(String((e as Error).stack ?? e) + '\n');
    await knex.destroy();
    process.exit((e as Error).name === 'BackfillInterrupted' ? 130 : 1);
  });

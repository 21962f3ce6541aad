import { expect } from 'chai';
import type { Knex } from 'knex';
import { freshDatabase, knexFor, pgClient } from './support/pg.js';
import { DEFAULT_CANARY } from '../lib/backfill/keyset.js';
import { spawnBackfill } from './support/backfill-spawn.js';

const ROWS = 10_000;

/**
 * The backfill increments a counter (`hits = hits + 1`), so a row written twice shows as 2 and a row skipped as 0.
 * Each trial kills the backfill process with SIGKILL at a random point (mid-batch, between batches, while planning a
 * chunk, with one or two workers), then resumes it in a new process.
 */
describe('backfill killed with SIGKILL at random points resumes to an exact result', function () {
  this.timeout(120_000);
  let url: string;
  let knex: Knex;
  before(async () => {
    url = await freshDatabase('backfill_kill');
    knex = knexFor(url);
    // A composite key, with a text part, to exercise row comparisons and text round-trips of key values.
    await knex.raw(`CREATE TABLE items (a int NOT NULL, b text NOT NULL, hits int NOT NULL DEFAULT 0, PRIMARY KEY (a, b))`);
    await knex.raw(`INSERT INTO items SELECT g / 3, 'k' || (g % 3) || ' "x"', 0 FROM generate_series(1, ${ROWS}) g`);
  });
  after(() => knex?.destroy());

  const keys = [
    { name: 'a', type: 'integer' },
    { name: 'b', type: 'text' },
  ];
  const rowsDoneByKnex = async () =>
    Number(((await knex.raw(`SELECT rows_done FROM zero_downtime.backfills`).catch(() => ({ rows: [] }))) as { rows: { rows_done: string }[] }).rows[0]?.rows_done ?? 0);

  for (let trial = 1; trial <= 12; trial++) {
    // Trials 11 and 12 run with the defaults' canary on an idle server, so an idle worker joins the one worker (the
    // progress is polled under the tool's own application_name, which the look for other clients leaves out).
    const idle = trial > 10;
    it(`trial ${trial}: every row is done exactly once${idle ? ' (canary on, an idle worker beside the one)' : ''}`, async () => {
      await knex.raw(`UPDATE items SET hits = 0`);
      await knex.raw(`DROP SCHEMA IF EXISTS zero_downtime CASCADE`);
      const workers = trial % 2 === 0 && !idle ? 2 : 1;
      const options = {
        batchSize: 300,
        minBatchSize: 50,
        maxBatchSize: 600,
        targetBatchMs: 20,
        pauseMs: 5,
        chunkRows: 2000,
        workers,
        ...(idle ? { canary: DEFAULT_CANARY, idleWorkers: 1 } : {}),
      };
      const watcher = idle ? await pgClient(url, 'umzug-zero-downtime test watcher') : null;
      const rowsDone = async () =>
        watcher
          ? Number(((await watcher.query<{ rows_done: string }>(`SELECT rows_done FROM zero_downtime.backfills`).catch(() => ({ rows: [] }))) as { rows: { rows_done: string }[] }).rows[0]?.rows_done ?? 0)
          : rowsDoneByKnex();
      if (idle) await new Promise((r) => setTimeout(r, 1100)); // the setup's statements a second in the past
      const first = spawnBackfill(url, { table: 'items', keys, options });
      // Kill somewhere between "nothing committed yet" and "almost done".
      const target = Math.floor(Math.random() * ROWS * 0.8);
      const deadline = Date.now() + 30_000;
      while ((await rowsDone()) < target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
      first.kill('SIGKILL');
      await first.exited;
      const atKill = await rowsDone();
      if (process.env.DEBUG_KILL) console.log('target', target, 'killed at', atKill);
      expect(atKill, 'the kill came after the end').to.be.lessThan(ROWS);

      const second = spawnBackfill(url, { table: 'items', keys, options });
      expect(await second.exited, second.output()).to.equal(0);
      const counts = (await knex.raw(`SELECT hits, count(*)::int AS n FROM items GROUP BY hits ORDER BY hits`)).rows as { hits: number; n: number }[];
      expect(counts, `killed at ${atKill} rows`).to.deep.equal([{ hits: 1, n: ROWS }]);
      const bf = (await knex.raw(`SELECT rows_done, done FROM zero_downtime.backfills`)).rows[0] as { rows_done: string; done: boolean };
      expect(bf.done).to.equal(true);
      expect(Number(bf.rows_done)).to.equal(ROWS);
      await watcher?.end();
    });
  }
});

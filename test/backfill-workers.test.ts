import { expect } from 'chai';
import knexFactory, { type Knex } from 'knex';
import { Db } from '../lib/db/db.js';
import { StateStore } from '../lib/engine/state.js';
import { DEFAULT_LOCK_SAFETY } from '../lib/engine/executor.js';
import { runKeysetBackfill, DEFAULT_BACKFILL } from '../lib/backfill/keyset.js';
import { ChunkStore, type Chunk } from '../lib/backfill/chunks.js';
import { WorkerLease } from '../lib/backfill/lease.js';
import { makePlanner } from '../lib/backfill/batch.js';
import { freshDatabase, knexFor, pgClient } from './support/pg.js';
import { spawnBackfill } from './support/backfill-spawn.js';

const ROWS = 12_000;
const keys = [{ name: 'id', type: 'bigint' }];

describe('backfill workers and lost connections', function () {
  this.timeout(120_000);
  let url: string;
  let knex: Knex;
  before(async () => {
    url = await freshDatabase('backfill_workers');
    knex = knexFor(url);
    await knex.raw(`CREATE TABLE items (id bigint PRIMARY KEY, hits int NOT NULL DEFAULT 0)`);
    await knex.raw(`INSERT INTO items SELECT g, 0 FROM generate_series(1, ${ROWS}) g`);
  });
  beforeEach(async () => {
    await knex.raw(`UPDATE items SET hits = 0`);
    await knex.raw(`DROP SCHEMA IF EXISTS zero_downtime CASCADE`);
  });
  after(() => knex?.destroy());

  const exactlyOnce = async () => {
    const counts = (await knex.raw(`SELECT hits, count(*)::int AS n FROM items GROUP BY hits ORDER BY hits`)).rows as { hits: number; n: number }[];
    expect(counts).to.deep.equal([{ hits: 1, n: ROWS }]);
    const bf = (await knex.raw(`SELECT rows_done, done FROM zero_downtime.backfills`)).rows[0] as { rows_done: string; done: boolean };
    expect(bf.done).to.equal(true);
    expect(Number(bf.rows_done)).to.equal(ROWS);
  };

  it('3 worker processes share one backfill and do every row exactly once', async () => {
    const options = { batchSize: 200, adaptive: false, pauseMs: 5, chunkRows: 1500, workers: 1 };
    const children = [0, 1, 2].map(() => spawnBackfill(url, { table: 'items', keys, options }));
    const codes = await Promise.all(children.map((c) => c.exited));
    expect(codes, children.map((c) => c.output()).join('\n')).to.deep.equal([0, 0, 0]);
    await exactlyOnce();
    // Each process holds its own lease: the chunks' owners show that all three did a share of the work.
    const owners = (await knex.raw(`SELECT count(DISTINCT owner)::int AS n, count(*)::int AS chunks FROM zero_downtime.backfill_chunks`)).rows[0] as {
      n: number;
      chunks: number;
    };
    // Chunks of at most 1500 keys: a dense integer key is cut by arithmetic on the table's row estimate, which a table
    // never analyzed may put below its rows (smaller chunks, more of them), and the open-ended last one.
    expect(owners.chunks).to.be.at.least(Math.ceil(ROWS / 1500) + 1);
    expect(owners.n).to.equal(3);
  });

  it('3 workers in one process (--workers 3) do every row exactly once', async () => {
    const db = new Db(knex);
    const p = await runKeysetBackfill({
      db,
      state: new StateStore(db, 'zero_downtime'),
      key: { migration: 'm1', changeIndex: 0, phase: 'expand' },
      spec: { table: { schema: 'public', name: 'items' }, set: [{ column: 'hits', expression: 'hits + 1' }] },
      keys,
      totalEstimate: ROWS,
      options: { ...DEFAULT_BACKFILL, batchSize: 500, chunkRows: 2000, workers: 3, canary: false },
      lock: DEFAULT_LOCK_SAFETY,
    });
    expect(p.done).to.equal(true);
    await exactlyOnce();
  });

  it('a chunk planned ahead goes to whichever worker runs out first; planning ahead and in line never overlap', async () => {
    const db = new Db(knex);
    const state = new StateStore(db, 'zero_downtime');
    await state.ensure();
    const key = { migration: 'm1', changeIndex: 0, phase: 'expand' as const };
    await state.startBackfill(key.migration, key.changeIndex, key.phase, ROWS);
    const chunks = new ChunkStore(db, state, key, '2026-01-01 00:00:00+00');
    const bound = makePlanner({ kind: 'keys', columns: keys, source: 'primary key' }, { table: { schema: 'public', name: 'items' }, set: [] }, 1000, 50);
    expect(await chunks.planAhead(bound), 'nothing to plan after before the first chunk').to.equal(false);
    const [one, two] = [new WorkerLease(db, 'zero_downtime'), new WorkerLease(db, 'zero_downtime')];
    await Promise.all([one.start(), two.start()]);
    try {
      const first = await chunks.claimOrPlan(one.key, bound);
      expect(first).to.include({ chunkNo: 0 });
      expect(await chunks.planAhead(bound)).to.equal(true);
      expect(await chunks.planAhead(bound), 'a free chunk is already waiting').to.equal(false);
      const second = (await chunks.claimOrPlan(two.key, bound)) as Chunk;
      expect(second.chunkNo, 'the live worker keeps chunk 0; the other takes the one planned ahead').to.equal(1);
      expect(second.lo).to.deep.equal((first as Chunk).hi);
      expect(await chunks.planAhead(bound), 'taken, so the next one is planned').to.equal(true);
      // Planners ahead and in line at once until the table is planned to its end, each claimed chunk then marked
      // done as if walked: every range must start where the one before ended.
      const walk = async (owner: number) => {
        const got = await chunks.claimOrPlan(owner, bound);
        if (typeof got !== 'string') await knex.raw(`UPDATE zero_downtime.backfill_chunks SET done = true WHERE chunk_no = ?`, [got.chunkNo]);
        return got;
      };
      for (let round = 0; round < 100; round++) {
        const got = await Promise.all([chunks.planAhead(bound), walk(one.key), chunks.planAhead(bound), walk(two.key)]);
        if (got[1] === 'all-done') break;
      }
    } finally {
      await Promise.all([one.stop(), two.stop()]);
    }
    const rows = (await knex.raw(`SELECT chunk_no, lo->>0 AS lo, hi->>0 AS hi, final FROM zero_downtime.backfill_chunks ORDER BY chunk_no`)).rows as {
      chunk_no: number; lo: string | null; hi: string | null; final: boolean;
    }[];
    expect(rows.map((r) => r.chunk_no)).to.deep.equal(rows.map((_r, i) => i));
    rows.forEach((r, i) => expect(r.lo, `chunk ${i}`).to.equal(i === 0 ? null : rows[i - 1]!.hi));
    expect(rows.at(-1)).to.include({ final: true, hi: null });
    expect(rows.filter((r) => r.final)).to.have.length(1);
    expect(Number(rows.at(-2)!.hi)).to.equal(ROWS);
  });

  it('connections terminated (pg_terminate_backend) mid-batch are retried and the backfill completes exactly once', async () => {
    const app = 'zd-backfill-victim';
    const victim = knexFactory({ client: 'pg', connection: { connectionString: url, application_name: app }, pool: { min: 0, max: 10 } });
    const db = new Db(victim);
    const killer = await pgClient(url, 'zd-killer');
    const retries: string[] = [];
    let terminated = 0;
    let running = true;
    // Terminates every connection of the tool (batch, lease) whenever one of them is inside a batch's UPDATE.
    const hunt = (async () => {
      while (running && terminated < 4) {
        const r = await killer.query(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
            WHERE application_name = $1 AND datname = current_database()
              AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = $1 AND a.datname = current_database() AND a.state = 'active' AND a.query LIKE '%UPDATE%items%')`,
          [app],
        );
        if (r.rows[0].n > 0) terminated++;
        await new Promise((res) => setTimeout(res, 10));
      }
    })();
    try {
      const p = await runKeysetBackfill({
        db,
        state: new StateStore(db, 'zero_downtime'),
        key: { migration: 'm1', changeIndex: 0, phase: 'expand' },
        // pg_sleep keeps each batch's UPDATE running long enough to be caught in the act.
        spec: { table: { schema: 'public', name: 'items' }, set: [{ column: 'hits', expression: `hits + 1 + CASE WHEN id % 50 = 0 THEN 0 * length(pg_sleep(0.002)::text) ELSE 0 END` }] },
        keys,
        totalEstimate: ROWS,
        options: { ...DEFAULT_BACKFILL, batchSize: 1000, adaptive: false, chunkRows: 10_000, workers: 1, canary: false, maxBatchAttempts: 20 },
        lock: { ...DEFAULT_LOCK_SAFETY, baseDelayMs: 20, maxDelayMs: 100 },
        onRetry: (e) => retries.push(e.code),
      });
      expect(p.done).to.equal(true);
    } finally {
      running = false;
      await hunt;
      await killer.end();
      await victim.destroy();
    }
    expect(terminated, 'the test never caught a batch in flight').to.be.greaterThan(1);
    expect(retries.length).to.be.greaterThan(0);
    await exactlyOnce();
  });
});

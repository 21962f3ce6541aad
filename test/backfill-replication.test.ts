import { expect } from 'chai';
import type { Knex } from 'knex';
import { zeroDowntime, type EngineEvent } from '../lib/index.js';
import { Db } from '../lib/db/db.js';
import { batchWalCompression } from '../lib/postgres/wal-compression.js';
import { knexFor, silentLogger } from './support/pg.js';
import { renameProject } from './support/project.js';
import { startReplicatedServer, type ReplicatedServer } from './support/replica.js';

// Enough that the backfill (at most ~6 700 rows/s: 200 rows and 30 ms per batch) is still running when the lag passes
// 2 s (up to ~2 s after the receiver stops, ~15 000 rows at most), with rows left to finish after it catches up.
const ROWS = 30_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('backfill throttled by replication lag (a real WAL receiver, stalled and continued)', function () {
  this.timeout(120_000);
  let server: ReplicatedServer;
  let knex: Knex;

  before(async () => {
    server = await startReplicatedServer();
    knex = knexFor(server.url);
    for (let i = 0; i < 100; i++) {
      const r = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'`);
      if (r.rows[0]!.n === 1) break;
      await sleep(100);
    }
    await knex.raw(`CREATE TABLE parts (id int PRIMARY KEY, code text)`);
    await knex.raw(`INSERT INTO parts SELECT g, 'c' || g FROM generate_series(1, ${ROWS}) g`);
  });
  after(async () => {
    await knex?.destroy();
    await server?.stop();
  });

  it('pauses while the standby has stopped acknowledging, holds its progress, and finishes once the standby catches up', async () => {
    const streaming = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'`);
    expect(streaming.rows[0]!.n, 'the WAL receiver is connected').to.equal(1);
    // With a standby attached the batches' page images are compressed with pglz, which every build can replay.
    expect(await batchWalCompression(new Db(knex))).to.equal('pglz');

    const project = renameProject('replication-lag', { file: '001.parts-sku.ts', table: 'parts', from: 'code', to: 'sku' });
    const throttles: { at: number; state: string; reason: string }[] = [];
    const umzug = zeroDowntime({
      knex,
      cwd: project.dir,
      migrations: 'migrations/*.ts',
      logger: silentLogger,
      backfill: { batchSize: 200, adaptive: false, pause: '30ms', canary: false, maxReplicationLag: '2s' },
      onEvent: (e: EngineEvent) => {
        if (e.type === "backfill-throttle") throttles.push({ at: Date.now(), state: e.throttle.state, reason: e.throttle.reason });
      },
    });
    const rowsDone = async () =>
      Number(((await knex.raw(`SELECT coalesce(sum(rows_done), 0)::int AS n FROM zero_downtime.backfills`).catch(() => ({ rows: [{ n: 0 }] }))) as { rows: { n: number }[] }).rows[0]!.n);

    try {
      const up = umzug.up();
      for (let i = 0; i < 400 && (await rowsDone()) < 2000; i++) await sleep(25);
      expect(await rowsDone()).to.be.lessThan(ROWS / 2);

      server.pause();
      const pausedAt = Date.now();
      for (let i = 0; i < 200 && !throttles.some((t) => t.state === 'paused' && t.at >= pausedAt && /replication lag/.test(t.reason)); i++) await sleep(50);
      const paused = throttles.find((t) => t.state === 'paused' && t.at >= pausedAt && /replication lag/.test(t.reason));
      expect(paused, `throttle events: ${JSON.stringify(throttles)}`).to.not.equal(undefined);
      expect(paused!.reason).to.match(/^replication lag \d+ ms > 2000 ms \(pg_receivewal\)$/);

      // Held: at most the batch that was already running when the pause began commits.
      const held = await rowsDone();
      await sleep(2000);
      expect((await rowsDone()) - held).to.be.at.most(200);
      expect(held).to.be.lessThan(ROWS);

      server.resume();
      await up;
      expect(throttles.some((t) => t.state === 'resumed' && t.at > paused!.at)).to.equal(true);
      expect(await rowsDone()).to.equal(ROWS);
      const bad = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM parts WHERE sku IS DISTINCT FROM code`);
      expect(bad.rows[0]!.n).to.equal(0);
    } finally {
      server.resume();
      await umzug.close();
    }
  });
});

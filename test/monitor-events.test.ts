import { expect } from 'chai';
import type { Knex } from 'knex';
import { zeroDowntime, type EngineEvent } from '../lib/index.js';
import { freshDatabase, knexFor, pgClient, silentLogger } from './support/pg.js';
import { renameProject } from './support/project.js';

const ROWS = 5000;

describe('monitor: a backfill batch that waits on a row lock is retried, reported and counted', function () {
  let url: string;
  let knex: Knex;
  before(async () => {
    url = await freshDatabase('monitor_events');
    knex = knexFor(url);
    await knex.raw(`CREATE TABLE tickets (id int PRIMARY KEY, subject text)`);
    await knex.raw(`INSERT INTO tickets SELECT g, 's' || g FROM generate_series(1, ${ROWS}) g`);
  });
  after(() => knex?.destroy());

  it('emits backfill-retry events with the SQLSTATE, counts them as lock retries in Prometheus, and completes once the holder commits', async () => {
    const project = renameProject('monitor-events', { file: '001.tickets-title.ts', table: 'tickets', from: 'subject', to: 'title' });
    const holder = await pgClient(url, 'zd-row-holder');
    const events: EngineEvent[] = [];
    let holding: Promise<unknown> | null = null;
    const umzug = zeroDowntime({
      knex,
      cwd: project.dir,
      migrations: 'migrations/*.ts',
      logger: silentLogger,
      lock: { timeout: '100ms' },
      backfill: { batchSize: 500, adaptive: false, pause: '50ms', canary: false },
      onEvent: (e) => void events.push(e),
    });
    // Before the first batch (the expand's DDL is done: a row lock earlier would hold that up instead), an application
    // transaction takes a row near the end and keeps it 1.5 s; the batch guard waits until it has it, so the backfill
    // cannot get past that row first on a slow machine.
    const removeGuard = umzug.engine.addBatchGuard(async () => {
      if (holding) return;
      let locked!: () => void;
      const taken = new Promise<void>((r) => (locked = r));
      holding = (async () => {
        await holder.query('BEGIN');
        await holder.query(`SELECT * FROM tickets WHERE id = $1 FOR UPDATE`, [ROWS - 10]);
        locked();
        await new Promise((r) => setTimeout(r, 1500));
        await holder.query('COMMIT');
      })();
      await taken;
    });
    try {
      await umzug.up();
      await holding;
      const retries = events.filter((e): e is Extract<EngineEvent, { type: 'backfill-retry' }> => e.type === 'backfill-retry');
      expect(retries.length, JSON.stringify(events.map((e) => e.type))).to.be.greaterThan(0);
      expect(retries[0]!.retry.code).to.equal('55P03');
      expect(retries[0]!.migration).to.equal('001.tickets-title.ts:expand');
      const metrics = await umzug.monitor.metrics.registry.metrics();
      const line = metrics.split('\n').find((l) => l.startsWith('umzug_zd_lock_retries_total{') && l.includes('code="55P03"') && l.includes('phase="expand"'));
      expect(line, metrics).to.not.equal(undefined);
      expect(Number(line!.split(' ').pop())).to.equal(retries.length);
      const bad = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM tickets WHERE title IS DISTINCT FROM subject`);
      expect(bad.rows[0]!.n).to.equal(0);
    } finally {
      removeGuard();
      await holder.end();
      await umzug.close();
    }
  });
});

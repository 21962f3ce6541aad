import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db } from '../lib/engine/db.js';
import { StateStore } from '../lib/engine/state.js';
import { DEFAULT_LOCK_SAFETY } from '../lib/engine/executor.js';
import { runKeysetBackfill, DEFAULT_BACKFILL, DEFAULT_CANARY, type BackfillOptions, type BackfillRun } from '../lib/backfill/keyset.js';
import { BatchSizer } from '../lib/backfill/adaptive.js';
import { Throttle, type ThrottleEvent } from '../lib/backfill/throttle.js';
import { CanaryProbe } from '../lib/backfill/canary.js';
import { resolveConfig, ConfigError } from '../lib/config.js';
import { freshDatabase, knexFor } from './support/pg.js';

const ROWS = 5_000;

describe('backfill pacing: adaptive size, split on timeout, health check, canary baseline, config', function () {
  this.timeout(60_000);
  let knex: Knex;
  let db: Db;
  before(async () => {
    const url = await freshDatabase('backfill_throttle');
    knex = knexFor(url);
    db = new Db(knex);
    await knex.raw(`CREATE TABLE items (id int PRIMARY KEY, v text, hits int NOT NULL DEFAULT 0)`);
    await knex.raw(`INSERT INTO items SELECT g, 'v' || g, 0 FROM generate_series(1, ${ROWS}) g`);
  });
  beforeEach(async () => {
    await knex.raw(`UPDATE items SET hits = 0`);
    await knex.raw(`DROP SCHEMA IF EXISTS zero_downtime CASCADE`);
  });
  after(() => knex?.destroy());

  const run = (options: Partial<BackfillOptions>, extra: Partial<BackfillRun> = {}, expression = 'hits + 1') =>
    runKeysetBackfill({
      db,
      state: new StateStore(db, 'zero_downtime'),
      key: { migration: 'm', changeIndex: 0, phase: 'expand' },
      spec: { table: { schema: 'public', name: 'items' }, set: [{ column: 'hits', expression }] },
      keys: [{ name: 'id', type: 'integer' }],
      totalEstimate: ROWS,
      options: { ...DEFAULT_BACKFILL, canary: false, ...options },
      lock: DEFAULT_LOCK_SAFETY,
      ...extra,
    });
  const exactlyOnce = async () => {
    const counts = await knex.raw(`SELECT hits, count(*)::int AS n FROM items GROUP BY hits`);
    expect(counts.rows).to.deep.equal([{ hits: 1, n: ROWS }]);
  };

  it('the sizer moves toward the target duration, within its bounds, and halves on split', () => {
    const s = new BatchSizer(1000, 100, 8000, 200);
    s.observe(1000, 20); // 10× faster than the target: grows, at most ×2 per step
    expect(s.size).to.be.greaterThan(1000).and.at.most(2000);
    for (let i = 0; i < 20; i++) s.observe(s.size, s.size / 50); // 50 rows/ms → ideal 10 000, capped at 8000
    expect(s.size).to.equal(8000);
    for (let i = 0; i < 20; i++) s.observe(s.size, s.size / 2); // 2 rows/ms → ideal 400
    expect(s.size).to.be.within(380, 420);
    s.split();
    expect(s.size).to.be.within(190, 210);
    while (s.split());
    expect(s.size).to.equal(100);
  });

  it('splits a batch that runs past its statement timeout and still finishes exactly once', async () => {
    const retries: string[] = [];
    const sizes: number[] = [];
    // ~1 ms per 10 rows: a 1000-row batch takes ~100 ms, past the 40 ms timeout; ~200-row batches fit.
    const p = await run(
      { batchSize: 1000, minBatchSize: 10, adaptive: false, batchTimeoutMs: 40 },
      { onRetry: (e) => retries.push(e.code), onProgress: (pr) => sizes.push(pr.batchSize ?? 0) },
      `hits + 1 + CASE WHEN id % 10 = 0 THEN 0 * length(pg_sleep(0.001)::text) ELSE 0 END`,
    );
    expect(p.done).to.equal(true);
    expect(retries).to.include('57014');
    expect(Math.max(...sizes)).to.be.lessThan(1000);
    await exactlyOnce();
  });

  it('pauses while the health check says no, and tells why', async () => {
    let healthyFrom = Infinity;
    const started = Date.now();
    const events: ThrottleEvent[] = [];
    let firstBatchAt = 0;
    await run(
      {
        batchSize: 1000,
        healthCheck: async () => {
          if (Date.now() - started < 700) return { ok: false, reason: 'error rate 7 %' };
          healthyFrom = Math.min(healthyFrom, Date.now());
          return true;
        },
      },
      { onThrottle: (e) => events.push(e), onProgress: () => (firstBatchAt ||= Date.now()) },
    );
    expect(firstBatchAt).to.be.at.least(healthyFrom);
    expect(events[0]).to.deep.include({ state: 'paused', reason: 'health check: error rate 7 %' });
    expect(events.some((e) => e.state === 'resumed' && (e.pausedMs ?? 0) >= 500)).to.equal(true);
    await exactlyOnce();
  });

  it('measures the canary baseline before the first batch and probes during the backfill', async () => {
    const report: { baselineP99Ms?: number; during?: number[] } = {};
    let baseline: number | null = null;
    await run({ batchSize: 200, adaptive: false, pauseMs: 5, canary: { budget: 100, slackMs: 100 } }, { canaryReport: report, onStart: (e) => (baseline = e.canaryBaselineP99Ms) });
    expect(baseline).to.be.a('number').and.greaterThan(0);
    expect(report.baselineP99Ms).to.equal(baseline);
    expect(report.during!.length).to.be.greaterThan(5);
    await exactlyOnce();
  });

  it('moves the canary baseline when the application alone is over budget, instead of stalling for good', async () => {
    const canary = new CanaryProbe(db, { schema: 'public', name: 'items' }, { kind: 'keys', columns: [{ name: 'id', type: 'integer' }], source: 'primary key' }, {
      ...DEFAULT_CANARY,
      baselineSamples: 20,
    });
    expect(await canary.start(ROWS)).to.equal(true);
    // As if the baseline had been taken in an unusually quiet moment: every probe from now on is "slow".
    canary.rebaseline(0.0001);
    await new Promise((r) => setTimeout(r, 700)); // let the probes of the recent window come in
    const events: ThrottleEvent[] = [];
    const throttle = new Throttle(db, { maxReplicationLagMs: null, canaryBudget: 1.1, canarySlackMs: 0, checkEveryMs: 1000 }, canary, (e) => events.push(e));
    try {
      const t0 = Date.now();
      await throttle.wait();
      expect(Date.now() - t0).to.be.within(4500, 15_000);
    } finally {
      await canary.stop();
    }
    expect(events.map((e) => e.state)).to.deep.equal(['paused', 'rebaselined', 'resumed']);
    expect(canary.baselineP99).to.be.greaterThan(0.0001);
  });

  it('validates the backfill keys of the config and names the bad one', () => {
    const ok = resolveConfig({ knex: { client: 'pg' }, backfill: { workers: 4, targetBatchDuration: '100ms', canary: { budget: 1.2, slack: '1ms' }, maxReplicationLag: '5s' } });
    expect(ok.backfill).to.deep.include({ workers: 4, targetBatchMs: 100, canary: { budget: 1.2, slackMs: 1 }, maxReplicationLagMs: 5000 });
    const bad = (backfill: unknown) => () => resolveConfig({ knex: { client: 'pg' }, backfill: backfill as never });
    expect(bad({ workers: 0 })).to.throw(ConfigError, /backfill\.workers must be a positive integer/);
    expect(bad({ canary: { budget: 0.5 } })).to.throw(ConfigError, /backfill\.canary\.budget must be a number ≥ 1/);
    expect(bad({ minBatchSize: 5000, maxBatchSize: 100 })).to.throw(ConfigError, /minBatchSize \(5000\) is above maxBatchSize/);
    expect(bad({ workerz: 2 })).to.throw(ConfigError, /unknown key backfill\.workerz/);
  });
});

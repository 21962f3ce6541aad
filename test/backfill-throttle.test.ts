import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db } from '../lib/db/db.js';
import { StateStore } from '../lib/engine/state.js';
import { DEFAULT_LOCK_SAFETY } from '../lib/engine/executor.js';
import { runKeysetBackfill, DEFAULT_BACKFILL, DEFAULT_CANARY, type BackfillOptions, type BackfillRun } from '../lib/backfill/keyset.js';
import { BatchSizer } from '../lib/backfill/adaptive.js';
import { LOCKED_FLOOR, LOCKED_SHARE, Throttle, type ThrottleEvent } from '../lib/backfill/throttle.js';
import { CanaryProbe, sampleProbeTargets } from '../lib/backfill/canary.js';
import { busyFraction, restAfter, MIN_BUSY_PROBES, MIN_FRACTION, ROOM_SHARE, START_FRACTION, TAIL_SHARE } from '../lib/backfill/pacer.js';
import { resolveConfig, ConfigError } from '../lib/config.js';
import { freshDatabase, knexFor, pgClient } from './support/pg.js';

const ROWS = 5_000;

describe('backfill pacing: adaptive size, split on timeout, health check, canary baseline, config', function () {
  this.timeout(60_000);
  let knex: Knex;
  let db: Db;
  let url: string;
  before(async () => {
    url = await freshDatabase('backfill_throttle');
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
  /** An application reading the table every 10 ms on a connection of its own: the traffic the canary paces for. */
  const appTraffic = () => {
    let on = true;
    const loop = (async () => {
      const app = knexFor((knex.client as { config: { connection: string } }).config.connection, 1);
      try {
        while (on) {
          await app.raw(`SELECT v FROM items WHERE id = ?`, [1 + Math.floor(Math.random() * ROWS)]);
          await new Promise((r) => setTimeout(r, 10));
        }
      } finally {
        await app.destroy();
      }
    })();
    return async () => {
      on = false;
      await loop;
    };
  };
  const exactlyOnceAt = async (hits: number) => {
    const counts = await knex.raw(`SELECT hits, count(*)::int AS n FROM items GROUP BY hits`);
    expect(counts.rows).to.deep.equal([{ hits, n: ROWS }]);
  };
  const exactlyOnce = () => exactlyOnceAt(1);

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

  it('ends a chunk with the batch that reaches its last key (no empty batch per chunk)', async () => {
    // 5 chunks of 1000 keys, 4 full batches each, and the open-ended last chunk found empty: 21 batches, not 26.
    const p = await run({ batchSize: 250, adaptive: false, chunkRows: 1000 });
    expect(p.batches).to.equal(21);
    expect(p.rowsDone).to.equal(ROWS);
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

  it('starts batching without waiting for a baseline: the canary takes it from the probes between the first batches', async () => {
    const report: { baselineP99Ms?: number; during?: number[] } = {};
    let baseline: number | null | undefined;
    const stopApp = appTraffic(); // with no other client the backfill would not wait for the canary at all
    await run({ batchSize: 200, adaptive: false, pauseMs: 5, canary: { budget: 100, slackMs: 100 } }, { canaryReport: report, onStart: (e) => (baseline = e.canaryBaselineP99Ms) }).finally(stopApp);
    expect(baseline, 'no baseline was waited for before the first batch').to.equal(null);
    expect(report.baselineP99Ms).to.be.a('number').and.greaterThan(0);
    expect(report.during!.length).to.be.greaterThan(5);
    await exactlyOnce();
  });

  it('runs batches back to back once the canary shows they do not slow the reads (batches that wait, not work)', async function () {
    this.timeout(120_000);
    const events: ThrottleEvent[] = [];
    const started = Date.now();
    let lastPacedAt = 0;
    const stopApp = appTraffic();
    await run(
      // a slack of 300 ms: on a loaded machine (CI with two other test files beside this one, which may run a lock
      // holder or pgbench) probes have spells of 20–160 ms of their own, and a write probe's commit that meets a
      // batch's has a spell more often (1.7 % of them over 159 ms once, against 0 % between batches), which a pacer
      // rightly reads as slowed probes; this test is about batches that cost the probes nothing
      { batchSize: 250, minBatchSize: 250, adaptive: false, canary: { ...DEFAULT_CANARY, baselineSamples: 30, budget: 3, slackMs: 300 } },
      {
        onThrottle: (e) => {
          events.push(e);
          if (e.state === 'paced') lastPacedAt = Date.now();
        },
      },
      // 100 ms per batch spent sleeping in the server on the batch's first row, before it locks any: no CPU, and no
      // row lock an application's write (or the canary's) would wait for
      `hits + 1 + CASE WHEN id % 250 = 1 THEN 0 * length(pg_sleep(0.1)::text) ELSE 0 END`,
    ).finally(stopApp);
    const paced = events.filter((e) => e.state === 'paced').map((e) => e.busyFraction);
    expect(paced[0]).to.be.at.most(2 * START_FRACTION); // from a tenth of the time, doubling on each fresh look
    expect(paced, JSON.stringify(events)).to.include(1);
    // within seconds on a quiet machine (5–7 s here); 20 s leaves room for a loaded one, and a pacer that never
    // opened up would not get there at all
    expect(lastPacedAt - started, JSON.stringify(events)).to.be.lessThan(20_000);
    await exactlyOnce();
  });

  it('moves the canary baseline when the application alone is over budget, instead of stalling for good', async () => {
    const canary = new CanaryProbe(db, { schema: 'public', name: 'items' }, { kind: 'keys', columns: [{ name: 'id', type: 'integer' }], source: 'primary key' }, {
      ...DEFAULT_CANARY,
      baselineSamples: 20,
    });
    expect(await canary.start()).to.equal(true);
    // As if the baseline had been taken in an unusually quiet moment: every probe from now on is "slow".
    canary.rebaseline(0.0001);
    // The tail window needs 100 probes before it judges (1 s or so; longer on a loaded machine).
    for (let i = 0; i < 300 && canary.reads.all.size < 100; i++) await new Promise((r) => setTimeout(r, 50));
    const events: ThrottleEvent[] = [];
    const throttle = new Throttle(db, { maxReplicationLagMs: null, canaryBudget: 1.1, canarySlackMs: 0, checkEveryMs: 1000, onlyUnderTraffic: false }, canary, (e) => events.push(e));
    try {
      const t0 = Date.now();
      await throttle.wait();
      // held until the idle probes (300 of them, ~3 s) replace the baseline; 100 of them came in before the wait
      expect(Date.now() - t0).to.be.within(500, 15_000);
    } finally {
      await canary.stop();
    }
    expect(events.map((e) => e.state)).to.deep.equal(['paused', 'rebaselined', 'resumed']);
    expect(canary.baselineP99).to.be.greaterThan(0.0001);
  });

  it('paces batches by the canary: solves for the duty that keeps slow probes under 1 %, opens up only on fresh evidence', () => {
    expect(busyFraction({ sBusy: null, busyProbes: 0, sIdle: null })).to.equal(START_FRACTION);
    expect(busyFraction({ sBusy: 0.006, busyProbes: 300, sIdle: 0.004 })).to.equal(1); // batches do not slow the reads (under 0.4 + 0.6 / 2)
    // 10 % of the reads during batches over budget, 0.2 % between: the room is 1 − 0.2 = 0.8 points, half of it for
    // the backfill: busy 0.4 / (10 − 0.2) ≈ 4 % of the time
    expect([TAIL_SHARE, ROOM_SHARE]).to.deep.equal([0.01, 0.5]);
    expect(busyFraction({ sBusy: 0.1, busyProbes: 300, sIdle: 0.002 })).to.be.closeTo(0.004 / 0.098, 1e-9);
    expect(busyFraction({ sBusy: 0.5, busyProbes: 300, sIdle: 0.0099 })).to.equal(MIN_FRACTION); // the app alone is at 1 %
    expect(busyFraction({ sBusy: 0.1, busyProbes: 300, sIdle: 0.008 })).to.be.closeTo(0.001 / 0.092, 1e-9); // still some room
    expect(restAfter(200, 1, 1, 100)).to.equal(0);
    expect(restAfter(200, 0.1, 1, 100)).to.equal(2800); // (200 + 100) / 0.1 − 200: busy 300 ms of every 3 s
    expect(restAfter(200, 0.1, 3, 100)).to.equal(8800); // three workers share the same 10 %

    const canary = new CanaryProbe(db, { schema: 'public', name: 'items' }, { kind: 'keys', columns: [{ name: 'id', type: 'integer' }], source: 'primary key' }, DEFAULT_CANARY);
    canary.rebaseline(1); // a first baseline of 1 ms, replaced by the idle probes' p99 (0.5 ms → budget 0.55 ms)
    const events: ThrottleEvent[] = [];
    const throttle = new Throttle(db, { maxReplicationLagMs: null, canaryBudget: 1.1, canarySlackMs: 0, checkEveryMs: 1000 }, canary, (e) => events.push(e));
    // reads and writes alike (each kind asks for its duty; the backfill gets the smaller)
    const probes = (ring: 'busy' | 'idle', n: number, slowEvery: number) => {
      for (let i = 0; i < n; i++) for (const series of canary.series) series.add((i + 1) % slowEvery === 0 ? 5 : 0.5, ring === 'busy');
    };
    probes('idle', 2000, 500); // 0.2 % of the reads between batches over budget
    expect(throttle.pace()).to.equal(START_FRACTION);
    probes('busy', 300, 1000); // fast during batches too (none slow): the duty doubles per MIN_BUSY_PROBES fresh probes, not at once
    const steps = [throttle.pace()];
    expect(throttle.pace()).to.equal(steps[0]); // no fresh probes, no change
    while (steps.at(-1)! < 1 && steps.length < 10) {
      probes('busy', MIN_BUSY_PROBES, 1000);
      steps.push(throttle.pace());
    }
    expect(steps).to.deep.equal([0.2, 0.4, 0.8, 1]);
    probes('busy', 500, 10); // now 10 % of the reads during batches are slow: down at once
    expect(throttle.pace()).to.be.closeTo(0.004 / 0.098, 1e-9);
    expect(events.filter((e) => e.state === 'paced').map((e) => e.busyFraction)).to.deep.equal([START_FRACTION, 0.2, 0.4, 0.8, 1, throttle.pace()]);
    expect(events.at(-1)!.reason, events.at(-1)!.reason).to.match(/batches 4\.1 % of the time: 10\.0 % of canary reads during batches and 0\.2 % between them over budget 0\.55 ms/);
  });

  it('files canary probes as busy while a batch runs, and a rolling idle baseline replaces the first one', async () => {
    const canary = new CanaryProbe(db, { schema: 'public', name: 'items' }, { kind: 'keys', columns: [{ name: 'id', type: 'integer' }], source: 'primary key' }, {
      ...DEFAULT_CANARY,
      baselineSamples: 10,
    });
    expect(await canary.start()).to.equal(true);
    try {
      canary.rebaseline(123); // a first baseline no probe will match
      canary.batchStarted();
      await new Promise((r) => setTimeout(r, 400));
      canary.batchEnded();
      const busy = canary.reads.busy.size;
      expect(busy).to.be.greaterThan(10);
      expect(canary.reads.idle.size).to.equal(0);
      expect(canary.baselineP99).to.equal(123); // no idle probes yet: still the first baseline
      await new Promise((r) => setTimeout(r, 150 + 50)); // past the wake
      const idleBefore = canary.reads.idle.size;
      for (let i = 0; i < 300 && canary.reads.idle.size < 300; i++) await new Promise((r) => setTimeout(r, 50));
      expect(canary.reads.idle.size).to.be.at.least(300);
      expect(canary.reads.busy.size).to.be.within(busy, busy + 12); // only the wake after the batch, never the idle time
      expect(idleBefore).to.be.lessThan(300);
      expect(canary.baselineP99).to.be.lessThan(50).and.equal(canary.reads.idle.percentile(99));
    } finally {
      await canary.stop();
    }
  });

  it("times writes as well as reads: a write probe waits on a running batch's row locks, a read never does", async () => {
    const canary = new CanaryProbe(db, { schema: 'public', name: 'items' }, { kind: 'keys', columns: [{ name: 'id', type: 'integer' }], source: 'primary key' }, DEFAULT_CANARY);
    const holder = knexFor((knex.client as { config: { connection: string } }).config.connection, 1);
    expect(await canary.start()).to.equal(true);
    try {
      // a "batch" that has updated every row and not yet committed, for 1.5 s
      canary.batchStarted();
      await holder.transaction(async (trx) => {
        await trx.raw(`UPDATE items SET hits = hits`);
        await new Promise((r) => setTimeout(r, 1500));
      });
      canary.batchEnded();
      for (let i = 0; i < 100 && canary.writes.idle.size < 20; i++) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await canary.stop();
      await holder.destroy();
    }
    // the one write probe in flight waited out the batch; reads went on at their usual speed
    expect(canary.writes.busy.percentile(100)).to.be.greaterThan(1000);
    expect(canary.reads.busy.size).to.be.greaterThan(0);
    expect(canary.reads.busy.percentile(100)).to.be.lessThan(500);
    // …and the write probe changed nothing
    await exactlyOnceAt(0);
  });

  it('runs batches back to back, uncapped, while no other client uses the database; under traffic a batch locks at most a small share of the rows', async () => {
    const quiet: ThrottleEvent[] = [];
    await new Promise((r) => setTimeout(r, 1100)); // this test's own setup statements a second in the past
    await run({ batchSize: 5000, adaptive: false, canary: DEFAULT_CANARY }, { onThrottle: (e) => quiet.push(e) });
    expect(quiet.filter((e) => e.state === 'paced')[0], JSON.stringify(quiet)).to.deep.include({ busyFraction: 1, reason: 'batches back to back: no other client is using the server' });
    expect(quiet.some((e) => e.state === 'paused')).to.equal(false);
    const quietRun = await knex.raw(`SELECT batches FROM zero_downtime.backfills`);
    expect(quietRun.rows[0].batches).to.be.at.most(2); // all 5000 rows at once (and at most the open-ended end)
    await exactlyOnce();

    await knex.raw(`UPDATE items SET hits = 0`);
    await knex.raw(`DROP SCHEMA zero_downtime CASCADE`);
    const stopApp = appTraffic();
    const busy: ThrottleEvent[] = [];
    try {
      await run({ batchSize: 5000, adaptive: false, canary: { ...DEFAULT_CANARY, budget: 100, slackMs: 100 } }, { onThrottle: (e) => busy.push(e) });
    } finally {
      await stopApp();
    }
    expect(busy.some((e) => /no other client/.test(e.reason)), JSON.stringify(busy)).to.equal(false);
    // 0.5 % of 5000 rows is 25: the floor, 1000 rows, caps each batch
    const busyRun = await knex.raw(`SELECT batches FROM zero_downtime.backfills`);
    expect(busyRun.rows[0].batches).to.be.within(5, 6);
    expect([LOCKED_SHARE, LOCKED_FLOOR]).to.deep.equal([0.005, 1000]);
    await exactlyOnce();
  });

  it('takes neither a connection that has run nothing nor a pooled connection used through Knex directly for another client', async () => {
    const fresh = await pgClient(url, '');
    try {
      await new Promise((r) => setTimeout(r, 1100)); // the test's own setup statements a second in the past
      const events: ThrottleEvent[] = [];
      // The pool's connections, busy through Knex itself (as the Umzug storage and the state store use them) while
      // the backfill looks.
      let busy = true;
      const poolTraffic = (async () => {
        while (busy) await Promise.all([knex.raw('SELECT pg_sleep(0.01)'), knex.raw('SELECT 1')]);
      })();
      try {
        await run({ batchSize: 1000, adaptive: false, canary: DEFAULT_CANARY }, { onThrottle: (e) => events.push(e) });
      } finally {
        busy = false;
        await poolTraffic;
      }
      expect(events.filter((e) => e.state === 'paced')[0], JSON.stringify(events)).to.deep.include({ busyFraction: 1, reason: 'batches back to back: no other client is using the server' });
      expect(events.some((e) => /another client/.test(e.reason)), JSON.stringify(events)).to.equal(false);
      await exactlyOnce();
    } finally {
      await fresh.end();
    }
  });

  it('adds an idle worker while no other client uses the server, and hands its chunk back when one shows up', async () => {
    // Batches in flight at once, from the hooks around each batch; 50 ms of server sleep per batch makes them overlap.
    const slow = `hits + 1 + CASE WHEN id % 250 = 1 THEN 0 * length(pg_sleep(0.05)::text) ELSE 0 END`;
    const watch = () => {
      const w = { now: 0, max: 0, maxSince: (t: number) => Math.max(0, ...w.samples.filter((x) => x.at >= t).map((x) => x.n)), samples: [] as { at: number; n: number }[] };
      const hooks: Partial<BackfillRun> = {
        beforeBatch: async () => {
          w.now++;
          w.max = Math.max(w.max, w.now);
          w.samples.push({ at: Date.now(), n: w.now });
        },
        onProgress: () => {
          w.now--;
        },
      };
      return { w, hooks };
    };
    const options = { batchSize: 250, adaptive: false, chunkRows: 1000, canary: DEFAULT_CANARY };
    await new Promise((r) => setTimeout(r, 1100)); // this test's own setup statements a second in the past
    const alone = watch();
    await run(options, alone.hooks, slow);
    expect(alone.w.max, 'two batches at once on an idle server').to.equal(2);
    await exactlyOnce();

    // Traffic arriving mid-way: the idle worker stops at its next batch and its chunk is finished by the other.
    await knex.raw(`UPDATE items SET hits = 0`);
    await knex.raw(`DROP SCHEMA zero_downtime CASCADE`);
    await new Promise((r) => setTimeout(r, 1100));
    const mid = watch();
    let trafficAt = Infinity;
    let stopLate: (() => Promise<void>) | null = null;
    let seenAt = Infinity;
    const hooks: Partial<BackfillRun> = {
      ...mid.hooks,
      onThrottle: (e) => {
        if (/another client is using the server/.test(e.reason)) seenAt = Math.min(seenAt, Date.now());
      },
      beforeBatch: async (p) => {
        await mid.hooks.beforeBatch!(p);
        if (p.rowsDone >= 1000 && !stopLate) {
          stopLate = appTraffic();
          trafficAt = Date.now();
        }
      },
    };
    try {
      await run({ ...options, canary: { ...DEFAULT_CANARY, budget: 100, slackMs: 100 } }, hooks, slow);
    } finally {
      await (stopLate as (() => Promise<void>) | null)?.();
    }
    expect(mid.w.max, 'two at once before the traffic').to.equal(2);
    // The pacer looks for other clients once a second; the idle worker stops at its next batch after that look (one
    // of 50 ms may still be running).
    expect(seenAt - trafficAt, 'the traffic was seen').to.be.below(3000);
    expect(mid.w.samples.filter((x) => x.at >= seenAt + 500).length, 'batches after the traffic was seen').to.be.greaterThan(0);
    expect(mid.w.maxSince(seenAt + 500), 'one at a time once the traffic was seen').to.equal(1);
    await exactlyOnce();
  });

  it('spreads canary targets over the table: one key per heap page', async () => {
    await knex.raw(`CREATE TABLE IF NOT EXISTS wide (id int PRIMARY KEY, pad text)`);
    await knex.raw(`TRUNCATE wide`);
    await knex.raw(`INSERT INTO wide SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g`);
    await knex.raw(`ANALYZE wide`);
    const targets = await sampleProbeTargets(db, { schema: 'public', name: 'wide' }, [{ name: 'id', type: 'integer' }], 50);
    expect(targets).to.have.length(50);
    const pages = await knex.raw(`SELECT count(DISTINCT (ctid::text::point)[0])::int AS n FROM wide WHERE id = ANY(?::int[])`, [targets.map((k) => Number(k[0]))]);
    expect(pages.rows[0].n).to.equal(50);
    expect(await sampleProbeTargets(db, { schema: 'public', name: 'wide' }, [{ name: 'id', type: 'integer' }], 50_000)).to.have.length.within(100, 20_000);
    await knex.raw(`TRUNCATE wide`);
    expect(await sampleProbeTargets(db, { schema: 'public', name: 'wide' }, [{ name: 'id', type: 'integer' }])).to.deep.equal([]);
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

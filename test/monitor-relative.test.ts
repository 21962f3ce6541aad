import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import { zeroDowntime, ThresholdBreachedError, type ZeroDowntimeUmzug } from '../lib/index.js';
import type { MonitorEvent } from '../lib/monitor/monitor.js';
import { MonitorStore } from '../lib/monitor/store.js';
import { renderHtml } from '../lib/monitor/report.js';
import { collectReport } from '../lib/ops/report.js';
import { resolveThresholds } from '../lib/config/monitor.js';
import {
  checkErrorRatio,
  checkQueryLatency,
  DEFAULT_THRESHOLDS,
  errorRatio,
  queryLatencies,
  slowQueries,
  checkMismatch,
  type StatementCounters,
} from '../lib/monitor/thresholds.js';
import { knexFor, silentLogger, testDatabaseName } from './support/pg.js';
import { startStatementsServer, type StatementsServer } from './support/pgss-server.js';
import { tempProject } from './support/project.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('monitor: relative triggers, the maths (no database)', function () {
  const c = (queryid: string, calls: number, totalMs: number): StatementCounters => ({ queryid, query: `SELECT ${queryid}`, calls, totalMs });

  it('judges each query by its mean per call over the window against its baseline mean', () => {
    const baseline = new Map([
      ['1', { meanMs: 2, calls: 1000 }],
      ['2', { meanMs: 0.02, calls: 5000 }],
      ['3', { meanMs: 4, calls: 1000 }],
    ]);
    const before = new Map([['1', c('1', 1000, 2000)], ['2', c('2', 5000, 100)], ['3', c('3', 1000, 4000)]]);
    // 1: 100 calls at 3.2 ms (1.6×, +1.2 ms): over. 2: 0.02 → 0.05 ms (2.5×, but +0.03 ms): noise. 3: 10 calls at 20 ms: too few to say.
    const now = new Map([['1', c('1', 1100, 2320)], ['2', c('2', 6000, 150)], ['3', c('3', 1010, 4200)]]);
    const lat = queryLatencies(baseline, before, now);
    expect(lat.map((q) => [q.queryid, q.calls, Number(q.meanMs.toFixed(3)), Number(q.ratio.toFixed(2))])).to.deep.equal([
      ['1', 100, 3.2, 1.6],
      ['2', 1000, 0.05, 2.5],
      ['3', 10, 20, 5],
    ]);
    expect(slowQueries(lat, DEFAULT_THRESHOLDS).map((q) => q.queryid)).to.deep.equal(['1']);
    const f = checkQueryLatency(lat, DEFAULT_THRESHOLDS, 10_000)!;
    expect(f.threshold).to.equal('query-latency');
    expect(f.value).to.be.closeTo(1.6, 1e-9);
    expect(f.limit).to.equal(1.5);
    expect(f.message).to.include('"SELECT 1"').and.include('queryid 1').and.include('3.20 ms per call').and.include('2.00 ms before the phase').and.include('mean per call stands in for the p99');
    // At exactly 1.5× it is not over; a reset (calls down) says nothing.
    expect(checkQueryLatency(queryLatencies(baseline, before, new Map([['1', c('1', 1100, 2300)]])), DEFAULT_THRESHOLDS, 10_000)).to.equal(null);
    expect(queryLatencies(baseline, before, new Map([['1', c('1', 50, 500)]]))).to.deep.equal([]);
    // thresholds.queryLatencyIncreasePercent: 100 → 2×.
    const t = resolveThresholds({ queryLatencyIncreasePercent: 100, minCallsPerWindow: 5 });
    expect(t.queryLatencyFactor).to.equal(2);
    expect(slowQueries(lat, t).map((q) => q.queryid)).to.deep.equal(['3']);
  });

  it('the error ratio leaves our own transactions out and trips 5 points over its baseline', () => {
    const before = { commits: 10_000, rollbacks: 100 };
    // 1000 more commits, of which 200 ours; 60 more rollbacks, of which 20 ours (retried batches): 40 / 840.
    const r = errorRatio(before, { commits: 11_000, rollbacks: 160 }, { commits: 200, rollbacks: 20 }, 20)!;
    expect(r.xacts).to.equal(840);
    expect(r.ratio).to.be.closeTo(40 / 840, 1e-12);
    expect(checkErrorRatio({ ratio: r.ratio, baseline: 0.01, windowMs: 10_000, xacts: r.xacts, source: 'x' }, DEFAULT_THRESHOLDS)).to.equal(null); // 4.8 % < 6 %
    const f = checkErrorRatio({ ratio: 0.07, baseline: 0.01, windowMs: 10_000, xacts: 840, source: 'pg_stat_database' }, DEFAULT_THRESHOLDS)!;
    expect(f.threshold).to.equal('error-ratio');
    expect(f.limit).to.be.closeTo(0.06, 1e-12);
    expect(f.message).to.include('7.00 % of its transactions failed').and.include('against 1.00 % before the phase');
    expect(errorRatio(before, { commits: 10_010, rollbacks: 100 }, { commits: 0, rollbacks: 0 }, 20)).to.equal(null); // too few to say
  });

  it('more than maxMismatches (100) disagreeing rows is a breach whatever their share', () => {
    expect(checkMismatch({ rowsChecked: 1_000_000, mismatches: 100 }, DEFAULT_THRESHOLDS, 'x')).to.equal(null);
    const f = checkMismatch({ rowsChecked: 1_000_000, mismatches: 101 }, DEFAULT_THRESHOLDS, 'x')!;
    expect([f.value, f.limit]).to.deep.equal([101, 100]);
    expect(checkMismatch({ rowsChecked: 1000, mismatches: 20 }, DEFAULT_THRESHOLDS, 'x')!.limit).to.equal(0.01);
  });
});

/**
 * On a server of its own with pg_stat_statements: an application loop (point reads through a function, point
 * updates, and, when told, failing transactions) runs before and through a backfill of another table.
 */
describe('monitor: relative triggers against the application’s own queries and error rate', function () {
  this.timeout(60_000);
  let server: StatementsServer;
  let n = 0;

  before(async function () {
    this.timeout(120_000);
    server = await startStatementsServer();
  });

  after(async () => {
    await server?.stop();
  });

  interface App {
    readonly knex: Knex;
    readonly url: string;
    slow(seconds: number): Promise<void>;
    failShare: number;
    stop(): Promise<void>;
    readonly counts: { reads: number; failures: number };
  }

  /** `rows`: of the table the backfill walks (4 000 rows a second at most: 500 a batch, 120 ms apart). */
  async function app(rows = 30_000): Promise<App> {
    const database = `zdt_rel_${process.pid}_${++n}`;
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.end();
    const url = server.url.replace(/\/postgres$/, `/${database}`);
    const knex = knexFor(url, 6);
    await knex.raw('CREATE EXTENSION pg_stat_statements');
    await knex.raw(`CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, note text)`);
    await knex.raw(`INSERT INTO items (name, note) SELECT 'name ' || g, repeat('x', 40) FROM generate_series(1, ${rows}) g`);
    await knex.raw(`CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)`);
    await knex.raw(`INSERT INTO accounts (id) SELECT g FROM generate_series(1, 1000) g`);
    await knex.raw(`CREATE TABLE knob (delay float8 NOT NULL)`);
    await knex.raw(`INSERT INTO knob VALUES (0)`);
    await knex.raw(`CREATE FUNCTION app_delay() RETURNS int LANGUAGE plpgsql AS $$
      DECLARE d float8; BEGIN SELECT delay INTO d FROM knob; IF d > 0 THEN PERFORM pg_sleep(d); END IF; RETURN 0; END $$`);
    await knex.raw('ANALYZE');
    const counts = { reads: 0, failures: 0 };
    let running = true;
    const a: App = {
      knex,
      url,
      counts,
      failShare: 0,
      slow: async (s) => void (await knex.raw('UPDATE knob SET delay = ?', [s])),
      stop: async () => {
        running = false;
        await Promise.all(loops);
      },
    };
    const loop = async () => {
      const c = new pg.Client({ connectionString: url, application_name: 'the-app' });
      await c.connect();
      try {
        for (let i = 0; running; i++) {
          const id = 1 + Math.floor(Math.random() * 1000);
          await c.query('SELECT balance FROM accounts WHERE id = $1 AND app_delay() = 0', [id]);
          counts.reads++;
          await c.query('UPDATE accounts SET balance = balance + 1 WHERE id = $1', [id]);
          if (Math.random() < a.failShare) {
            await c.query('SELECT 1 / $1::int AS x', [0]).catch(() => counts.failures++);
          } else {
            await c.query('SELECT 1 / $1::int AS x', [1]);
          }
          if (i % 50 === 0) await sleep(1);
        }
      } finally {
        await c.end();
      }
    };
    const loops = [loop(), loop()];
    await sleep(1500); // the application's history before the phase: the baseline
    return a;
  }

  function project(a: App, name: string, opts: { autoRollback?: boolean; rebaselineAfter?: string } = {}): ZeroDowntimeUmzug {
    const p = tempProject(`monitor-relative-${name}`);
    p.write(
      `2026.12.05T10.00.00.items-label.ts`,
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'items', from: 'name', to: 'label' })] });
`,
    );
    return zeroDowntime({
      knex: a.knex,
      cwd: p.dir,
      contract: { after: '1h', requireNoQueries: false },
      backfill: { batchSize: 500, adaptive: false, canary: false, pause: '120ms' },
      // monitor.canary.rebaselineAfter is the relative triggers' too; the canary reads nothing the backfill touches.
      monitor: { canary: opts.rebaselineAfter ? { sql: 'SELECT 1', rebaselineAfter: opts.rebaselineAfter } : false, sampleEvery: '250ms', relative: { window: '2s' } },
      autoRollback: opts.autoRollback ?? false,
      logger: silentLogger,
    });
  }

  const relativeBreaches = (events: MonitorEvent[]) =>
    events.flatMap((e) => (e.type === 'breach' && (e.breach.threshold === 'query-latency' || e.breach.threshold === 'error-ratio') ? [e.breach] : []));

  it('steady application load through a backfill: no relative breach, and the windows are recorded', async () => {
    const a = await app();
    const umzug = project(a, 'steady');
    const events: MonitorEvent[] = [];
    umzug.monitor.on((e) => events.push(e));
    try {
      await umzug.up();
      await umzug.monitor.flush();
      expect(relativeBreaches(events).map((b) => b.message)).to.deep.equal([]);
      const samples = await new MonitorStore(umzug.db, umzug.config.stateSchema).listQuerySamples();
      const reads = samples.filter((s) => s.kind === 'query' && /FROM accounts WHERE id = \$1 AND app_delay/.test(s.query ?? ''));
      expect(reads.length, 'windows of the application read recorded').to.be.at.least(3);
      expect(samples.filter((s) => s.kind === 'errors').length).to.be.at.least(1);
      expect(samples.some((s) => /_zd_|monitor_|pg_stat_statements/.test(s.query ?? '')), 'none of our own statements').to.equal(false);
      expect(a.counts.reads).to.be.greaterThan(1000);
    } finally {
      await a.stop();
      await umzug.close();
      await a.knex.destroy();
    }
  });

  it('an injected slow query: a latency breach naming the query pauses the backfill, which goes on once it is fast again', async () => {
    // As below: the breach comes within a relative window (2 s, ~8 000 rows) of the slow read at 2 000 rows.
    const a = await app(20_000);
    const umzug = project(a, 'slow');
    const events: MonitorEvent[] = [];
    umzug.monitor.on((e) => {
      events.push(e);
      // The cause goes away: the next window is back within the limit and the backfill resumes.
      if (e.type === 'paused') setTimeout(() => void a.slow(0), 500);
    });
    let injected = false;
    umzug.engine.addBatchGuard(async (p) => {
      if (injected || p.rowsDone < 2000) return;
      injected = true;
      await a.slow(0.01);
    });
    try {
      await umzug.up();
      expect(injected).to.equal(true);
      const breaches = relativeBreaches(events);
      expect(breaches.map((b) => b.threshold)).to.deep.equal(['query-latency']);
      expect(breaches[0]!.message).to.match(/the application's own query "SELECT balance FROM accounts WHERE id = \$1 AND app_delay\(\) = \$2" \(pg_stat_statements queryid -?\d+\) took [\d.]+ ms per call/);
      expect(breaches[0]!.value).to.be.greaterThan(1.5);
      expect(events.map((e) => e.type)).to.include.members(['breach', 'paused', 'resolved', 'resumed']);
      const status = await umzug.status();
      expect(status.monitor!.recentBreaches.map((b) => b.threshold)).to.include('query-latency');
      expect(status.monitor!.health).to.equal('green');
      const html = renderHtml(await collectReport(umzug));
      expect(html).to.include('Application queries: mean latency ÷ baseline');
      expect(html).to.include('query-latency: the application&#39;s own query');
    } finally {
      await a.stop();
      await umzug.close();
      await a.knex.destroy();
    }
  });

  it('a query that stays slow with the backfill paused for monitor.canary.rebaselineAfter: its last window becomes the baseline, the breach closes, the backfill goes on', async () => {
    // The breach comes within a relative window (2 s, ~8 000 rows) of the slow read at 2 000 rows, well before the
    // backfill's end; what is left after the pause only has to finish.
    const a = await app(20_000);
    const umzug = project(a, 'rebaseline', { rebaselineAfter: '3s' });
    const events: MonitorEvent[] = [];
    umzug.monitor.on((e) => events.push(e));
    let injected = false;
    umzug.engine.addBatchGuard(async (p) => {
      if (injected || p.rowsDone < 2000) return;
      injected = true;
      await a.slow(0.01); // and it stays slow: the application's own problem, not the backfill's
    });
    try {
      await umzug.up();
      expect(injected).to.equal(true);
      const breaches = relativeBreaches(events);
      expect(breaches.map((b) => b.threshold), 'one breach: the new baseline holds the slow read').to.deep.equal(['query-latency']);
      const resolved = events.flatMap((e) => (e.type === 'resolved' && e.breach.threshold === 'query-latency' ? [e.resolution] : []));
      expect(resolved).to.have.length(1);
      expect(resolved[0]).to.match(
        /^still over after \d+ s with the backfill paused, so the backfill is not the cause: the last window is the new baseline \(queryid -?\d+ \d+\.\d\d → \d+\.\d\d ms/,
      );
      // The new baseline is the slow mean (about 10 ms a call), not the fast one it replaced.
      const [, was, now] = /queryid -?\d+ (\d+\.\d\d) → (\d+\.\d\d) ms/.exec(resolved[0]!)!;
      expect(Number(now)).to.be.greaterThan(Math.max(5, Number(was) * 1.5));
      const types = events.map((e) => e.type);
      expect(types.indexOf('resumed')).to.be.greaterThan(types.indexOf('resolved'));
      expect(await umzug.engine.state.executedNames()).to.deep.equal(['2026.12.05T10.00.00.items-label.ts:expand']);
      const status = await umzug.status();
      expect(status.monitor!.health).to.equal('green');
      expect(status.monitor!.recentBreaches.find((b) => b.threshold === 'query-latency')!.resolution).to.equal(resolved[0]);
    } finally {
      await a.stop();
      await umzug.close();
      await a.knex.destroy();
    }
  });

  it('without pg_stat_statements in the database, the monitor says why the latency trigger is off once, not once per phase', async () => {
    const database = testDatabaseName('rel_note');
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
    await admin.end();
    const knex = knexFor(server.url.replace(/\/postgres$/, `/${database}`), 4);
    await knex.raw(`CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, note text)`);
    await knex.raw(`INSERT INTO items (name, note) SELECT 'name ' || g, 'note ' || g FROM generate_series(1, 2000) g`);
    const p = tempProject('monitor-relative-note');
    // Two changes, two backfills, two phases the monitor watches.
    p.write(
      '2026.12.05T10.00.00.items-two.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'items', from: 'name', to: 'label' }), renameColumn({ table: 'items', from: 'note', to: 'remark' })] });
`,
    );
    const logged: Record<string, unknown>[] = [];
    const keep = (m: unknown) => void (m && typeof m === 'object' && logged.push(m as Record<string, unknown>));
    const umzug = zeroDowntime({
      knex,
      cwd: p.dir,
      contract: { after: '1h', requireNoQueries: false },
      backfill: { batchSize: 500, adaptive: false, canary: false, pause: '20ms' },
      monitor: { canary: false, relative: { window: '2s' } },
      logger: { ...silentLogger, info: keep, warn: keep },
    });
    try {
      await umzug.up();
      const notes = logged.filter((m) => m.event === 'relative-note');
      expect(notes.map((m) => m.note)).to.deep.equal([
        'the query-latency trigger is off: pg_stat_statements is loaded but not installed in this database — run CREATE EXTENSION pg_stat_statements',
      ]);
      expect(notes[0]!.change).to.equal(0);
      expect((await new MonitorStore(umzug.db, umzug.config.stateSchema).latestSamples()).map((x) => x.changeIndex).sort(), 'both phases were watched').to.deep.equal([0, 1]);
      // status still says it, every time.
      expect((await umzug.status()).monitor!.relative!.note).to.equal(notes[0]!.note);
    } finally {
      await umzug.close();
      await knex.destroy();
    }
  });

  it('an injected error rate: an error-ratio breach, and autoRollback reverts the change', async () => {
    const a = await app();
    const umzug = project(a, 'errors', { autoRollback: true });
    const events: MonitorEvent[] = [];
    umzug.monitor.on((e) => events.push(e));
    let injected = false;
    umzug.engine.addBatchGuard(async (p) => {
      if (injected || p.rowsDone < 2000) return;
      injected = true;
      a.failShare = 0.5;
    });
    try {
      const err = await umzug.up().then(
        () => null,
        (e: unknown) => e as Error,
      );
      expect(err, 'up must fail').to.not.equal(null);
      const cause = (err as Error & { cause?: unknown }).cause ?? err;
      expect(cause).to.be.instanceOf(ThresholdBreachedError);
      expect((cause as ThresholdBreachedError).rolledBack).to.equal(true);
      expect((cause as ThresholdBreachedError).message).to.match(/error-ratio: the application's error rate rose: [\d.]+ % of its transactions failed/);
      expect(relativeBreaches(events).map((b) => b.threshold)).to.deep.equal(['error-ratio']);
      expect(a.counts.failures).to.be.greaterThan(20);
      expect(await umzug.engine.state.executedNames()).to.deep.equal([]);
      const status = await umzug.status();
      expect(status.monitor!.openBreaches.map((b) => [b.threshold, b.action])).to.deep.equal([['error-ratio', 'rolled-back']]);
    } finally {
      await a.stop();
      await umzug.close();
      await a.knex.destroy();
    }
  });
});

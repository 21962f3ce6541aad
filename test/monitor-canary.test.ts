import { expect } from 'chai';
import type { Knex } from 'knex';
import type pg from 'pg';
import { zeroDowntime, ConfigError, ThresholdBreachedError, type MonitorEvent, type ZeroDowntimeUmzug } from '../lib/index.js';
import { resolveConfig } from '../lib/config.js';
import { formatStatus } from '../lib/ops/status.js';
import { collectReport } from '../lib/ops/report.js';
import { renderHtml } from '../lib/monitor/report.js';
import { checkCanary, checkErrors, checkMismatch, checkStall, DEFAULT_THRESHOLDS } from '../lib/monitor/thresholds.js';
import { DEFAULT_CANARY } from '../lib/backfill/keyset.js';
import { freshDatabase, knexFor, pgClient, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';

const ROWS = 60_000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('monitor: thresholds, config', function () {
  it('explains each breach in plain words, and only past the limit', () => {
    const t = DEFAULT_THRESHOLDS;
    expect(checkMismatch({ rowsChecked: 10_000, mismatches: 100 }, t, 'x')).to.equal(null); // exactly 1 %: tolerated
    expect(checkMismatch({ rowsChecked: 10_000, mismatches: 101 }, t, 'users #1')!.message).to.match(/found 101 of 10000 rows \(1\.01 %\)/);
    // The default line is the pacer's budget line: baseline × 1.5, and at least baseline + 2 ms.
    expect(checkCanary({ p99Ms: 6, p50Ms: 1, baselineMs: 4, windowMs: 10_000, probe: 'a read' }, t)).to.equal(null);
    expect(checkCanary({ p99Ms: 2.9, p50Ms: 0.5, baselineMs: 1, windowMs: 10_000, probe: 'a read' }, t)).to.equal(null); // 1.5× = 1.5 < 1 + 2 ms
    const c = checkCanary({ p99Ms: 30, p50Ms: 2, baselineMs: 4, windowMs: 10_000, probe: 'a read of one "public"."users" row by key', overForMs: 15_000 }, t)!;
    expect(c.limit).to.equal(6);
    expect(c.message).to.include(
      "took 30 ms at the 99th percentile (median 2.00 ms) over the last 10s, against a baseline of 4.00 ms (the p99 of the application's own load between batches); " +
        'the limit is 6.00 ms (1.5× the baseline), and has been over it for 15s',
    );
    expect(checkErrors(new Map([['lock retry (55P03)', 20]]), t)).to.equal(null);
    expect(checkErrors(new Map([['lock retry (55P03)', 15], ['canary probe failed', 6]]), t)!.message).to.match(/^21 errors in the last 1m 0s \(lock retry \(55P03\) ×15, canary probe failed ×6\)/);
    const now = Date.now();
    expect(checkStall({ lastProgressAt: now - 3_599_000, now, rowsDone: 1, totalEstimate: 2, what: 'm' }, t)).to.equal(null);
    expect(checkStall({ lastProgressAt: now - 3_700_000, now, rowsDone: 1, totalEstimate: 2, what: 'm #1' }, t)!.message).to.match(/has not advanced for 1h 1m, since .* \(50\.0 % done\)/);
  });

  it('validates thresholds, autoRollback and monitor in the config, naming the field', () => {
    const base = { knex: { client: 'pg' } };
    expect(resolveConfig(base).monitor.thresholds).to.deep.equal(DEFAULT_THRESHOLDS);
    // The canary line is the pacer's budget, written once: a budget of the user's moves both; an explicit threshold wins.
    expect([DEFAULT_THRESHOLDS.canaryFactor, DEFAULT_THRESHOLDS.canaryMinIncreaseMs]).to.deep.equal([DEFAULT_CANARY.budget, DEFAULT_CANARY.slackMs]);
    expect(resolveConfig({ ...base, backfill: { canary: { budget: 3, slack: '7ms' } } }).monitor.thresholds).to.deep.include({ canaryFactor: 3, canaryMinIncreaseMs: 7 });
    expect(resolveConfig({ ...base, backfill: { canary: { budget: 3 } }, thresholds: { canaryP99Factor: 2, canarySustainedWindows: 1 } }).monitor.thresholds).to.deep.include({
      canaryFactor: 2,
      canaryMinIncreaseMs: DEFAULT_CANARY.slackMs,
      canarySustainedWindows: 1,
    });
    expect(resolveConfig(base).monitor.autoRollback).to.equal(false);
    const r = resolveConfig({ ...base, thresholds: { mismatchPercent: 0.5, noProgressFor: '30m' }, autoRollback: true, monitor: { canary: false } });
    expect(r.monitor.thresholds.mismatchRatio).to.equal(0.005);
    expect(r.monitor.thresholds.noProgressMs).to.equal(1_800_000);
    expect(r.monitor.canary).to.equal(false);
    const bad: [unknown, RegExp][] = [
      [{ thresholds: { mismatch: 1 } }, /unknown key thresholds\.mismatch/],
      [{ thresholds: { mismatchPercent: 120 } }, /thresholds\.mismatchPercent must be a number from 0 to 100/],
      [{ thresholds: { canaryP99Factor: 0.5 } }, /thresholds\.canaryP99Factor/],
      [{ thresholds: { noProgressFor: 'soon' } }, /thresholds\.noProgressFor must be a duration/],
      [{ autoRollback: 'yes' }, /autoRollback must be true or false/],
      [{ monitor: { canary: { every: '1s' } } }, /unknown key monitor\.canary\.every/],
    ];
    for (const [extra, re] of bad) {
      expect(() => resolveConfig({ ...base, ...(extra as object) })).to.throw(ConfigError, re);
    }
  });
});

/**
 * A lock holder that keeps grabbing the table (ACCESS EXCLUSIVE for 250 ms, again and again) makes the application's
 * reads slow. The monitor's canary must see it, the canary threshold must trip, the backfill must stand still while
 * it lasts (status red, saying why), and go on by itself once the reads are fast again.
 */
describe('monitor: injected slowdown trips the canary threshold and pauses the backfill', function () {
  let url: string;
  let knex: Knex;
  let umzug: ZeroDowntimeUmzug;

  before(async () => {
    url = await freshDatabase('monitor_canary');
    knex = knexFor(url);
    await knex.raw(`CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, email text)`);
    await knex.raw(`INSERT INTO accounts (name, email) SELECT 'account ' || g, 'a' || g || '@example.com' FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE accounts');
    const p = tempProject('monitor-canary');
    p.write(
      '2026.11.24T11.00.00.accounts-full-name.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'accounts', from: 'name', to: 'full_name' })] });
`,
    );
    umzug = zeroDowntime({
      knex,
      cwd: p.dir,
      contract: { after: '1h' },
      // The backfill's own canary would pause it too: off, so that what pauses it here is the monitor's threshold.
      backfill: { batchSize: 500, adaptive: false, pause: '20ms', canary: false },
      monitor: { canary: { interval: '20ms', window: '1s', baselineSamples: 30, timeout: '2s' }, sampleEvery: '200ms' },
      thresholds: { canaryP99Factor: 2, canaryMinIncrease: '25ms' },
      logger: silentLogger,
    });
  });

  after(async () => {
    await umzug?.close();
    await knex?.destroy();
  });

  it('pauses the backfill while reads are slow, turns status red with the reason, and resumes when they are fast again', async () => {
    const events: MonitorEvent[] = [];
    const waitFor = (type: MonitorEvent['type']) =>
      new Promise<MonitorEvent>((resolve) => {
        const found = events.find((e) => e.type === type);
        if (found) return resolve(found);
        const off = umzug.monitor.on((e) => {
          if (e.type === type) {
            off();
            resolve(e);
          }
        });
      });
    umzug.monitor.on((e) => events.push(e));

    // The slowdown starts once the backfill is well under way (10 % of the rows).
    let holder: { client: pg.Client; running: boolean; loop: Promise<void> } | null = null;
    const startHolder = async () => {
      const client = await pgClient(url, 'lock-holder');
      const h = { client, running: true, loop: Promise.resolve() };
      h.loop = (async () => {
        while (h.running) {
          await client.query('BEGIN');
          await client.query('LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE');
          await client.query('SELECT pg_sleep(0.25)');
          await client.query('COMMIT');
          await sleep(50);
        }
      })();
      holder = h;
    };
    let starting: Promise<void> | null = null;
    // …and once the monitor knows the application's own latency (its first idle probes), so it has a baseline to compare to.
    let baselineKnown = false;
    umzug.monitor.on((e) => (baselineKnown ||= e.type === 'baseline'));
    umzug.engine.subscribe((e) => {
      if (e.type === 'backfill' && e.progress.rowsDone >= ROWS / 10 && baselineKnown && !starting) starting = startHolder();
    });

    const scenario = async (up: Promise<unknown>): Promise<void> => {
    const upDone = up.then(() => 'up finished without a pause');
    const first = await Promise.race([waitFor('paused'), upDone, sleep(30_000).then(() => 'no pause within 30 s')]);
    expect(first, String(first)).to.be.an('object');
    const paused = first as Extract<MonitorEvent, { type: 'paused' }>;
    expect(paused.reasons.join(' ')).to.match(/the application.s reads got slow: a read of one public\.accounts row by key took \d+ ms at the 99th percentile/);
    expect(paused.reasons.join(' ')).to.match(/against a baseline of [\d.]+ ms \(the p99 of the application.s own load between batches\); the limit is/);

    // Paused: the backfill stands still (no batch commits), holding no lock of its own.
    const rowsDone = async () =>
      Number((await knex.raw<{ rows: { n: string }[] }>(`SELECT rows_done AS n FROM zero_downtime.backfills`)).rows[0]!.n);
    const before = await rowsDone();
    await sleep(1200);
    expect(await rowsDone()).to.equal(before);
    expect(before).to.be.lessThan(ROWS);
    const locks = await knex.raw<{ rows: { n: number }[] }>(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.relation = 'accounts'::regclass AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND a.application_name NOT IN ('lock-holder')`,
    );
    expect(locks.rows[0]!.n, 'nobody but the lock holder (and the canary waiting for it) holds accounts').to.be.at.most(1);

    // Status: red, and why.
    const red = await umzug.status();
    expect(red.monitor!.health).to.equal('red');
    expect(red.monitor!.openBreaches.map((b) => [b.threshold, b.action])).to.deep.equal([['canary', 'paused']]);
    const text = formatStatus(red);
    expect(text).to.match(/Health: RED — 1 threshold breach open/);
    expect(text).to.match(/canary \(paused\) 2026\.11\.24T11\.00\.00\.accounts-full-name\.ts:expand #1/);

    // The slowdown ends: the reads are fast again, the backfill resumes by itself and finishes.
    const h = holder as { client: pg.Client; running: boolean; loop: Promise<void> } | null;
    expect(h, 'the lock holder ran').to.not.equal(null);
    h!.running = false;
    await h!.loop;
    await h!.client.end();
    const resumed = (await Promise.race([waitFor('resumed'), sleep(20_000).then(() => null)])) as Extract<MonitorEvent, { type: 'resumed' }> | null;
    expect(resumed, 'resumed within 20 s of the slowdown ending').to.not.equal(null);
    expect(resumed!.pausedMs).to.be.greaterThan(1200);
    await up;
    expect(await rowsDone()).to.equal(ROWS);
    const green = await umzug.status();
    expect(green.monitor!.health).to.equal('green');
    expect(green.monitor!.recentBreaches.map((b) => b.threshold)).to.include('canary');
    expect(events.map((e) => e.type)).to.include.ordered.members(['baseline', 'breach', 'paused', 'resolved', 'resumed']);

    // Prometheus metrics of the run.
    const m = await umzug.monitor.metrics.text();
    expect(m).to.match(/umzug_zd_backfill_progress_ratio\{[^}]*\} 1\n/);
    expect(m).to.match(/umzug_zd_canary_latency_seconds\{[^}]*quantile="0\.99"[^}]*\} \d/);
    expect(m).to.match(/umzug_zd_backfill_batch_duration_seconds_count\{[^}]*\} (\d+)/);
    expect(Number(/umzug_zd_backfill_batch_duration_seconds_count\{[^}]*\} (\d+)/.exec(m)![1])).to.be.greaterThan(100);
    expect(m).to.match(/umzug_zd_verify_consistency_ratio\{[^}]*\} 1\n/);
    expect(m).to.match(/umzug_zd_threshold_breached\{threshold="canary"[^}]*\} 0\n/);

    // The HTML report: self-contained, with the canary against its baseline, the pause and the breach.
    const html = renderHtml(await collectReport(umzug));
    expect(html).to.include('Canary latency vs baseline');
    expect(html).to.include('<svg');
    expect(html).to.include('<title>paused</title>');
    expect(html).to.match(/<td>canary<\/td><td>paused<\/td>/);
    expect(html).to.not.match(/<script|<link|src=|href=/);
    };

    const up = umzug.up();
    try {
      await scenario(up);
    } finally {
      // On a failed assertion too: no lock holder or backfill may outlive the test.
      const h = holder as { client: pg.Client; running: boolean; loop: Promise<void> } | null;
      if (h?.running) {
        h.running = false;
        await h.loop.catch(() => undefined);
        await h.client.end();
      }
      await up.catch(() => undefined);
    }
  });
});


/** ACCESS EXCLUSIVE on `table` for 250 ms, every 300 ms, until stopped: every read of the table waits. */
async function startLockHolder(url: string, table: string): Promise<{ stop(): Promise<void> }> {
  const client = await pgClient(url, 'lock-holder');
  let running = true;
  const loop = (async () => {
    while (running) {
      await client.query('BEGIN');
      await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      await client.query('SELECT pg_sleep(0.25)');
      await client.query('COMMIT');
      await sleep(50);
    }
  })();
  return {
    async stop() {
      if (!running) return;
      running = false;
      await loop.catch(() => undefined);
      await client.end();
    },
  };
}

/**
 * A 100 000-row table `table` and a project renaming its `ref`, whose monitor trips on a lock holder within a few
 * seconds (fast canary, a 1 s window): the setup of the breach tests below.
 */
function breachCase(name: string, table: string, extra: { autoRollback?: boolean } = {}) {
  const t = { url: '', knex: undefined as unknown as Knex };
  before(async () => {
    t.url = await freshDatabase(name);
    t.knex = knexFor(t.url);
    await t.knex.raw(`CREATE TABLE ${table} (id bigserial PRIMARY KEY, ref text NOT NULL)`);
    await t.knex.raw(`INSERT INTO ${table} (ref) SELECT '${table} ' || g FROM generate_series(1, 100000) g`);
    await t.knex.raw(`ANALYZE ${table}`);
  });
  after(async () => {
    await t.knex?.destroy();
  });
  const umzug = (file: string) => {
    const p = tempProject(name);
    p.write(
      file,
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: '${table}', from: 'ref', to: 'reference' })] });
`,
    );
    return zeroDowntime({
      knex: t.knex,
      cwd: p.dir,
      backfill: { batchSize: 500, adaptive: false, pause: '20ms', canary: false },
      monitor: { canary: { interval: '20ms', window: '1s', baselineSamples: 30 }, sampleEvery: '200ms' },
      thresholds: { canaryMinIncrease: '25ms' },
      ...extra,
      logger: silentLogger,
    });
  };
  return { t, umzug };
}

describe('monitor: a canary breach with autoRollback reverts the in-flight change', function () {
  const { t, umzug: project } = breachCase('monitor_canary_rollback', 'orders', { autoRollback: true });

  it('stops the backfill at the breach and undoes the expand, even with the lock holder still there', async () => {
    const { url, knex } = t;
    const umzug = project('2026.11.24T13.00.00.orders-reference.ts');
    const columns = async () =>
      (await knex.raw<{ rows: { c: string }[] }>(`SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'orders' ORDER BY 1`)).rows.map((r) => r.c);
    const before = await columns();
    let holder = null as Promise<{ stop(): Promise<void> }> | null;
    let baselineKnown = false;
    umzug.monitor.on((e) => (baselineKnown ||= e.type === 'baseline'));
    umzug.engine.subscribe((e) => {
      if (e.type === 'backfill' && e.progress.rowsDone >= 4000 && baselineKnown && !holder) holder = startLockHolder(url, 'orders');
    });
    try {
      const err = await umzug.up().then(
        () => null,
        (e: unknown) => e as Error & { cause?: unknown },
      );
      expect(holder, 'the slowdown started').to.not.equal(null);
      expect(err?.cause).to.be.instanceOf(ThresholdBreachedError);
      const breach = err!.cause as ThresholdBreachedError;
      expect(breach.rolledBack).to.equal(true);
      expect(breach.breaches.map((b) => b.threshold)).to.deep.equal(['canary']);
      expect(breach.message).to.match(/reverted by autoRollback because a threshold was crossed:\n {2}- canary: the application's reads got slow/);
      expect(await columns()).to.deep.equal(before);
      const triggers = await knex.raw<{ rows: unknown[] }>(`SELECT 1 FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal`);
      expect(triggers.rows).to.have.length(0);
      expect(await umzug.engine.state.executedNames()).to.deep.equal([]);
      const status = await umzug.status();
      expect(status.monitor!.openBreaches.map((b) => [b.threshold, b.action])).to.deep.equal([['canary', 'rolled-back']]);
    } finally {
      await (await holder)?.stop();
      await umzug.close();
    }
  });
});

describe('monitor: a stop (Ctrl-C) while a threshold breach holds the backfill', function () {
  const { t, umzug: project } = breachCase('monitor_canary_stop', 'parcels');

  it('ends the pause at once: up stops with its progress kept', async () => {
    const { url, knex } = t;
    const umzug = project('2026.11.24T14.00.00.parcels-reference.ts');
    let holder = null as Promise<{ stop(): Promise<void> }> | null;
    let baselineKnown = false;
    const stop = new AbortController();
    let stoppedAt = 0;
    umzug.monitor.on((e) => {
      baselineKnown ||= e.type === 'baseline';
      // The bin's `up` aborts this signal on SIGINT.
      if (e.type === 'paused' && !stoppedAt) {
        stoppedAt = performance.now();
        stop.abort();
      }
    });
    umzug.engine.subscribe((e) => {
      if (e.type === 'backfill' && e.progress.rowsDone >= 4000 && baselineKnown && !holder) holder = startLockHolder(url, 'parcels');
    });
    try {
      const err = await umzug.engine.withSignal(stop.signal, () => umzug.up()).then(
        () => null,
        (e: unknown) => e as Error,
      );
      expect(stoppedAt, 'the backfill was paused by the breach').to.be.greaterThan(0);
      expect(performance.now() - stoppedAt, 'the stop ended the pause within a second').to.be.below(1000);
      expect(String(err)).to.match(/stopped while paused by a threshold breach; progress so far is kept/);
      const bf = (await knex.raw<{ rows: { n: string; done: boolean }[] }>(`SELECT rows_done AS n, done FROM zero_downtime.backfills`)).rows[0]!;
      expect(bf.done).to.equal(false);
      expect(Number(bf.n)).to.be.greaterThan(0);
    } finally {
      await (await holder)?.stop();
      await umzug.close();
    }
  });
});

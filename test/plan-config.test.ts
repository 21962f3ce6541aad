import { expect } from 'chai';
import { ConfigError, resolveConfig, type ZeroDowntimeConfig } from '../lib/config.js';

describe('config: one schema validates every option (plan tier, no database)', () => {
  const knex = { client: 'pg', connection: 'postgres://u@127.0.0.1:5432/db' };
  const bad = (c: unknown) => () => resolveConfig(c as ZeroDowntimeConfig);

  it('names what is wrong, by its path, for what the schema alone now checks', () => {
    expect(bad({ knex, migratons: 'x/*.ts' })).to.throw(ConfigError, /migratons/);
    expect(bad({})).to.throw(ConfigError, /knex/);
    expect(bad({ knex, migrations: [] })).to.throw(ConfigError, /migrations/);
    expect(bad({ knex, migrations: [''] })).to.throw(ConfigError, /migrations/);
    expect(bad({ knex, plainMigrations: 'sequelize' })).to.throw(ConfigError, /plainMigrations/);
    expect(bad({ knex, schema: '' })).to.throw(ConfigError, /schema/);
    expect(bad({ knex, lock: { maxAttempts: 0 } })).to.throw(ConfigError, /lock\.maxAttempts must be a positive integer/);
    expect(bad({ knex, backfill: { batchSize: 2.5 } })).to.throw(ConfigError, /backfill\.batchSize must be a positive integer/);
    expect(bad({ knex, mongo: { database: 'app' } })).to.throw(ConfigError, /mongo/);
    expect(bad({ knex, mongo: { url: 'mongodb://h/app', nope: 1 } })).to.throw(ConfigError, /nope/);
  });

  it('says what was expected and what was given, by path, for what the hand re-checks used to say', () => {
    const cases: [unknown, RegExp][] = [
      [null, /config must be an object, got null/],
      [{ knex, backfill: 'fast' }, /backfill must be an object, got "fast"/],
      [{ knex, backfill: { adaptive: 'yes' } }, /backfill\.adaptive must be true or false, got "yes"/],
      [{ knex, backfill: { healthCheck: true } }, /backfill\.healthCheck must be a function, got true/],
      [{ knex, backfill: { canary: 'on' } }, /backfill\.canary must be false or \{ budget\?, slack\? \}, got "on"/],
      [{ knex, backfill: { canary: { bogus: 1 } } }, /unknown key backfill\.canary\.bogus \(known: budget, slack\)/],
      [{ knex, backfill: { canary: { slack: 'soon' } } }, /backfill\.canary\.slack must be a duration: .*, got "soon"/],
      [{ knex, backfill: { targetBatchDuration: '0ms' } }, /backfill\.targetBatchDuration must be a duration longer than 0: .*, got "0ms"/],
      [{ knex, backfill: { maxReplicationLag: 'soon' } }, /backfill\.maxReplicationLag must be null or a duration: .*, got "soon"/],
      [{ knex, backfill: { pause: Infinity } }, /backfill\.pause must be a duration: .*, got Infinity/],
      [{ knex, monitor: { canary: { sql: '  ' } } }, /monitor\.canary\.sql must not be blank, got "  "/],
      [{ knex, monitor: { canary: { baselineSamples: 0 } } }, /monitor\.canary\.baselineSamples must be a positive integer, got 0/],
      [{ knex, monitor: { canary: { window: 0 } } }, /monitor\.canary\.window must be a duration longer than 0: .*, got 0/],
      [{ knex, monitor: { sampleEvery: '0s' } }, /monitor\.sampleEvery must be a duration longer than 0/],
      [{ knex, monitor: { canary: 'x' } }, /monitor\.canary must be false or \{ sql\?, /],
      [{ knex, thresholds: { canaryP99Factor: 0.5 } }, /thresholds\.canaryP99Factor must be a number from 1 to 1000, got 0\.5/],
      [{ knex, thresholds: { canarySustainedWindows: 5000 } }, /thresholds\.canarySustainedWindows must be an integer from 1 to 1000, got 5000/],
      [{ knex, thresholds: { maxErrors: 0 } }, /thresholds\.maxErrors must be a positive integer, got 0/],
      [{ knex, thresholds: { errorWindow: 0 } }, /thresholds\.errorWindow must be a duration longer than 0/],
      [{ knex, knex2: 1 }, /unknown key knex2 \(known: knex, migrations, /],
      [{ knex: 5 }, /knex must be a Knex instance or a Knex config .*, got 5/],
      [{ knex, logger: { info: 1 } }, /logger\.warn is required; .*logger\.info must be a function, got 1/],
      [{ knex, migrations: ['a', ''] }, /migrations\[1\] must be a non-empty string, got ""/],
    ];
    for (const [config, message] of cases) expect(bad(config), JSON.stringify(config)).to.throw(ConfigError, message);
    // Every problem at once, not the first one only.
    const all = bad({ knex, backfill: { workers: 0, adaptive: 1 }, autoRollback: 'yes' });
    for (const key of [/backfill\.workers must/, /backfill\.adaptive must/, /autoRollback must/]) expect(all).to.throw(ConfigError, key);
  });

  it('keeps the checks the schema cannot express, naming the key', () => {
    expect(bad({ knex, backfill: { minBatchSize: 500, maxBatchSize: 100 } })).to.throw(ConfigError, /^zeroDowntime\(config\): backfill\.minBatchSize \(500\) is above maxBatchSize \(100\)$/);
    // …the default maxBatchSize counts too.
    expect(bad({ knex, backfill: { minBatchSize: 60_000 } })).to.throw(ConfigError, /backfill\.minBatchSize \(60000\) is above maxBatchSize \(50000\)/);
    expect(bad({ knex, lint: { rules: { 'no-such-rule': 'off' } } })).to.throw(ConfigError, /lint: unknown rule no-such-rule/);
  });

  it('takes every option the type offers (monitor.canary.rebaselineAfter was in the type, not the schema)', () => {
    const r = resolveConfig({
      knex,
      backfill: { batchSize: 10, pause: '1s', targetBatchDuration: '100ms', maxReplicationLag: null, canary: { budget: 1.2, slack: 1 }, healthCheck: async () => true },
      monitor: { canary: { sql: 'SELECT 1', rebaselineAfter: '1m', window: '5s' }, sampleEvery: 1000 },
      thresholds: { maxErrors: 5, canarySustainedWindows: 3 },
      autoRollback: true,
      logger: null,
      onEvent: () => {},
    });
    expect(r.backfill).to.deep.include({ batchSize: 10, pauseMs: 1000, targetBatchMs: 100, maxReplicationLagMs: null, canary: { budget: 1.2, slackMs: 1 } });
    expect(r.monitor.canary).to.deep.include({ sql: 'SELECT 1', rebaselineAfterMs: 60_000, windowMs: 5000 });
    expect(r.monitor).to.deep.include({ sampleEveryMs: 1000, autoRollback: true });
    expect(r.monitor.thresholds).to.deep.include({ maxErrors: 5, canarySustainedWindows: 3 });
  });

  it('has the type derived from the schema: wrong keys and kinds do not compile', () => {
    const ok: ZeroDowntimeConfig[] = [
      { knex, migrations: ['a/*.ts'] as const, lock: { timeout: 500, statementTimeout: '1m' }, lint: { rules: { 'renaming-column': 'off' } } },
      { knex, logger: console, backfill: { healthCheck: async () => ({ ok: false, reason: 'queue' }) }, onEvent: (e) => void e.type },
    ];
    // @ts-expect-error an unknown key
    const unknownKey: ZeroDowntimeConfig = { knex, migratons: 'x' };
    // @ts-expect-error a duration is a string or a number
    const wrongDuration: ZeroDowntimeConfig = { knex, lock: { timeout: true } };
    // @ts-expect-error healthCheck is a function
    const wrongHealthCheck: ZeroDowntimeConfig = { knex, backfill: { healthCheck: true } };
    // @ts-expect-error knex is required
    const noKnex: ZeroDowntimeConfig = {};
    // @ts-expect-error a logger has info, warn, error and debug
    const halfLogger: ZeroDowntimeConfig = { knex, logger: { info: () => {} } };
    expect([ok, unknownKey, wrongDuration, wrongHealthCheck, noKnex, halfLogger]).to.have.length(6);
  });

  it('fills in the defaults of a minimal config', () => {
    const r = resolveConfig({ knex, mongo: { url: 'mongodb://127.0.0.1/app' } });
    expect(r).to.deep.include({ schema: 'public', stateSchema: 'zero_downtime', plainMigrations: 'umzug', pooling: 'auto', createFolder: 'migrations' });
    expect(r.migrations).to.deep.equal(['migrations/*.{ts,mts,cts,js,mjs,cjs}']);
    expect(r.lock.maxAttempts).to.equal(8);
  });
});

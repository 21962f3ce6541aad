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

  it('fills in the defaults of a minimal config', () => {
    const r = resolveConfig({ knex, mongo: { url: 'mongodb://127.0.0.1/app' } });
    expect(r).to.deep.include({ schema: 'public', stateSchema: 'zero_downtime', plainMigrations: 'umzug', pooling: 'auto', createFolder: 'migrations' });
    expect(r.migrations).to.deep.equal(['migrations/*.{ts,mts,cts,js,mjs,cjs}']);
    expect(r.lock.maxAttempts).to.equal(8);
  });
});

import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import { OpenFeature, ErrorCode } from '@openfeature/server-sdk';
import { zeroDowntime, renameColumn, ChangeInputError } from '../lib/index.js';
import { flags, FlagStore, bucketOf, inRollout, withReadFlag } from '../lib/public/flags.js';
import { ZeroDowntimeFlagProvider } from '../lib/public/openfeature.js';
import { Db } from '../lib/db/db.js';
import { freshDatabase, knexFor, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { jsonOut } from './cli-support.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('flags: deterministic percentage rollout', function () {
  const keys = Array.from({ length: 100_000 }, (_, i) => `user-${i + 1}`);

  it('puts 10 % (and 1 %, 50 %) of 100k keys in the rollout, within ±1 percentage point', () => {
    for (const pct of [1, 10, 50]) {
      const share = (100 * keys.filter((k) => inRollout('users-full-name', k, pct)).length) / keys.length;
      expect(share, `${pct} %`).to.be.within(pct - 1, pct + 1);
    }
    // Buckets are spread evenly: each tenth of the bucket range holds 10 % ± 1 of the keys.
    const deciles = new Array<number>(10).fill(0);
    for (const k of keys) deciles[Math.floor(bucketOf('users-full-name', k) / 1000)]!++;
    for (const d of deciles) expect(d / 1000).to.be.within(9, 11);
  });

  it('is stable: the same key lands in the same bucket every time, in every process, and rising percentages only add keys', () => {
    // Fixed values: a change of hash would move users between old and new read paths on upgrade.
    expect(bucketOf('users-full-name', 'user-1')).to.equal(bucketOf('users-full-name', 'user-1'));
    expect([bucketOf('f', 'user-1'), bucketOf('f', 42), bucketOf('f', 42n)]).to.deep.equal(FIXED);
    const at10 = new Set(keys.filter((k) => inRollout('f', k, 10)));
    const at50 = new Set(keys.filter((k) => inRollout('f', k, 50)));
    expect([...at10].filter((k) => !at50.has(k))).to.deep.equal([]);
    expect(at50.size).to.be.greaterThan(at10.size * 4);
    // Salted by flag name: 10 % of one flag is not the same 10 % of another (overlap ≈ 1 % of keys, not 10 %).
    const other = keys.filter((k) => inRollout('g', k, 10) && at10.has(k)).length;
    expect(other / keys.length).to.be.within(0.005, 0.015);
    expect(inRollout('f', 'x', 0)).to.equal(false);
    expect(inRollout('f', 'x', 100)).to.equal(true);
  });
});
// sha256("f:user-1"), sha256("f:42") first 32 bits mod 10 000 — computed once, frozen here.
const FIXED = [8251, 3698, 3698];

describe('flags: store, clients, OpenFeature, CLI, contract gate', function () {
  let url: string;
  let knex: Knex;
  let store: FlagStore;

  before(async () => {
    url = await freshDatabase('flags');
    knex = knexFor(url);
    store = new FlagStore(new Db(knex), 'zero_downtime');
  });

  after(async () => {
    await OpenFeature.close();
    await knex?.destroy();
  });

  it('records when a flag reached 100 %, keeps it while it stays there, and forgets it below; refuses bad input', async () => {
    const a = await store.set('checkout-v2', 10);
    expect(a.percent).to.equal(10);
    expect(a.fullSince).to.equal(null);
    const b = await store.set('checkout-v2', 100);
    expect(b.fullSince).to.be.instanceOf(Date);
    await sleep(20);
    const c = await store.set('checkout-v2', 100);
    expect(c.fullSince!.getTime()).to.equal(b.fullSince!.getTime());
    const d = await store.set('checkout-v2', 99.5);
    expect(d.fullSince).to.equal(null);
    expect((await store.history('checkout-v2')).map((h) => h.percent)).to.deep.equal([10, 100, 100, 99.5]);
    await expectReject(store.set(`x"; drop table users; --`, 10), /flag name must be/);
    await expectReject(store.set('ok', 101), /percent must be a number from 0 to 100/);
    await expectReject(store.set('ok', 12.345), /more than two decimals/);
  });

  it('two application instances (each its own pool) see a change within the TTL, and read from cache inside it', async () => {
    const ttlMs = 400;
    const pools = [new pg.Pool({ connectionString: url, max: 2 }), new pg.Pool({ connectionString: url, max: 2 })];
    const apps = pools.map((p) => flags(p, { ttlMs }));
    try {
      await store.set('search-v2', 0);
      for (const app of apps) expect(await app.flag('search-v2').isEnabled('user-7')).to.equal(false);
      const changedAt = Date.now();
      await store.set('search-v2', 100);
      const seenAfter = await Promise.all(
        apps.map(async (app) => {
          while (!(await app.flag('search-v2').isEnabled('user-7'))) await sleep(10);
          return Date.now() - changedAt;
        }),
      );
      for (const ms of seenAfter) expect(ms).to.be.at.most(ttlMs + 150);
      // Inside the TTL the cached value is served: turning the flag off is not seen at once…
      await store.set('search-v2', 0);
      expect(await apps[0]!.flag('search-v2').isEnabled('user-7')).to.equal(true);
      // …but within the TTL it is.
      await sleep(ttlMs + 50);
      expect(await apps[0]!.flag('search-v2').isEnabled('user-7')).to.equal(false);
      expect(await apps[1]!.flag('search-v2').isEnabled('user-7')).to.equal(false);
      // A flag nobody set reads as off; so does every flag of a database without the table yet.
      expect(await apps[0]!.flag('never-set').isEnabled('u')).to.equal(false);
      const emptyDb = await freshDatabase('flags_empty');
      const lonely = new pg.Pool({ connectionString: emptyDb, max: 1 });
      try {
        expect(await flags(lonely).flag('x').isEnabled('u')).to.equal(false);
      } finally {
        await lonely.end();
      }
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('answers through the OpenFeature server SDK with the same buckets', async () => {
    await store.set('pricing-v2', 30);
    const client = flags(knex, { ttlMs: 0 });
    await OpenFeature.setProviderAndWait(new ZeroDowntimeFlagProvider(client));
    const of = OpenFeature.getClient();
    let on = 0;
    for (let i = 0; i < 500; i++) {
      const v = await of.getBooleanValue('pricing-v2', false, { targetingKey: `u${i}` });
      expect(v).to.equal(inRollout('pricing-v2', `u${i}`, 30));
      if (v) on++;
    }
    expect(on).to.be.within(100, 200);
    expect(await of.getNumberValue('pricing-v2', -1)).to.equal(30);
    const missing = await of.getBooleanDetails('no-such-flag', true, { targetingKey: 'u1' });
    expect([missing.value, missing.errorCode]).to.deep.equal([true, ErrorCode.FLAG_NOT_FOUND]);
    const noKey = await of.getBooleanDetails('pricing-v2', false);
    expect(noKey.errorCode).to.equal(ErrorCode.TARGETING_KEY_MISSING);
    const asString = await of.getStringDetails('pricing-v2', 'x');
    expect(asString.errorCode).to.equal(ErrorCode.TYPE_MISMATCH);
  });

  it('`umzug flag set|get|list --json`, and the contract waits for the read flag at 100 % for the safety window', async () => {
    await knex.raw(`CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL)`);
    await knex.raw(`INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 200) g`);
    const p = tempProject('flags');
    p.write(
      '2026.11.24T12.00.00.users-full-name.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'users', from: 'name', to: 'full_name', readFlag: 'users-full-name' })] });
`,
    );
    const windowMs = 2500;
    const umzug = zeroDowntime({ knex, cwd: p.dir, contract: { after: windowMs }, monitor: { canary: false }, logger: silentLogger });
    const cli = async (...args: string[]) => {
      const chunks: string[] = [];
      const write = process.stdout.write.bind(process.stdout);
      process.stdout.write = ((s: string) => (chunks.push(String(s)), true)) as typeof process.stdout.write;
      try {
        expect(await umzug.runAsCLI(args)).to.equal(true);
      } finally {
        process.stdout.write = write;
      }
      return chunks.join('');
    };
    try {
      await umzug.up(); // expand
      const expandDone = Date.now();
      const contractName = '2026.11.24T12.00.00.users-full-name.ts:contract';
      const gate = async () => umzug.gate((await umzug.entries()).find((e) => e.name === contractName)!);
      expect((await gate()).reasons.join('\n')).to.match(/read flag "users-full-name" is at 0 %, needs 100 %/);

      const set = jsonOut(await cli('flag', 'set', 'users-full-name', '50', '--json')) as { percent: number; previousPercent: number | null };
      expect([set.percent, set.previousPercent]).to.deep.equal([50, null]);
      expect((await gate()).reasons.join('\n')).to.match(/is at 50 %, needs 100 %/);
      const got = jsonOut(await cli('flag', 'get', 'users-full-name', '--json')) as { percent: number; readBy: string[] };
      expect(got.percent).to.equal(50);
      expect(got.readBy).to.deep.equal(['2026.11.24T12.00.00.users-full-name.ts #1 renameColumn']);

      // Wait out the window since the expand: the flag alone must now hold the gate.
      await sleep(Math.max(0, expandDone + windowMs + 100 - Date.now()));
      await cli('flag', 'set', 'users-full-name', '100');
      const at100 = Date.now();
      const closed = await gate();
      expect(closed.open).to.equal(false);
      expect(closed.reasons.join('\n')).to.match(/read flag "users-full-name" reached 100 % at .*; it must stay there for the safety window/);
      expect(closed.opensAt!.getTime()).to.be.within(at100 + windowMs - 1000, at100 + windowMs + 1000);
      const list = jsonOut(await cli('flag', 'list', '--json')) as { name: string; percent: number }[];
      expect(list.find((f) => f.name === 'users-full-name')!.percent).to.equal(100);
      expect(await cli('flag', 'get', 'users-full-name')).to.match(/^users-full-name {2}100 %, at 100 % since /);

      // Still waiting: `up` leaves the contract out.
      await umzug.up();
      expect(await umzug.engine.state.executedNames()).to.not.include(contractName);
      await sleep(Math.max(0, at100 + windowMs + 100 - Date.now()));
      expect((await gate()).open).to.equal(true);
      await umzug.up();
      expect(await umzug.engine.state.executedNames()).to.include(contractName);
    } finally {
      await umzug.close();
    }
  });

  it('lets any change declare a read flag (withReadFlag), and refuses a bad flag name at declaration', () => {
    const change = withReadFlag(renameColumn({ table: 'users', from: 'a', to: 'b' }), 'users-b');
    const snapshot = { tables: { 'public.users': { table: { schema: 'public', name: 'users' }, columns: [{ name: 'id', type: 'bigint', notNull: true, default: null, identity: '', generated: '', indexes: ['users_pkey'], constraints: [{ name: 'users_pkey', type: 'p' }], referencedBy: [] }, { name: 'a', type: 'text', notNull: false, default: null, identity: '', generated: '', indexes: [], constraints: [], referencedBy: [] }], primaryKey: ['id'], estimatedRows: 0 } } };
    expect(change.describe(snapshot as never, { defaultSchema: 'public' }).readFlag).to.equal('users-b');
    expect(() => withReadFlag(change, 'no spaces')).to.throw(ChangeInputError, /readFlag must be/);
    expect(() => renameColumn({ table: 'users', from: 'a', to: 'b', readFlag: '' })).to.throw(ChangeInputError, /renameColumn: readFlag/);
  });
});

async function expectReject(p: Promise<unknown>, re: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e as Error,
  );
  expect(err, 'expected a rejection').to.not.equal(null);
  expect(err!.message).to.match(re);
}

import { expect } from 'chai';
import type { Knex } from 'knex';
import { MigrationLockTimeoutError, zeroDowntime } from '../lib/index.js';
import { freshDatabase, knexFor, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';

describe('two `up` at once', function () {
  let url: string;
  const knexes: Knex[] = [];
  let dir: string;
  beforeEach(async () => {
    url = await freshDatabase('engine_concurrent_up');
    const k = knexFor(url);
    knexes.push(k);
    await k.raw(`CREATE TABLE events (id int PRIMARY KEY, kind text)`);
    await k.raw(`INSERT INTO events SELECT g, 'k' || g FROM generate_series(1, 20000) g`);
    const p = tempProject('concurrent');
    p.write(
      '001.events-type.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'events', from: 'kind', to: 'type' })] });
`,
    );
    dir = p.dir;
  });
  afterEach(async () => {
    await Promise.all(knexes.splice(0).map((k) => k.destroy()));
  });

  // Two deploy jobs: separate pools, so separate database sessions, as two machines would have.
  const instance = (wait: string) => {
    const k = knexFor(url);
    knexes.push(k);
    return zeroDowntime({ knex: k, cwd: dir, backfill: { batchSize: 500, pause: 5, canary: false }, lock: { waitForMigrationLock: wait }, logger: silentLogger });
  };

  it('exactly one migrates; the other waits for it and then finds nothing pending', async () => {
    const [a, b] = [instance('60s'), instance('60s')];
    const migrated: string[] = [];
    for (const u of [a, b]) u.on('migrating', ({ name }) => void migrated.push(name));
    const results = await Promise.all([a.up(), b.up()]);
    expect(migrated).to.deep.equal(['001.events-type.ts:expand']);
    expect(results.map((r) => r.length).sort()).to.deep.equal([0, 1]);
    const rows = await knexes[0]!.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM zero_downtime.migrations`);
    expect(rows.rows[0]!.n).to.equal(1);
  });

  it('with no wait allowed, the second exits with a clear message and changes nothing', async () => {
    const [a, b] = [instance('60s'), instance('0s')];
    const first = a.up();
    // Let the first take the lock before the second asks: its lease row is there once it holds it (any granted
    // advisory lock on the server, which this waited for before, may be someone else's).
    for (let i = 0; i < 250; i++) {
      const r = await knexes[0]!
        .raw<{ rows: unknown[] }>(`SELECT 1 FROM zero_downtime.leases WHERE name = 'migrate'`)
        .catch(() => ({ rows: [] as unknown[] }));
      if (r.rows.length > 0) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    let error: unknown;
    try {
      await b.up();
    } catch (e) {
      error = e;
    }
    expect(error).to.be.instanceOf(MigrationLockTimeoutError);
    expect((error as Error).message).to.match(/Another migration run holds the lock .*pid \d+.*Nothing was changed/s);
    expect((await first).map((m) => m.name)).to.deep.equal(['001.events-type.ts:expand']);
  });
});

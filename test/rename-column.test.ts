import { expect } from 'chai';
import type { Knex } from 'knex';
import { zeroDowntime, type ZeroDowntimeUmzug } from '../lib/index.js';
import { freshDatabase, knexFor, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { expectCleanRun, startWriter, type Writer } from './support/writers.js';
import { startChecker } from './support/column-writers.js';

const ROWS = 20_000;

describe('renameColumn: 20k rows, old- and new-version writers throughout', function () {
  let url: string;
  let knex: Knex;
  let umzug: ZeroDowntimeUmzug;
  let maxId = ROWS;

  before(async () => {
    url = await freshDatabase('rename_column');
    knex = knexFor(url);
    await knex.raw(`CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL DEFAULT 'anon', email text)`);
    await knex.raw(`INSERT INTO users (name, email) SELECT 'user ' || g, 'u' || g || '@example.com' FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE users');
    const project = tempProject('rename');
    project.write(
      '2026.11.23T10.00.00.users-full-name.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'users', from: 'name', to: 'full_name' })] });
`,
    );
    umzug = zeroDowntime({
      knex,
      cwd: project.dir,
      migrations: 'migrations/*.ts',
      contract: { after: 0 },
      backfill: { batchSize: 500, canary: false },
      logger: silentLogger,
    });
  });

  after(async () => {
    await knex?.destroy();
  });

  const columns = async () =>
    (await knex.raw<{ rows: { column_name: string }[] }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'users'`)).rows.map(
      (r) => r.column_name,
    );

  it('keeps name and full_name equal for every row at every point of expand → backfill → verify → contract → down → down → up', async () => {
    const writers: { old: Writer[]; new: Writer[] } = { old: [], new: [] };
    const all: Writer[] = [];
    const start = async (version: 'old' | 'new', n: number) => {
      for (let i = 0; i < n; i++) {
        const w = await startWriter(url, { table: 'users', column: version === 'old' ? 'name' : 'full_name', maxId: () => maxId, label: `${version}${i}` });
        writers[version].push(w);
        all.push(w);
      }
    };
    const stop = async (version: 'old' | 'new') => {
      await Promise.all(writers[version].map((w) => w.stop()));
      writers[version] = [];
    };

    // A checker that reads the table all the time: wherever both columns hold a value, they must agree.
    // Only "column does not exist" is expected, in the moments one of the two columns is absent.
    const checker = startChecker(
      async () => {
        const r = await knex.raw<{ rows: { bad: number; max: number }[] }>(
          `SELECT count(*) FILTER (WHERE full_name IS NOT NULL AND name IS NOT NULL AND full_name <> name)::int AS bad, max(id)::int AS max FROM users`,
        );
        maxId = r.rows[0]!.max;
        return r.rows[0]!.bad > 0 ? `${r.rows[0]!.bad} rows disagree` : null;
      },
      /column .* does not exist/,
      { intervalMs: 20 },
    );
    const fullyConsistent = async () =>
      Number((await knex.raw<{ rows: { n: string }[] }>(`SELECT count(*) AS n FROM users WHERE full_name IS DISTINCT FROM name`)).rows[0]!.n);

    await start('old', 2);
    // New-version writers start as soon as expand has added the column, i.e. while the backfill runs.
    let newStarted: Promise<void> | undefined;
    umzug.engine.subscribe((e) => {
      if (e.type === 'step' && e.status === 'done' && e.phase === 'expand' && !newStarted) newStarted = start('new', 2);
    });

    const first = await umzug.up();
    expect(first.map((m) => m.name)).to.deep.equal(['2026.11.23T10.00.00.users-full-name.ts:expand']);
    await newStarted;
    expect(await fullyConsistent()).to.equal(0);
    const status = await umzug.status();
    expect(status.migrations[0]!.changes[0]!.backfill!.done).to.equal(true);
    expect(status.migrations[0]!.changes[0]!.verify!.mismatches).to.equal(0);

    // The old version is retired; the next deploy's `up` contracts.
    await stop('old');
    const second = await umzug.up();
    expect(second.map((m) => m.name)).to.deep.equal(['2026.11.23T10.00.00.users-full-name.ts:contract']);
    expect(await columns()).to.have.members(['id', 'full_name', 'email']);
    const nn = await knex.raw<{ rows: { attnotnull: boolean; def: string | null }[] }>(
      `SELECT a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS def FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = 'users'::regclass AND a.attname = 'full_name'`,
    );
    expect(nn.rows[0]).to.deep.equal({ attnotnull: true, def: `'anon'::text` });

    // Roll back the contract: name comes back, in sync, and an old version may run again.
    await umzug.down();
    expect(await columns()).to.include('name');
    expect(await fullyConsistent()).to.equal(0);
    await start('old', 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(await fullyConsistent()).to.equal(0);

    // Roll back the expand: the new version is gone first, then its column.
    await stop('new');
    await umzug.down();
    expect(await columns()).to.have.members(['id', 'name', 'email']);
    const restored = await knex.raw<{ rows: { attnotnull: boolean; def: string | null }[] }>(
      `SELECT a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS def FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = 'users'::regclass AND a.attname = 'name'`,
    );
    expect(restored.rows[0]).to.deep.equal({ attnotnull: true, def: `'anon'::text` });

    // And forward again.
    const again = await umzug.up();
    expect(again.map((m) => m.name)).to.deep.equal(['2026.11.23T10.00.00.users-full-name.ts:expand']);
    await start('new', 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(await fullyConsistent()).to.equal(0);

    await Promise.all(all.map((w) => w.stop().catch(() => undefined)));
    expectCleanRun(all, await checker.stop({ atLeast: 20 }), { minChecks: 20, minOps: 500 });
  });
});

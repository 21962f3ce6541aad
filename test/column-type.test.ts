import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db, zeroDowntime } from '../lib/index.js';
import { diffChecksums, diffSnapshots } from '../lib/postgres/snapshot.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { startChecker, startLoop, type LoopWriter } from './support/column-writers.js';
import { expectCleanRun } from './support/writers.js';
import { tempProject } from './support/project.js';
import { expectExactRoundTrip, expectSameState, takeState } from './support/db-state.js';

const ROWS = 5_000;

describe('changeColumnType', function () {
  let url: string;
  let knex: Knex;
  let db: Db;
  before(async () => {
    ({ url, knex, db } = await openTestDatabase('col_type'));
  });
  after(() => knex?.destroy());

  const q = async <R>(sql: string, values: unknown[] = []) => (await knex.raw<{ rows: R[] }>(sql, values as Knex.RawBinding[])).rows;

  it('int → bigint on a serial primary key referenced by a foreign key: writers on both tables never fail, ids go past 2^31 after the contract', async () => {
    await knex.raw(`CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'anon')`);
    await knex.raw(`CREATE TABLE orders (id bigserial PRIMARY KEY, user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE, note text)`);
    await knex.raw(`INSERT INTO users (name) SELECT 'u' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw(`INSERT INTO orders (user_id, note) SELECT 1 + (g * 7919) % ${ROWS}, 'o' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE users; ANALYZE orders');
    const project = tempProject('col-type-pk');
    project.write(
      '2026.11.24T10.00.00.users-id-bigint.ts',
      `import { defineMigration, changeColumnType } from 'umzug-zero-downtime';
export default defineMigration({ changes: [changeColumnType({ table: 'users', column: 'id', type: 'bigint' })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { batchSize: 500, canary: false }, logger: silentLogger });

    let maxId = ROWS;
    // Both application versions use `id`: an integer and a bigint accept the same values, so neither notices the change.
    const writer = (label: string) =>
      startLoop(url, label, async (c, i) => {
        const r = Math.random();
        const target = 1 + Math.floor(Math.random() * maxId);
        if (r < 0.3) {
          // Two statements, as an application without a transaction writes them. The new user is marked `fresh` so
          // no writer's random DELETE takes it between the two (that would be the test's own race, not the tool's).
          const row = await c.query<{ id: string }>(`INSERT INTO users (name) VALUES ($1) RETURNING id`, [`${label}-${i}-fresh`]);
          await c.query(`INSERT INTO orders (user_id, note) VALUES ($1, $2)`, [row.rows[0]!.id, `${label}-${i}`]);
        } else if (r < 0.6) {
          await c.query(`INSERT INTO orders (user_id, note) SELECT id, $2 FROM users WHERE id = $1`, [target, `${label}-${i}`]);
        } else if (r < 0.9) {
          await c.query(`UPDATE users SET name = $1 WHERE id = $2 AND name NOT LIKE '%-fresh'`, [`${label}-${i}`, target]);
        } else {
          await c.query(`DELETE FROM users WHERE id = $1 AND name NOT LIKE '%-fresh'`, [target]);
        }
      });
    const checker = startChecker(async () => {
      const r = await q<{ bad: number; orphans: number; max: number }>(
        `SELECT (SELECT count(*) FROM users WHERE (to_jsonb(users) ->> 'id__new') IS NOT NULL AND (to_jsonb(users) ->> 'id__new') <> id::text)::int AS bad,
                (SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id))::int AS orphans,
                (SELECT max(id) FROM users)::int AS max`,
      );
      maxId = r[0]!.max;
      const problems: string[] = [];
      if (r[0]!.bad > 0) problems.push(`${r[0]!.bad} rows where id__new differs from id`);
      if (r[0]!.orphans > 0) problems.push(`${r[0]!.orphans} orders without their user`);
      return problems;
    });
    const writers = [await writer('old0'), await writer('old1'), await writer('new0'), await writer('new1')];
    let result;
    try {
      expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['2026.11.24T10.00.00.users-id-bigint.ts:expand']);
      expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM users WHERE id__new IS DISTINCT FROM id`))[0]!.n).to.equal(0);
      expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['2026.11.24T10.00.00.users-id-bigint.ts:contract']);
      const contracted = await q<{ type: string; seqtype: string; pk: string; fk: string }>(
        `SELECT format_type(a.atttypid, a.atttypmod) AS type,
                (SELECT format_type(s.seqtypid, NULL) FROM pg_sequence s WHERE s.seqrelid = pg_get_serial_sequence('users', 'id')::regclass) AS seqtype,
                (SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'users_pkey') AS pk,
                (SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'orders_user_id_fkey') AS fk
           FROM pg_attribute a WHERE a.attrelid = 'users'::regclass AND a.attname = 'id'`,
      );
      expect(contracted[0]).to.deep.equal({
        type: 'bigint',
        seqtype: 'bigint',
        pk: 'PRIMARY KEY (id)',
        fk: 'FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE',
      });
      await new Promise((r) => setTimeout(r, 300));
      // Down: integer again, in sync, under writers; and up again.
      await umzug.down();
      expect((await q<{ type: string }>(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'id'`))[0]!.type).to.equal('integer');
      expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM users WHERE id__new IS DISTINCT FROM id`))[0]!.n).to.equal(0);
      await umzug.up();
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
      result = await checker.stop({ atLeast: 10 });
    }
    expectCleanRun(writers, result, { minChecks: 10, minOps: 300 });
    // The point of the change: ids past 2^31, through the sequence and the foreign key.
    await knex.raw(`SELECT setval(pg_get_serial_sequence('users', 'id'), 3000000000)`);
    const big = await q<{ id: string }>(`INSERT INTO users (name) VALUES ('big') RETURNING id`);
    expect(big[0]!.id).to.equal('3000000001');
    // orders.user_id is still integer: its own type change is a migration of its own (changeColumnType on orders).
    const refused = await knex.raw(`INSERT INTO orders (user_id, note) VALUES (3000000001, 'x')`).then(() => null, (e: Error) => e.message);
    expect(refused).to.match(/out of range/);
    await umzug.close();
  });

  it('numeric dollars → bigint cents with up/down: old writers write price, new writers price__new, both always agree', async () => {
    await knex.raw(`CREATE TABLE products (id bigserial PRIMARY KEY, price numeric(10,2) NOT NULL DEFAULT 0 CHECK (price >= 0), note text)`);
    await knex.raw(`INSERT INTO products (price, note) SELECT (g % 10000) / 100.0, 'p' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE products');
    const project = tempProject('col-type-cents');
    project.write(
      '2026.11.24T11.00.00.price-cents.ts',
      `import { defineMigration, changeColumnType } from 'umzug-zero-downtime';
export default defineMigration({ changes: [changeColumnType({ table: 'products', column: 'price', type: 'bigint', up: 'round(price * 100)::bigint', down: 'price / 100.0' })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { batchSize: 500, canary: false }, logger: silentLogger });
    let maxId = ROWS;
    const pick = () => 1 + Math.floor(Math.random() * maxId);
    const cents = () => Math.floor(Math.random() * 1_000_000);
    // v1 writes dollars into price; v2 (during the change) cents into price__new; v3 (after the contract) cents into price.
    const writer = (label: string, column: string, value: () => string | number) =>
      startLoop(url, label, async (c, i) => {
        const r = Math.random();
        if (r < 0.35) await c.query(`INSERT INTO products (${column}, note) VALUES ($1, $2)`, [value(), `${label}-${i}`]);
        else if (r < 0.7) await c.query(`UPDATE products SET ${column} = $1 WHERE id = $2`, [value(), pick()]);
        else if (r < 0.9) await c.query(`UPDATE products SET note = $1 WHERE id = $2`, [`${label}-${i}`, pick()]);
        else await c.query(`DELETE FROM products WHERE id = $1`, [pick()]);
      });
    const v1 = (l: string) => writer(l, 'price', () => (cents() / 100).toFixed(2));
    const v2 = (l: string) => writer(l, 'price__new', cents);
    const v3 = (l: string) => writer(l, 'price', cents);
    const checker = startChecker(async () => {
      const r = await q<{ bad: number; max: number }>(
        `SELECT count(*) FILTER (WHERE price__new IS NOT NULL AND price IS NOT NULL AND price__new <> round(price * 100))::int AS bad, max(id)::int AS max FROM products`,
      );
      maxId = r[0]!.max;
      return r[0]!.bad > 0 ? `${r[0]!.bad} rows where price__new is not price in cents` : null;
    }, /column "price__new" does not exist/);
    const all: LoopWriter[] = [];
    const start = async (make: (l: string) => Promise<LoopWriter>, ...labels: string[]) => {
      const ws = await Promise.all(labels.map(make));
      all.push(...ws);
      return ws;
    };
    const stop = (ws: LoopWriter[]) => Promise.all(ws.map((w) => w.stop()));
    const disagree = async () => (await q<{ n: number }>(`SELECT count(*)::int AS n FROM products WHERE price__new IS DISTINCT FROM round(price * 100)`))[0]!.n;
    let result;
    try {
      const olds = await start(v1, 'v1a', 'v1b');
      let news: LoopWriter[] = [];
      let started: Promise<unknown> | undefined;
      umzug.engine.subscribe((e) => {
        if (e.type === 'step' && e.status === 'done' && e.phase === 'expand' && !started) started = start(v2, 'v2a', 'v2b').then((w) => (news = w));
      });
      await umzug.up();
      await started;
      expect(await disagree()).to.equal(0);
      // v1 is retired, v2 gives way to v3 (which writes cents into price) at the contract.
      await stop([...olds, ...news]);
      await umzug.up();
      expect((await q<{ type: string; def: string }>(`SELECT format_type(atttypid, atttypmod) AS type, pg_get_expr(d.adbin, d.adrelid) AS def FROM pg_attribute a
        JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = 'products'::regclass AND a.attname = 'price'`))[0]).to.deep.equal({ type: 'bigint', def: '0' });
      const v3s = await start(v3, 'v3a', 'v3b');
      await new Promise((r) => setTimeout(r, 300));
      await stop(v3s);
      await umzug.down();
      expect(await disagree()).to.equal(0);
      const again = await start(v2, 'v2c');
      await start(v1, 'v1c');
      await new Promise((r) => setTimeout(r, 300));
      expect(await disagree()).to.equal(0);
      await stop(again);
      await umzug.down();
      await umzug.up();
      await new Promise((r) => setTimeout(r, 200));
      expect(await disagree()).to.equal(0);
    } finally {
      await stop(all);
      result = await checker.stop({ atLeast: 10 });
      await umzug.close();
    }
    expectCleanRun(all, result, { minChecks: 10 });
  });

  it('identifiers that look like SQL: a column named lower inside lower(lower), a name with a quote and a semicolon, a string literal holding the name', async () => {
    await knex.raw(`CREATE SCHEMA odd`);
    await knex.raw(`CREATE TABLE odd."t; drop table users; --" (id int PRIMARY KEY, "lower" varchar(20) NOT NULL, "x""; drop table users; --" int CHECK ("x""; drop table users; --" > 0), other text)`);
    await knex.raw(`CREATE INDEX odd_lower ON odd."t; drop table users; --" (lower("lower")) WHERE other <> 'lower'`);
    await knex.raw(`CREATE INDEX odd_x ON odd."t; drop table users; --" ("x""; drop table users; --", other text_pattern_ops) WHERE "x""; drop table users; --" < 1000`);
    await knex.raw(`INSERT INTO odd."t; drop table users; --" SELECT g, 'L' || g, g, CASE WHEN g % 2 = 0 THEN 'lower' ELSE 'o' END FROM generate_series(1, 500) g`);
    const project = tempProject('col-type-odd');
    project.write(
      '003.odd.ts',
      `import { defineMigration, changeColumnType, renameColumn } from 'umzug-zero-downtime';
const table = { schema: 'odd', name: 't; drop table users; --' };
export default defineMigration({ changes: [
  changeColumnType({ table, column: 'lower', type: 'text' }),
  renameColumn({ table, from: 'x"; drop table users; --', to: 'y"; --' }),
] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    const snap = () => takeState(db, ['odd']);
    const before = await snap();
    await umzug.up();
    await umzug.up();
    const contracted = await snap();
    expect(contracted.schema.objects['index odd.odd_lower']).to.equal(
      `CREATE INDEX odd_lower ON odd."t; drop table users; --" USING btree (lower(lower)) WHERE (other <> 'lower'::text)`,
    );
    expect(contracted.schema.objects['index odd.odd_x']).to.equal(
      `CREATE INDEX odd_x ON odd."t; drop table users; --" USING btree ("y""; --", other text_pattern_ops) WHERE ("y""; --" < 1000)`,
    );
    await umzug.down();
    await umzug.down();
    expectSameState(before, await snap(), 'up → up → down → down');
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM odd."t; drop table users; --"`))[0]!.n).to.equal(500);
    await umzug.close();
  });

  it('refuses what it cannot carry, saying what: a view at expand (nothing changed), an index made after expand at contract (old column kept)', async () => {
    await knex.raw(`CREATE TABLE gadgets (id int PRIMARY KEY, weight int, label text)`);
    await knex.raw(`INSERT INTO gadgets SELECT g, g, 'g' || g FROM generate_series(1, 100) g`);
    await knex.raw(`CREATE VIEW heavy_gadgets AS SELECT id FROM gadgets WHERE weight > 50`);
    const project = tempProject('col-type-refuse');
    project.write(
      '004.gadgets.ts',
      `import { defineMigration, changeColumnType } from 'umzug-zero-downtime';
export default defineMigration({ changes: [changeColumnType({ table: 'gadgets', column: 'weight', type: 'bigint' })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    const cols = async () => (await q<{ column_name: string }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'gadgets' ORDER BY 1`)).map((r) => r.column_name);
    const first = await umzug.up().then(() => null, (e: Error) => e);
    expect(String(first?.message)).to.match(/changeColumnType cannot carry what depends on public\.gadgets\.weight: view heavy_gadgets.*Nothing was changed/);
    expect(await cols()).to.deep.equal(['id', 'label', 'weight']);
    await knex.raw(`DROP VIEW heavy_gadgets`);
    await umzug.up();
    expect(await cols()).to.deep.equal(['id', 'label', 'weight', 'weight__new']);
    // Someone adds an index on the old column after the expand: the contract would silently lose it.
    await knex.raw(`CREATE INDEX gadgets_weight_late ON gadgets (weight)`);
    const second = await umzug.up().then(() => null, (e: Error) => e);
    expect(String(second?.message)).to.match(/cannot carry what depends on public\.gadgets\.weight: index gadgets_weight_late/);
    expect(await cols()).to.deep.equal(['id', 'label', 'weight', 'weight__new']);
    await knex.raw(`DROP INDEX gadgets_weight_late`);
    await umzug.up();
    expect(await cols()).to.deep.equal(['id', 'label', 'weight']);
    await umzug.close();
  });

  it('up → down → up restores schema snapshot and per-row data exactly (identity pk + incoming FK, CHECK, partial and expression indexes, comment, grants, collation)', async () => {
    await knex.raw(`DO $$ BEGIN CREATE ROLE zd_col_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    await knex.raw(`CREATE SCHEMA rt`);
    await knex.raw(`CREATE TABLE rt.accounts (
      id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
      handle varchar(40) COLLATE "C" NOT NULL,
      score integer NOT NULL DEFAULT 0 CONSTRAINT score_positive CHECK (score >= 0),
      "odd; name" text)`);
    await knex.raw(`CREATE UNIQUE INDEX accounts_handle_lower ON rt.accounts (lower(handle))`);
    await knex.raw(`CREATE INDEX accounts_hot ON rt.accounts (score) WHERE score > 50`);
    await knex.raw(`CREATE INDEX accounts_double ON rt.accounts ((score * 2) DESC NULLS LAST)`);
    await knex.raw(`CREATE TABLE rt.entries (id bigserial PRIMARY KEY, account_id integer NOT NULL REFERENCES rt.accounts (id) ON DELETE CASCADE, amount numeric)`);
    await knex.raw(`COMMENT ON COLUMN rt.accounts.score IS 'points'`);
    await knex.raw(`GRANT SELECT (score, id), UPDATE (score) ON rt.accounts TO zd_col_reader`);
    await knex.raw(`INSERT INTO rt.accounts (handle, score, "odd; name") SELECT 'h' || g, g % 100, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 3000) g`);
    await knex.raw(`INSERT INTO rt.entries (account_id, amount) SELECT 1 + g % 3000, g / 7.0 FROM generate_series(1, 3000) g`);
    const project = tempProject('col-type-rt');
    project.write(
      '001.types.ts',
      `import { defineMigration, changeColumnType, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  changeColumnType({ table: { schema: 'rt', name: 'accounts' }, column: 'id', type: 'bigint' }),
  changeColumnType({ table: { schema: 'rt', name: 'accounts' }, column: 'score', type: 'numeric(12,2)', up: 'score * 1.00', down: 'round(score)::integer' }),
  renameColumn({ table: { schema: 'rt', name: 'accounts' }, from: 'handle', to: 'username' }),
] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    await expectExactRoundTrip(umzug, () => takeState(db, ['rt']), {
      contracted: (contracted, before) => {
        const changed = diffSnapshots(before.schema, contracted.schema);
        expect(changed).to.include('~ column rt.accounts.id: integer NOT NULL IDENTITY BY DEFAULT ACL {zd_col_reader=r/postgres} → bigint NOT NULL IDENTITY BY DEFAULT ACL {zd_col_reader=r/postgres}');
        expect(contracted.schema.objects['column rt.accounts.score']).to.equal(
          `numeric(12,2) NOT NULL DEFAULT 0 COMMENT points ACL {zd_col_reader=rw/postgres}`,
        );
        expect(contracted.schema.objects['column rt.accounts.username']).to.equal('character varying(40) NOT NULL COLLATE C');
        expect(contracted.schema.objects['index rt.accounts_hot']).to.equal('CREATE INDEX accounts_hot ON rt.accounts USING btree (score) WHERE (score > (50)::numeric)');
        expect(contracted.schema.objects['index rt.accounts_handle_lower']).to.equal('CREATE UNIQUE INDEX accounts_handle_lower ON rt.accounts USING btree (lower((username)::text))');
        expect(contracted.schema.objects['constraint rt.entries.entries_account_id_fkey']).to.equal('FOREIGN KEY (account_id) REFERENCES rt.accounts(id) ON DELETE CASCADE');
        expect(contracted.schema.objects['constraint rt.accounts.accounts_pkey']).to.equal('PRIMARY KEY (id)');
        expect(contracted.schema.objects['constraint rt.accounts.score_positive']).to.equal('CHECK ((score >= (0)::numeric))');
        expect(contracted.schema.objects['sequence rt.accounts_id_seq']).to.equal('bigint OWNED BY accounts.id');
        expect(Object.keys(contracted.schema.objects).filter((k) => /zd_|__new/.test(k))).to.deep.equal([]);
        expect(diffChecksums(before.data, contracted.data)).to.not.deep.equal([]);
      },
    });
    // The identity goes on where it was.
    const next = await q<{ id: string }>(`INSERT INTO rt.accounts (username, score) VALUES ('new', 1) RETURNING id`);
    expect(next[0]!.id).to.equal('3001');
    await umzug.close();
  });
});

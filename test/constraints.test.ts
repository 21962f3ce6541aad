import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db, zeroDowntime, type ZeroDowntimeUmzug } from '../lib/index.js';
import { openTestDatabase, pgClient, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { expectCleanRun, startWriter, type Writer } from './support/writers.js';
import { startChecker } from './support/column-writers.js';
import { expectSameState, takeState } from './support/db-state.js';

const ROWS = 20_000;

const constraints = async (knex: Knex, table: string) =>
  (
    await knex.raw<{ rows: { name: string; def: string; validated: boolean }[] }>(
      `SELECT conname AS name, pg_get_constraintdef(oid) AS def, convalidated AS validated FROM pg_constraint WHERE conrelid = ?::regclass AND contype <> 'n' ORDER BY 1`,
      [table],
    )
  ).rows;

describe('addForeignKey / addCheck / addUnique: NOT VALID → VALIDATE under writers', function () {
  let url: string;
  let knex: Knex;
  let db: Db;

  before(async () => {
    ({ url, knex, db } = await openTestDatabase('constraint_changes'));
    // Hostile names: the parent table and the checked column.
    await knex.raw(`CREATE TABLE "users; drop table x" (id int PRIMARY KEY, name text)`);
    await knex.raw(`INSERT INTO "users; drop table x" SELECT g, 'u' || g FROM generate_series(1, 1000) g`);
    await knex.raw(`CREATE TABLE orders (id bigserial PRIMARY KEY, user_id int NOT NULL DEFAULT 1, note text, email text, "x""; drop table users; --" int NOT NULL DEFAULT 1)`);
    await knex.raw(
      `INSERT INTO orders (user_id, note, email, "x""; drop table users; --") SELECT 1 + g % 1000, 'n' || g, 'o' || g || '@example.com', g % 50 FROM generate_series(1, ${ROWS}) g`,
    );
    await knex.raw('ANALYZE');
  });
  after(async () => {
    await knex?.destroy();
  });

  const umzugFor = (dir: string): ZeroDowntimeUmzug =>
    zeroDowntime({ knex, cwd: dir, migrations: 'migrations/*.ts', contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });

  it('adds a foreign key, a check and a unique constraint while writers run; no row ever violates a validated constraint; up → down → up is exact', async () => {
    const project = tempProject('cons');
    project.write(
      '001.orders-constraints.ts',
      `import { defineMigration, addForeignKey, addCheck, addUnique } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  addForeignKey({ table: 'orders', columns: ['user_id'], references: { table: 'users; drop table x', columns: ['id'] }, onDelete: 'cascade' }),
  addCheck({ table: 'orders', name: 'orders_x_nonneg', check: '"x""; drop table users; --" >= 0' }),
  addUnique({ table: 'orders', columns: ['email'] }),
] });
`,
    );
    const umzug = umzugFor(project.dir);
    const snap = () => takeState(db, ['public']);
    let maxId = ROWS;
    const writers: Writer[] = [];
    for (let i = 0; i < 3; i++) writers.push(await startWriter(url, { table: 'orders', column: 'note', maxId: () => maxId, label: `w${i}` }));

    const checker = startChecker(
      async () => {
        const r = await knex.raw<{ rows: { orphans: number; negative: number; dups: number; max: string }[] }>(
          `SELECT (SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM "users; drop table x" u WHERE u.id = o.user_id))::int AS orphans,
                  (SELECT count(*) FROM orders WHERE "x""; drop table users; --" < 0)::int AS negative,
                  (SELECT count(*) FROM (SELECT email FROM orders WHERE email IS NOT NULL GROUP BY email HAVING count(*) > 1) d)::int AS dups,
                  (SELECT max(id) FROM orders) AS max`,
        );
        const row = r.rows[0]!;
        maxId = Number(row.max);
        return row.orphans || row.negative || row.dups ? JSON.stringify(row) : null;
      },
      undefined,
      { intervalMs: 20 },
    );

    await umzug.up();
    const added = await constraints(knex, 'orders');
    expect(added.map((c) => [c.name, c.def, c.validated])).to.deep.equal([
      ['orders_email_key', 'UNIQUE (email)', true],
      ['orders_pkey', 'PRIMARY KEY (id)', true],
      ['orders_user_id_fkey', 'FOREIGN KEY (user_id) REFERENCES "users; drop table x"(id) ON DELETE CASCADE', true],
      ['orders_x_nonneg', `CHECK (("x""; drop table users; --" >= 0))`, true],
    ]);
    // The constraints are enforced from now on.
    const rejected = await knex.raw(`INSERT INTO orders (user_id) VALUES (99999)`).then(() => null, (e: Error) => e.message);
    expect(rejected).to.match(/violates foreign key constraint "orders_user_id_fkey"/);
    // The writers go on against the validated constraints for a while, still without an error.
    await new Promise((res) => setTimeout(res, 400));

    await Promise.all(writers.map((w) => w.stop()));
    expectCleanRun(writers, await checker.stop({ atLeast: 3 }), { minChecks: 3 });

    // Round trip without writers: the schema and data come back exactly.
    await umzug.up(); // the (empty) contract
    const applied = await snap();
    await umzug.down();
    await umzug.down();
    expect((await constraints(knex, 'orders')).map((c) => c.name)).to.deep.equal(['orders_pkey']);
    const reverted = await snap();
    await umzug.up();
    await umzug.up();
    expectSameState(applied, await snap(), 'up → up again after down → down');
    await umzug.down();
    await umzug.down();
    expectSameState(reverted, await snap(), 'down → down again');
  });

  it('a VALIDATE that finds bad rows fails in its own transaction and the expand is undone (the constraint is gone, nothing else changed); the re-run after the fix validates', async () => {
    await knex.raw(`CREATE TABLE prices (id int PRIMARY KEY, amount numeric NOT NULL)`);
    await knex.raw(`INSERT INTO prices SELECT g, g FROM generate_series(1, 5000) g`);
    await knex.raw(`UPDATE prices SET amount = -1 WHERE id = 4000`);
    const project = tempProject('cons-bad');
    project.write(
      '001.prices.ts',
      `import { defineMigration, addCheck } from 'umzug-zero-downtime';
export default defineMigration({ changes: [addCheck({ table: 'prices', name: 'prices_amount_nonneg', check: 'amount >= 0' })] });
`,
    );
    const umzug = umzugFor(project.dir);
    const error = await umzug.up().then(() => null, (e: Error) => e);
    const message = String((error as { cause?: Error })?.cause?.message ?? error?.message);
    expect(message).to.match(/validate check prices_amount_nonneg.*violated by some row/).and.match(/undone automatically/);
    expect((await constraints(knex, 'prices')).map((c) => c.name)).to.not.include('prices_amount_nonneg');
    const state = await knex.raw(`SELECT count(*)::int AS n FROM zero_downtime.changes`);
    expect(state.rows[0].n, 'the undone expand is forgotten').to.equal(0);
    await knex.raw(`UPDATE prices SET amount = 1 WHERE id = 4000`);
    await umzug.up();
    expect(await constraints(knex, 'prices')).to.deep.include({ name: 'prices_amount_nonneg', def: 'CHECK ((amount >= (0)::numeric))', validated: true });
  });

  it('refuses a constraint name already in use and a foreign key with mismatched column counts, changing nothing', async () => {
    const project = tempProject('cons-refuse');
    project.write(
      '001.bad.ts',
      `import { defineMigration, addCheck } from 'umzug-zero-downtime';
export default defineMigration({ changes: [addCheck({ table: 'prices', name: 'prices_pkey', check: 'id > 0' })] });
`,
    );
    const e1 = await umzugFor(project.dir).up().then(() => null, (e: Error) => e);
    expect(String((e1 as { cause?: Error })?.cause?.message ?? e1?.message)).to.match(/constraint "prices_pkey" already exists on "public.prices"/);
    const { addForeignKey } = await import('../lib/index.js');
    expect(() => addForeignKey({ table: 'a', columns: ['x', 'y'], references: { table: 'b', columns: ['id'] } })).to.throw(/the counts must match/);
    expect(() => addForeignKey({ table: 'a', columns: ['x'], references: { table: 'b', columns: ['id'] }, onDelete: 'drop table b' as never })).to.throw(/onDelete must be one of/);
  });
  it('sql(): raw statements run through the lock-safe executor (retried behind a lock holder), `?` is left alone, down runs the given SQL', async () => {
    await knex.raw(`CREATE TABLE docs (id int PRIMARY KEY, body jsonb)`);
    await knex.raw(`INSERT INTO docs SELECT g, jsonb_build_object('k', g) FROM generate_series(1, 1000) g`);
    const project = tempProject('cons-sql');
    project.write(
      '001.raw.ts',
      `import { defineMigration, sql } from 'umzug-zero-downtime';
export default defineMigration({ changes: [sql({
  up: ["ALTER TABLE docs ADD COLUMN has_k boolean GENERATED ALWAYS AS (body ? 'k') STORED"],
  down: ['ALTER TABLE docs DROP COLUMN has_k'],
})] });
`,
    );
    const holder = await pgClient(url, 'reader');
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM docs'); // ACCESS SHARE: the ALTER has to wait
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, lock: { timeout: '100ms', maxAttempts: 40 }, logger: silentLogger });
    let retries = 0;
    umzug.engine.subscribe((e) => {
      if (e.type === 'lock-retry') retries++;
    });
    const up = umzug.up();
    await new Promise((r) => setTimeout(r, 700));
    await holder.query('COMMIT');
    await holder.end();
    await up;
    expect(retries).to.be.greaterThan(0);
    expect(Number((await knex.raw(`SELECT count(*) AS n FROM docs WHERE has_k`)).rows[0].n)).to.equal(1000);
    await umzug.up(); // empty contract
    await umzug.down();
    await umzug.down();
    const cols = await knex.raw<{ rows: { column_name: string }[] }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'docs'`);
    expect(cols.rows.map((r) => r.column_name)).to.have.members(['id', 'body']);
  });
});

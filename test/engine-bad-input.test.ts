import { expect } from 'chai';
import type { Knex } from 'knex';
import { ChangeInputError, Db, addColumn, renameColumn, zeroDowntime } from '../lib/index.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { expectSameState, takeState } from './support/db-state.js';

describe('bad input: a clear error, and nothing changed', function () {
  let knex: Knex;
  let db: Db;
  before(async () => {
    ({ knex, db } = await openTestDatabase('engine_bad_input'));
    await knex.raw(`CREATE TABLE users (id int PRIMARY KEY, name text)`);
    await knex.raw(`CREATE TABLE nokey (name text)`);
    await knex.raw(`INSERT INTO users SELECT g, 'n' || g FROM generate_series(1, 100) g`);
    await knex.raw(`CREATE TABLE "users; drop table x" (id int PRIMARY KEY, "x""; drop table users; --" text)`);
    await knex.raw(`INSERT INTO "users; drop table x" SELECT g, 'v' || g FROM generate_series(1, 1000) g`);
  });
  after(() => knex?.destroy());

  const snapshot = () => takeState(db, ['public']);

  const attempt = async (body: string) => {
    const p = tempProject('bad');
    p.write('001.bad.ts', `import { defineMigration, renameColumn, addColumn } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [${body}] });\n`);
    const umzug = zeroDowntime({ knex, cwd: p.dir, stateSchema: 'zd_bad', logger: silentLogger });
    const before = await snapshot();
    let error: unknown;
    try {
      await umzug.up();
    } catch (e) {
      error = e;
    }
    expectSameState(before, await snapshot(), 'after the refused up');
    const executed = await knex.raw<{ rows: unknown[] }>(`SELECT * FROM zd_bad.migrations`);
    expect(executed.rows).to.deep.equal([]);
    return ((error as { cause?: Error })?.cause ?? error) as Error;
  };

  it('unknown table', async () => {
    const e = await attempt(`renameColumn({ table: 'nope', from: 'a', to: 'b' })`);
    expect(e).to.be.instanceOf(ChangeInputError);
    expect(e.message).to.match(/table "public.nope" does not exist.*Nothing was changed/);
  });

  it('unknown column, and a target column that exists already — every problem at once', async () => {
    const e = await attempt(`renameColumn({ table: 'users', from: 'missing', to: 'id' })`);
    expect(e.message).to.include('column "missing" does not exist in "public.users"');
    expect(e.message).to.include('column "id" already exists in "public.users"');
  });

  it('a hostile identifier is a name like any other (and does not exist)', async () => {
    const e = await attempt(`renameColumn({ table: 'users', from: 'x"; drop table users; --', to: 'y' })`);
    expect(e.message).to.include('column "x\\"; drop table users; --" does not exist');
    const still = await knex.raw<{ rows: unknown[] }>(`SELECT 1 FROM users LIMIT 1`);
    expect(still.rows).to.have.length(1);
  });

  it('a table without a primary key cannot be backfilled in batches', async () => {
    const e = await attempt(`renameColumn({ table: 'nokey', from: 'name', to: 'title' })`);
    expect(e.message).to.include('table "public.nokey" has no primary key');
  });

  it('a bad change in a later position leaves the earlier ones unapplied too', async () => {
    const e = await attempt(`addColumn({ table: 'users', column: { name: 'age', type: 'int' } }), renameColumn({ table: 'users', from: 'nope', to: 'x' })`);
    expect(e.message).to.include('change #2');
  });

  it('refuses invalid descriptions before touching the database', () => {
    expect(() => addColumn({ table: 'users', column: { name: 'a', type: 'int; drop table users' } })).to.throw(ChangeInputError, /type name/);
    expect(() => addColumn({ table: 'users', column: { name: 'a', type: 'int', nullable: false } })).to.throw(ChangeInputError, /no default/);
    expect(() => renameColumn({ table: 'users', from: 'a', to: 'a' })).to.throw(ChangeInputError);
    expect(() => renameColumn({ table: 'users', from: 'a', to: 'b'.repeat(64) })).to.throw(ChangeInputError, /63 bytes/);
  });

  it('hostile table and column names work end to end', async () => {
    const p = tempProject('hostile');
    p.write(
      '001.hostile.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'users; drop table x', from: 'x"; drop table users; --', to: 'y); drop table users; --' })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: p.dir, stateSchema: 'zd_hostile', contract: { after: 0 }, logger: silentLogger });
    await umzug.up();
    await umzug.up();
    const cols = await knex.raw<{ rows: { column_name: string }[] }>(
      `SELECT column_name FROM information_schema.columns WHERE table_name = 'users; drop table x' ORDER BY column_name`,
    );
    expect(cols.rows.map((r) => r.column_name)).to.deep.equal(['id', 'y); drop table users; --']);
    const values = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM "users; drop table x" WHERE "y); drop table users; --" = 'v' || id`);
    expect(values.rows[0]!.n).to.equal(1000);
    await umzug.down();
    await umzug.down();
    const back = await knex.raw<{ rows: { column_name: string }[] }>(
      `SELECT column_name FROM information_schema.columns WHERE table_name = 'users; drop table x' ORDER BY column_name`,
    );
    expect(back.rows.map((r) => r.column_name)).to.deep.equal(['id', 'x"; drop table users; --']);
    expect((await knex.raw<{ rows: unknown[] }>('SELECT 1 FROM users LIMIT 1')).rows).to.have.length(1);
  });
});

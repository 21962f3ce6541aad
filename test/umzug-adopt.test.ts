import { expect } from 'chai';
import { cliProject, jsonOut, type CliProject } from './cli-support.js';
import { useTestDatabase } from './support/pg.js';
import type { AdoptReport } from '../lib/ops/adopt.js';

const plain = (table: string) =>
  `export const up = async ({ context }) => { await context.knex.raw('CREATE TABLE ${table} (id int PRIMARY KEY)'); };\nexport const down = async ({ context }) => { await context.knex.raw('DROP TABLE ${table}'); };\n`;

describe('`umzug adopt` imports an Umzug project\'s own history (SequelizeMeta, JSON storage), idempotently', function () {
  this.timeout(120_000);
  // What an Umzug project with SequelizeStorage left: two migrations ran, their tables exist, SequelizeMeta lists them.
  const t = useTestDatabase('umzug_adopt', async ({ knex }) => {
    await knex.raw(`CREATE TABLE "SequelizeMeta" (name varchar(255) PRIMARY KEY)`);
    await knex.raw(`INSERT INTO "SequelizeMeta" VALUES ('2024.01.01T00.00.00.users.js'), ('2024.01.02T00.00.00.orders'), ('2023.12.31T00.00.00.gone.js')`);
    await knex.raw(`CREATE TABLE users (id int PRIMARY KEY)`);
    await knex.raw(`CREATE TABLE orders (id int PRIMARY KEY)`);
  });
  let p: CliProject;
  before(() => {
    p = cliProject('umzug-adopt', { type: 'module' }, t.url);
    p.write('migrations/2024.01.01T00.00.00.users.js', plain('users'));
    p.write('migrations/2024.01.02T00.00.00.orders.js', plain('orders'));
    p.write('migrations/2024.01.03T00.00.00.items.js', plain('items'));
  });

  it('records what the storage lists (by file name, with or without extension), reports what it cannot match, then `up` runs only the rest', async () => {
    const pendingBefore = jsonOut<{ name: string }[]>(await p.run(['pending', '--json'])).map((m) => m.name);
    expect(pendingBefore).to.have.length(3);

    const dry = jsonOut<AdoptReport>(await p.run(['adopt', '--from', 'sequelize-meta', '--dry-run', '--json']));
    expect(dry.recorded).to.deep.equal(['2024.01.01T00.00.00.users.js', '2024.01.02T00.00.00.orders.js']);
    expect(jsonOut<unknown[]>(await p.run(['pending', '--json'])), 'a dry run records nothing').to.have.length(3);

    const r = await p.run(['adopt', '--from', 'sequelize-meta', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const report = jsonOut<AdoptReport>(r);
    expect(report).to.deep.include({
      recorded: ['2024.01.01T00.00.00.users.js', '2024.01.02T00.00.00.orders.js'],
      alreadyExecuted: [],
      unknown: ['2023.12.31T00.00.00.gone.js'],
      typed: [],
      dryRun: false,
    });
    expect(jsonOut<{ name: string }[]>(await p.run(['pending', '--json'])).map((m) => m.name)).to.deep.equal(['2024.01.03T00.00.00.items.js']);

    const again = jsonOut<AdoptReport>(await p.run(['adopt', '--from', 'sequelize-meta', '--json']));
    expect(again.recorded, 'idempotent').to.deep.equal([]);
    expect(again.alreadyExecuted).to.deep.equal(['2024.01.01T00.00.00.users.js', '2024.01.02T00.00.00.orders.js']);

    const up = await p.run(['up']);
    expect(up.code, up.stderr).to.equal(0);
    expect((await t.knex.raw(`SELECT to_regclass('items') IS NOT NULL AS ok`)).rows[0].ok).to.equal(true);
    // down reverts the newest first: the file up ran, then the adopted ones in file order.
    const down = await p.run(['down', '--json']);
    expect(jsonOut<{ reverted: string[] }>(down).reverted).to.deep.equal(['2024.01.03T00.00.00.items.js']);
  });

  it('reads a JSON storage too, and says clearly when a storage is missing', async () => {
    p.write('umzug.json', JSON.stringify(['2024.01.03T00.00.00.items.js']));
    const r = jsonOut<AdoptReport>(await p.run(['adopt', '--from', 'json', '--json']));
    expect(r.recorded).to.deep.equal(['2024.01.03T00.00.00.items.js']);
    const missing = await p.run(['adopt', '--from', 'table', '--table', 'migrations; drop table users', '--column', 'name']);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.match(/does not exist here\. Nothing was recorded/);
    expect((await t.knex.raw(`SELECT to_regclass('users') IS NOT NULL AS ok`)).rows[0].ok).to.equal(true);
    const usage = await p.run(['adopt', '--from', 'table']);
    expect(usage.stderr).to.match(/needs --table and --column/);
  });
});

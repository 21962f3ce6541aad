import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { freshDatabase, knexFor } from './support/pg.js';
import type { RehearsalReport } from '../lib/ops/rehearse.js';
import type { StatusReport } from '../lib/ops/status.js';
import { cliProject, jsonOut, type CliProject } from './cli-support.js';

describe('the `umzug` bin in a CommonJS JavaScript project with a knexfile: create → up → status → down → rehearse', function () {
  this.timeout(90_000);
  let url: string;
  let knex: Knex;
  let p: CliProject;

  before(async () => {
    url = await freshDatabase('cli_js');
    knex = knexFor(url, 2);
    await knex.raw(`CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL)`);
    await knex.raw(`INSERT INTO items SELECT g, g * 10 FROM generate_series(1, 50) g`);
    p = cliProject('cli-js', { type: 'commonjs' }, url);
    // The project's own knexfile: one config per environment, migrations under db/migrations.
    p.write(
      'knexfile.js',
      `module.exports = {
  development: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 4 }, migrations: { directory: './db/migrations' } },
  production: { client: 'pg', connection: 'postgres://nowhere.invalid/none' },
};
`,
    );
    // No knex here: it comes from the knexfile.
    p.write('umzug.config.js', `module.exports = { contract: { after: 0 }, logger: null, backfill: { canary: false }, monitor: { canary: false } };\n`);
  });
  after(() => knex?.destroy());

  it('create writes CommonJS .js files into the knexfile’s migrations directory, typed and plain', async () => {
    const typed = await p.run(['create', '--name', 'items-price-positive', '--template', 'add-check', '--table', 'items', '--constraint', 'items_price_positive', '--check', 'price >= 0']);
    expect(typed.code, typed.stderr).to.equal(0);
    const plain = await p.run(['create', '--name', 'notes-table']);
    expect(plain.code, plain.stderr).to.equal(0);
    const files = p.files('db/migrations');
    expect(files).to.have.length(2);
    expect(files[0]).to.match(/items-price-positive\.js$/);
    const body = readFileSync(path.join(p.dir, 'db/migrations', files[0]!), 'utf8');
    expect(body).to.include(`const { defineMigration, addCheck } = require('umzug-zero-downtime');`);
    expect(body).to.include('module.exports = defineMigration({').and.include('check: `price >= 0`');
    expect(files[1]).to.match(/notes-table\.js$/);
    // A knexfile project's plain files are Knex's shape, and named Knex's way: `create` writes them so.
    expect(files.every((f) => /^\d{14}_/.test(f)), files.join(' ')).to.equal(true);
    expect(readFileSync(path.join(p.dir, 'db/migrations', files[1]!), 'utf8')).to.include('exports.up = async (knex) => {');
    // Give the plain migration a real, correct up and down.
    p.write(
      `db/migrations/${files[1]}`,
      `exports.up = async (knex) => { await knex.raw('CREATE TABLE notes (id int PRIMARY KEY, body text)'); };
exports.down = async (knex) => { await knex.raw('DROP TABLE notes'); };
`,
    );
    const pending = jsonOut<{ name: string }[]>(await p.run(['pending', '--json']));
    expect(pending.map((x) => x.name)).to.deep.equal([`${files[0]}:expand`, files[1]]);
  });

  it('an ES-module JavaScript project gets `import` syntax', async () => {
    const esm = cliProject('cli-js-esm', { type: 'module' }, url);
    const r = await esm.run(['create', '--name', 'x', '--template', 'rename-table', '--from', 'items', '--to', 'products', '--skip-verify', '--folder', path.join(esm.dir, 'migrations')]);
    expect(r.code, r.stderr).to.equal(0);
    const [file] = esm.files('migrations');
    expect(file).to.match(/\.x\.js$/);
    const body = readFileSync(path.join(esm.dir, 'migrations', file!), 'utf8');
    expect(body).to.include(`import { defineMigration, renameTable } from 'umzug-zero-downtime';`).and.include('export default defineMigration');
  });

  it('up, status and down through the knexfile’s development config', async () => {
    const up = await p.run(['up', '--json'], {}, { spawn: true });
    expect(up.code, up.stderr).to.equal(0);
    const applied = jsonOut<{ command: string; applied: string[]; waiting: { name: string; reasons: string[] }[] }>(up);
    expect(applied.command).to.equal('up');
    expect(applied.applied.map((n) => n.replace(/^(?:[\d.T]+\.|\d{14}_)/, ''))).to.deep.equal(['items-price-positive.js:expand', 'notes-table.js']);
    expect(applied.waiting.map((w) => w.name.replace(/^(?:[\d.T]+\.|\d{14}_)/, ''))).to.deep.equal(['items-price-positive.js:contract']);
    const constraint = await knex.raw(`SELECT convalidated FROM pg_constraint WHERE conname = 'items_price_positive'`);
    expect((constraint as { rows: { convalidated: boolean }[] }).rows).to.deep.equal([{ convalidated: true }]);
    const status = jsonOut<StatusReport>(await p.run(['status', '--json']));
    expect(status.migrations.map((m) => [m.kind, m.expand])).to.deep.equal([
      ['phased', 'applied'],
      ['plain', 'applied'],
    ]);
    expect((await p.run(['status'])).stdout).to.match(/notes-table\.js\s+applied\s+-\s+-\s+\(plain\)/);
    const down = await p.run(['down', '--to', '0', '--json']);
    expect(down.code, down.stderr).to.equal(0);
    expect(jsonOut<{ reverted: string[] }>(down).reverted).to.have.length(2);
    const left = await knex.raw(`SELECT to_regclass('notes') IS NULL AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'items_price_positive') AS ok`);
    expect((left as { rows: { ok: boolean }[] }).rows[0]!.ok).to.equal(true);
  });

  it('rehearse passes, then catches a sql() change created with a wrong down', async () => {
    const good = await p.run(['rehearse']);
    expect(good.code, good.stdout + good.stderr).to.equal(0);
    expect(good.stdout).to.match(/✓ rehearsal passed: 3 phases up/);

    const created = await p.run(['create', '--name', 'items-price-index', '--template', 'sql', '--up', 'CREATE INDEX items_price_idx ON items (price)', '--down', 'SELECT 1']);
    expect(created.code, created.stderr).to.equal(0);
    const bad = await p.run(['rehearse', '--json']);
    expect(bad.code).to.equal(1);
    const r = jsonOut<RehearsalReport>(bad);
    expect(r.ok).to.equal(false);
    expect(r.schemaDiff).to.deep.equal(['+ index public.items_price_idx: CREATE INDEX items_price_idx ON public.items USING btree (price)']);
    expect(r.dataDiff).to.deep.equal([]);
  });

  it('refuses a bad config by field name, and a knexfile without the NODE_ENV environment', async () => {
    const other = cliProject('cli-js-bad', { type: 'commonjs' }, url);
    other.write('umzug.config.js', `module.exports = { knex: { client: 'pg' }, lock: { timeout: 'soon' }, backfil: {} };\n`);
    const r = await other.run(['pending']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include('lock.timeout must be a duration').and.include('unknown key backfil');
    const env = await p.run(['pending'], { NODE_ENV: 'staging' });
    expect(env.code).to.equal(2);
    expect(env.stderr).to.match(/knexfile\.js has no config for the environment staging \(it has: development, production\)\. Pass --env \(or set NODE_ENV\)/);
  });
});

import { execFile } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { cliProject, jsonOut } from './cli-support.js';
import { useTestDatabase } from './support/pg.js';

const KNEX_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../node_modules/knex/bin/cli.js');
const run = promisify(execFile);

describe('a Knex project migrated by `knex migrate:latest` is adopted with no hand work; both CLIs agree both ways', function () {
  this.timeout(180_000);
  const t = useTestDatabase('knex_adopt');

  it('reads knex_migrations as history, records what `umzug up` runs there, and `umzug down` removes it there too', async () => {
    const { knex, url } = t;
    const p = cliProject('knex-adopt', { type: 'commonjs' }, url);
    // A Knex project has knex and pg installed: Knex's CLI runs the project's own knex.
    for (const dep of ['knex', 'pg']) symlinkSync(path.resolve(path.dirname(KNEX_CLI), '../../', dep), path.join(p.dir, 'node_modules', dep));
    p.write('knexfile.cjs', `module.exports = { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 6 }, migrations: { directory: './migrations' } };\n`);
    const knexMigration = (table: string, up: string, down: string) =>
      `exports.up = function (knex) { return knex.schema.${up}; };\nexports.down = function (knex) { return knex.schema.${down}; };\n// ${table}\n`;
    p.write('migrations/20240101000000_create_products.js', knexMigration('products', `createTable('products', (t) => { t.increments('id'); t.string('title'); })`, `dropTable('products')`));
    p.write('migrations/20240102000000_add_price.js', knexMigration('products', `alterTable('products', (t) => { t.integer('price'); })`, `alterTable('products', (t) => { t.dropColumn('price'); })`));
    const knexCli = async (...args: string[]) => {
      const r = await run(process.execPath, [KNEX_CLI, '--knexfile', 'knexfile.cjs', ...args], { cwd: p.dir, env: { ...process.env, DATABASE_URL: url } });
      return r.stdout;
    };
    await knexCli('migrate:latest');
    await knex.raw(`INSERT INTO products (title, price) SELECT 'p' || g, g FROM generate_series(1, 300) g`);

    // umzug sees Knex's history: nothing pending, both files executed, `up` runs nothing.
    expect(jsonOut<unknown[]>(await p.run(['pending', '--json']))).to.deep.equal([]);
    expect(jsonOut<{ phases: unknown[] }>(await p.run(['plan', '--json'])).phases, 'plan reads the same history').to.deep.equal([]);
    expect(jsonOut<{ name: string }[]>(await p.run(['executed', '--json'])).map((m) => m.name)).to.deep.equal([
      '20240101000000_create_products.js',
      '20240102000000_add_price.js',
    ]);

    // A typed migration in the same folder: umzug runs its expand and records the file in knex_migrations, so
    // `knex migrate:latest` neither runs nor rejects it.
    p.write(
      'migrations/20240103000000_rename_title.js',
      `const { defineMigration, renameColumn } = require('umzug-zero-downtime');\nmodule.exports = defineMigration({ changes: [renameColumn({ table: 'products', from: 'title', to: 'name' })] });\n`,
    );
    const up = await p.run(['up', '--canary', 'off']);
    expect(up.code, up.stderr).to.equal(0);
    const recorded = await knex.raw<{ rows: { name: string; batch: number }[] }>(`SELECT name, batch FROM knex_migrations ORDER BY id`);
    expect(recorded.rows.map((r) => r.name)).to.deep.equal(['20240101000000_create_products.js', '20240102000000_add_price.js', '20240103000000_rename_title.js']);
    expect(recorded.rows[2]!.batch, 'a batch of its own').to.equal(2);
    expect(await knexCli('migrate:latest')).to.match(/Already up to date/);

    // The other way: a file Knex runs is executed for umzug too.
    p.write('migrations/20240104000000_add_stock.js', knexMigration('products', `alterTable('products', (t) => { t.integer('stock'); })`, `alterTable('products', (t) => { t.dropColumn('stock'); })`));
    expect(await knexCli('migrate:latest')).to.match(/Batch 3 run: 1 migrations/);
    expect(jsonOut<{ name: string }[]>(await p.run(['executed', '--json'])).map((m) => m.name).at(-1)).to.equal('20240104000000_add_stock.js');

    // umzug down reverts the newest (Knex's file, called Knex-style) and removes it from knex_migrations.
    const down = await p.run(['down', '--json']);
    expect(down.code, down.stderr).to.equal(0);
    expect(jsonOut<{ reverted: string[] }>(down).reverted).to.deep.equal(['20240104000000_add_stock.js']);
    expect(await knexCli('migrate:status')).to.match(/Found 1 Pending Migration file\/files\.[\s\S]*20240104000000_add_stock\.js/);
    expect(await knexCli('migrate:latest')).to.match(/Batch 3 run: 1 migrations/);
    // Only the typed file's contract is left, waiting at its gate.
    expect(jsonOut<{ name: string; waiting?: unknown }[]>(await p.run(['pending', '--json'])).map((m) => [m.name, !!m.waiting])).to.deep.equal([
      ['20240103000000_rename_title.js:contract', true],
    ]);

    // `create` beside Knex-named files names the new file Knex's way (a dotted name would sort before them all), in
    // Knex's shape: Knex's CLI lists it as pending, in order.
    const created = await p.run(['create', '--name', 'add_note', '--json']);
    expect(created.code, created.stderr).to.equal(0);
    const file = path.basename(jsonOut<{ created: string[] }>(created).created[0]!);
    // --knexfile and --env, as Knex's CLI takes them: a knexfile elsewhere, with one config per environment.
    p.write('config/knex.cjs', `module.exports = { staging: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 4 }, migrations: { directory: '../migrations' } } };\n`);
    const viaEnv = await p.run(['executed', '--json', '--knexfile', 'config/knex.cjs', '--env', 'staging']);
    expect(viaEnv.code, viaEnv.stderr).to.equal(0);
    expect(jsonOut<{ name: string }[]>(viaEnv).map((m) => m.name)).to.include('20240104000000_add_stock.js');
    const noEnv = await p.run(['executed', '--knexfile', 'config/knex.cjs', '--env', 'production']);
    expect(noEnv.stderr).to.match(/has no config for the environment production \(it has: staging\)/);
    expect(file).to.match(/^\d{14}_add_note\.js$/);
    expect(await knexCli('migrate:status')).to.match(new RegExp(`Found 1 Pending Migration file/files\\.[\\s\\S]*${file.replace('.', '\\.')}`));
  });
});

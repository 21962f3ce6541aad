import { execFile } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { cliProject, jsonOut } from './cli-support.js';
import { useTestDatabase } from './support/pg.js';
import { compiledModule } from './support/compiled-lib.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const KNEX_CLI = path.resolve(here, '../node_modules/knex/bin/cli.js');
const SOURCE = compiledModule('knex-migration-source');
const run = promisify(execFile);

describe('zeroDowntimeMigrations(): `knex migrate:*` runs typed and plain migrations, and both histories agree', function () {
  this.timeout(180_000);
  const t = useTestDatabase('knex_source');

  it('latest runs a plain file and a typed expand (backfilled), umzug agrees, rollback and down undo them', async () => {
    const { knex, url } = t;
    const p = cliProject('knex-source', { type: 'commonjs' }, url);
    for (const dep of ['knex', 'pg']) symlinkSync(path.resolve(path.dirname(KNEX_CLI), '../../', dep), path.join(p.dir, 'node_modules', dep));
    // Knex's own CLI, by plain node: the knexfile and the migrations are JavaScript, and the library they require is
    // the compiled one the bin runs (cli-support.ts).
    p.write(
      'knexfile.cjs',
      `const { zeroDowntimeMigrations } = require(${JSON.stringify(SOURCE)});
module.exports = {
  client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 6 },
  migrations: { migrationSource: zeroDowntimeMigrations({ migrations: 'migrations/*.js', contract: { after: 0 }, backfill: { canary: false }, monitor: { canary: false }, logger: null }) },
};
`,
    );
    p.write(
      'migrations/20240101000000_create_products.js',
      `exports.up = async function (knex) {
  await knex.schema.createTable('products', (t) => { t.increments('id'); t.string('title'); });
  await knex.raw("INSERT INTO products (title) SELECT 'p' || g FROM generate_series(1, 300) g");
};
exports.down = function (knex) { return knex.schema.dropTable('products'); };
`,
    );
    p.write(
      'migrations/20240102000000_rename_title.js',
      `const { defineMigration, renameColumn } = require('umzug-zero-downtime');\nmodule.exports = defineMigration({ changes: [renameColumn({ table: 'products', from: 'title', to: 'name' })] });\n`,
    );
    const knexCli = async (...args: string[]) => {
      const r = await run(process.execPath, [KNEX_CLI, '--knexfile', 'knexfile.cjs', ...args], { cwd: p.dir, env: { ...process.env, DATABASE_URL: url } });
      return r.stdout;
    };
    const q = async <R>(sql: string) => (await knex.raw<{ rows: R[] }>(sql)).rows;
    const columns = async () => (await q<{ column_name: string }>(`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'products' ORDER BY ordinal_position`)).map((r) => r.column_name);
    const knexHistory = async () => (await q<{ name: string; batch: number }>(`SELECT name, batch FROM knex_migrations ORDER BY id`)).map((r) => [r.name, r.batch]);
    const ours = async () => (await q<{ name: string }>(`SELECT name FROM zero_downtime.migrations ORDER BY seq`)).map((r) => r.name);
    const pending = async () => jsonOut<{ name: string; waiting?: unknown }[]>(await p.run(['pending', '--json'])).map((m) => [m.name, !!m.waiting]);
    const PLAIN = '20240101000000_create_products.js';
    const TYPED = '20240102000000_rename_title.js';

    // One `migrate:latest`: the plain file in Knex's transaction, then the typed file's expand through the engine.
    expect(await knexCli('migrate:latest')).to.match(/Batch 1 run: 2 migrations/);
    expect(await columns()).to.deep.equal(['id', 'title', 'name']);
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM products WHERE name IS NOT NULL AND name = title`))[0]!.n, 'backfilled').to.equal(300);
    await knex.raw(`INSERT INTO products (title) VALUES ('written by the old version')`);
    expect((await q<{ name: string }>(`SELECT name FROM products WHERE id = 301`))[0]!.name, 'kept in sync').to.equal('written by the old version');
    expect(await knexHistory()).to.deep.equal([[PLAIN, 1], [TYPED, 1]]);
    expect(await ours(), 'the engine records the expand once, in its own table').to.deep.equal([`${TYPED}:expand`]);
    const verified = await q<{ verify_mismatches: number; expand_finished_at: Date | null }>(`SELECT verify_mismatches::int, expand_finished_at FROM zero_downtime.changes`);
    expect(verified).to.have.length(1);
    expect(verified[0]!.verify_mismatches).to.equal(0);
    expect(verified[0]!.expand_finished_at).to.be.instanceOf(Date);

    // The package's CLI (the same knexfile: Knex's history read beside its own) agrees.
    // Its contract is pending, its gate open (the source's options say contract.after: 0, and the bin reads them).
    expect(await pending()).to.deep.equal([[`${TYPED}:contract`, false]]);
    expect(jsonOut<{ name: string }[]>(await p.run(['executed', '--json'])).map((m) => m.name)).to.deep.equal([PLAIN, `${TYPED}:expand`]);
    expect(await knexCli('migrate:latest')).to.match(/Already up to date/);

    // The contract is not a Knex migration: `umzug up` runs it once its gate is open (no safety window: the bin takes
    // the source's own options from the knexfile, no umzug.config needed).
    const up = await p.run(['up', '--json']);
    expect(up.code, up.stderr).to.equal(0);
    expect(await columns()).to.deep.equal(['id', 'name']);
    expect(await pending()).to.deep.equal([]);
    expect(await knexHistory(), 'a contract adds nothing to Knex').to.deep.equal([[PLAIN, 1], [TYPED, 1]]);

    // Rollback of the batch: the typed file (its contract, then its expand), then the plain file.
    expect(await knexCli('migrate:rollback')).to.match(/Batch 1 rolled back: 2 migrations/);
    expect(await q(`SELECT 1 FROM pg_class WHERE relname = 'products'`)).to.deep.equal([]);
    expect(await knexHistory()).to.deep.equal([]);
    expect(await ours()).to.deep.equal([]);
    expect(await q(`SELECT 1 FROM zero_downtime.changes`)).to.deep.equal([]);
    expect(await pending()).to.deep.equal([[PLAIN, false], [`${TYPED}:expand`, false]]);

    // From scratch again; then `migrate:down` reverts the typed file alone (expand only: no contract ran).
    expect(await knexCli('migrate:latest')).to.match(/Batch 1 run: 2 migrations/);
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM products WHERE name = title`))[0]!.n).to.equal(300);
    expect(await knexCli('migrate:down')).to.match(new RegExp(TYPED.replace('.', '\\.')));
    expect(await columns()).to.deep.equal(['id', 'title']);
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM products WHERE title LIKE 'p%'`))[0]!.n).to.equal(300);
    expect(await knexHistory()).to.deep.equal([[PLAIN, 1]]);
    expect(await ours()).to.deep.equal([]);
    expect(await pending()).to.deep.equal([[`${TYPED}:expand`, false]]);
    expect(await knexCli('migrate:status')).to.match(new RegExp(`Found 1 Pending Migration file/files\\.[\\s\\S]*${TYPED.replace('.', '\\.')}`));
  });
});

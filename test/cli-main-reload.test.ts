import { expect } from 'chai';
import { freshDatabase, pgClient } from './support/pg.js';
import { runInProcess } from './support/cli-in-process.js';
import { cliProject, jsonOut } from './cli-support.js';

/**
 * The bin's `main` called again in one process (the suite runs most commands so) must see the project as it is on
 * disk now, as a new process would: Node keeps every module it loaded, ES modules by URL and CommonJS ones by path.
 */
describe('the command line run twice in one process loads the project’s config and migrations afresh', function () {
  this.timeout(60_000);
  let url: string;
  before(async () => {
    url = await freshDatabase('cli_main_reload');
    const c = await pgClient(url);
    await c.query('CREATE TABLE users (id int PRIMARY KEY)');
    await c.end();
  });

  const inProcess = async (dir: string, args: string[]) => {
    const r = await runInProcess(dir, args, { DATABASE_URL: url, NO_COLOR: '1' });
    expect(r, 'no other in-process run at the same time').to.not.equal(null);
    expect(r!.code, r!.stderr).to.equal(0);
    return r!;
  };
  const addColumn = (module: 'esm' | 'cjs', column: string) =>
    module === 'esm'
      ? `import { defineMigration, addColumn } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [addColumn({ table: 'users', column: { name: '${column}', type: 'text' } })] });\n`
      : `const { defineMigration, addColumn } = require('umzug-zero-downtime');\nmodule.exports = defineMigration({ changes: [addColumn({ table: 'users', column: { name: '${column}', type: 'text' } })] });\n`;

  for (const [type, module, config, migration] of [
    ['module', 'esm', 'umzug.config.ts', 'first.ts'],
    ['commonjs', 'cjs', 'umzug.config.cjs', 'first.cjs'],
  ] as const) {
    it(`${type}: an edited config file and an edited migration file are read again`, async () => {
      const p = cliProject(`reload-${module}`, { type }, url);
      const writeConfig = (folder: string) =>
        p.write(
          config,
          module === 'esm'
            ? `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL }, logger: null, migrations: '${folder}/*.{ts,cjs}' };\n`
            : `module.exports = { knex: { client: 'pg', connection: process.env.DATABASE_URL }, logger: null, migrations: '${folder}/*.{ts,cjs}' };\n`,
        );
      writeConfig('a');
      p.write(`a/${migration}`, addColumn(module, 'email'));
      p.write(`b/${migration.replace('first', 'second')}`, addColumn(module, 'phone'));

      const names = async () => jsonOut<{ name: string }[]>(await inProcess(p.dir, ['pending', '--json'])).map((m) => m.name);
      expect(await names()).to.deep.equal([`${migration}:expand`]);
      expect((await inProcess(p.dir, ['plan'])).stdout).to.include('public.users.email text').and.not.include('nickname');

      p.write(`a/${migration}`, addColumn(module, 'nickname'));
      expect((await inProcess(p.dir, ['plan'])).stdout, 'the migration as it is now').to.include('public.users.nickname text').and.not.include('users.email');

      writeConfig('b');
      expect(await names(), 'the config as it is now').to.deep.equal([`${migration.replace('first', 'second')}:expand`]);
    });
  }
});

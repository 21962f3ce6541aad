import { expect } from 'chai';
import { cliProject, type RunResult } from './cli-support.js';
import { freshDatabase, urlFor } from './support/pg.js';

/** What a person reads: exit 2 before any connection, the setting named, what to set, never pg's startup-packet error. */
function expectExplained(r: RunResult, ...phrases: string[]): void {
  expect(r.code, r.stderr).to.equal(2);
  expect(r.stderr).to.not.match(/startup packet|Unable to acquire a connection/);
  for (const p of phrases) expect(r.stderr).to.include(p);
  expect(r.stderr).to.include('postgres://user:password@host:5432/database');
  expect(r.stdout).to.equal('');
}

describe('the `umzug` bin with an empty, garbled or missing database URL', function () {
  this.timeout(60_000);

  it('an empty DATABASE_URL and no config: says DATABASE_URL is empty and what to set', async () => {
    const p = cliProject('conn-empty', { type: 'module' }, '');
    expectExplained(await p.run(['pending']), 'DATABASE_URL is empty', 'Set DATABASE_URL to a PostgreSQL URL');
  });

  it('--database-url "not a url": says it is not a URL', async () => {
    const p = cliProject('conn-garbage', { type: 'module' }, urlFor('postgres'));
    expectExplained(await p.run(['pending', '--database-url', 'not a url']), '--database-url is not a URL', 'Set --database-url');
  });

  it('a URL of another scheme: named, with its password masked', async () => {
    const p = cliProject('conn-scheme', { type: 'module' }, 'mysql://app:s3cr3t-pw@db.example:3306/app');
    const r = await p.run(['pending']);
    expectExplained(r, 'DATABASE_URL is not a PostgreSQL URL', 'mysql://app:*****@db.example:3306/app');
    expect(r.stderr).to.not.include('s3cr3t-pw');
  });

  it('a config reading process.env.DATABASE_URL while it is unset: says the connection is missing and to set DATABASE_URL', async () => {
    const p = cliProject('conn-missing', { type: 'module' }, '');
    p.write('umzug.config.js', `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL }, logger: null };\n`);
    const r = await p.run(['pending'], { DATABASE_URL: undefined });
    expectExplained(r, 'has no `connection`', 'DATABASE_URL is not set');
  });

  it('the same config with DATABASE_URL empty: says it is empty', async () => {
    const p = cliProject('conn-missing-empty', { type: 'module' }, '');
    p.write('umzug.config.js', `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL }, logger: null };\n`);
    expectExplained(await p.run(['pending']), 'knex.connection is empty', 'DATABASE_URL is set but empty');
  });

  it('a good URL still works', async () => {
    const p = cliProject('conn-good', { type: 'module' }, await freshDatabase('cli_conn'));
    p.write('migrations/.keep', '');
    const r = await p.run(['pending', '--json']);
    expect(r.code, r.stderr).to.equal(0);
  });
});

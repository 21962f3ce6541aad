import { expect } from 'chai';
import type { Knex } from 'knex';
import { cliProject, jsonLines, jsonOut, type CliProject, type RunResult } from './cli-support.js';
import { freshDatabase, knexFor } from './support/pg.js';

/**
 * `--json` stdout is JSON on every line whatever else prints: Umzug's default logger (console), a migration's own
 * console.log of an object literal, a config that logs while it loads. Those messages are kept, on stderr.
 * (cliProject.run checks every stdout line of a --json run; the assertions here say what went where.)
 */
describe('--json: stdout carries only JSON lines, every other message goes to stderr', function () {
  this.timeout(180_000);
  let url: string;
  let knex: Knex;
  let p: CliProject;

  before(async () => {
    url = await freshDatabase('cli_json');
    knex = knexFor(url, 2);
    await knex.raw(`CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL)`);
    await knex.raw(`INSERT INTO items SELECT g, g FROM generate_series(1, 100) g`);
    p = cliProject('cli-json', { type: 'module' }, url);
    // No `logger` option: Umzug logs each phase with console.info, an object literal on stdout.
    p.write(
      'umzug.config.js',
      `console.log({ loading: 'config' });
export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 4 } }, contract: { after: 0 }, monitor: { canary: false }, backfill: { canary: false } };
`,
    );
    p.write(
      'migrations/2099.01.01T00.00.01.notes.js',
      `export const up = async ({ context }) => {
  console.log({ creating: 'notes' });
  process.stdout.write('plain text from a migration\\n');
  await context.knex.raw('CREATE TABLE notes (id int PRIMARY KEY)');
};
export const down = async ({ context }) => {
  console.log({ dropping: 'notes' });
  await context.knex.raw('DROP TABLE notes');
};
`,
    );
  });
  after(() => knex?.destroy());

  const expectStray = (r: RunResult, ...what: RegExp[]) => {
    for (const w of what) {
      expect(r.stdout, 'not on stdout').to.not.match(w);
      expect(r.stderr, 'on stderr').to.match(w);
    }
  };

  it('pending and executed: one line each, even though Umzug pretty-prints', async () => {
    const r = await p.run(['pending', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.split('\n').filter(Boolean)).to.have.length(1);
    expect(jsonOut<{ name: string }[]>(r).map((m) => m.name)).to.deep.equal(['2099.01.01T00.00.01.notes.js']);
    expectStray(r, /loading: 'config'/);
  });

  it('up: Umzug’s logger, the migration’s console.log and stdout.write go to stderr', async () => {
    const r = await p.run(['up', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(jsonOut<{ applied: string[] }>(r).applied).to.deep.equal(['2099.01.01T00.00.01.notes.js']);
    expectStray(r, /creating: 'notes'/, /plain text from a migration/, /loading: 'config'/);
  });

  it('status, executed, plan, verify', async () => {
    for (const cmd of ['status', 'executed', 'plan', 'verify']) {
      const r = await p.run([cmd, '--json']);
      expect(r.code, `${cmd}: ${r.stderr}`).to.equal(0);
      expect(jsonLines(r.stdout, r.stderr), cmd).to.have.length(1);
    }
  });

  it('rehearse with the default logger: one JSON report, Umzug’s migrating/reverting lines on stderr', async () => {
    await p.run(['down', '--json']);
    const r = await p.run(['rehearse', '--json']);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(jsonOut<{ ok: boolean }>(r).ok).to.equal(true);
    expectStray(r, /creating: 'notes'/, /dropping: 'notes'/, /event: 'migrating'/);
  });
});

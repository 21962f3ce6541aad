import { expect } from 'chai';
import type { Knex } from 'knex';
import type { RehearsalReport } from '../lib/ops/rehearse.js';
import { cliProject, jsonOut, type CliProject } from './cli-support.js';
import { freshDatabase, knexFor } from './support/pg.js';

/** A rehearsal that fails or finds a difference ends where it started: the same phases pending, nothing half-applied. */
describe('umzug rehearse ends where it started when it finds a difference or a failure', function () {
  this.timeout(120_000);
  let url: string;
  let knex: Knex;
  let p: CliProject;

  const executed = async (): Promise<string[]> => {
    const r = await p.run(['executed', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    return jsonOut<{ name: string }[]>(r).map((x) => x.name);
  };
  const exists = async (sql: string): Promise<boolean> => ((await knex.raw(`SELECT (${sql}) AS x`)) as { rows: { x: boolean }[] }).rows[0]!.x;

  before(async () => {
    url = await freshDatabase('cli_rehearse');
    knex = knexFor(url, 2);
    await knex.raw(`CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL)`);
    await knex.raw(`INSERT INTO items SELECT g, g * 10 FROM generate_series(1, 50) g`);
    p = cliProject('cli-rehearse', { type: 'module' }, url);
    p.write(
      'umzug.config.js',
      `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 4 } }, contract: { after: 0 }, logger: null, backfill: { canary: false }, monitor: { canary: false } };\n`,
    );
    // A phased change (expand + contract), so the rehearsal spans several phases of several kinds.
    const created = await p.run(['create', '--name', 'items-price-positive', '--template', 'add-check', '--table', 'items', '--constraint', 'items_price_positive', '--check', 'price >= 0']);
    expect(created.code, created.stderr).to.equal(0);
    // A hand-written down that forgets the table: after it, a second up fails on "relation notes already exists".
    p.write(
      'migrations/2099.01.01T00.00.01.notes.js',
      `export const up = async ({ context }) => {
  await context.knex.raw('CREATE TABLE notes (id int PRIMARY KEY, body text)');
  await context.knex.raw('CREATE INDEX notes_body_idx ON notes (body)');
};
export const down = async ({ context }) => { await context.knex.raw('DROP INDEX notes_body_idx'); };
`,
    );
    p.write(
      'migrations/2099.01.01T00.00.02.tags.js',
      `export const up = async ({ context }) => { await context.knex.raw('CREATE TABLE tags (id int PRIMARY KEY)'); };
export const down = async ({ context }) => { await context.knex.raw('DROP TABLE tags'); };
`,
    );
  });
  after(() => knex?.destroy());

  it('a down that forgets its table: exit 1, the diff, and every phase pending again (not 1 of 4 applied)', async () => {
    expect(await executed()).to.deep.equal([]);
    const r = await p.run(['rehearse']);
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    expect(await executed(), 'the same phases pending as before the rehearsal').to.deep.equal([]);
    expect(r.stdout).to.include('✗ down did not restore the schema');
    expect(r.stdout).to.match(/\+ relation public\.notes: r/);
    expect(r.stdout).to.match(/The database is back at the start: the 4 phases this rehearsal applied were reverted/);
    expect(r.stderr).to.match(/a down does not undo its up/);
    // Only the residue the diff names is left; every other change was undone.
    expect(await exists(`NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'items_price_positive')`)).to.equal(true);
    expect(await exists(`to_regclass('tags') IS NULL AND to_regclass('notes') IS NOT NULL`)).to.equal(true);
    await knex.raw('DROP TABLE notes');
  });

  it('--json says where it ended', async () => {
    const r = await p.run(['rehearse', '--json']);
    expect(r.code).to.equal(1);
    const report = jsonOut<RehearsalReport>(r);
    expect(report.ok).to.equal(false);
    expect(report.endedAt).to.equal('start');
    expect(report.leftApplied).to.deep.equal([]);
    expect(report.applied).to.have.length(4);
    expect(report.reapplied).to.deep.equal([]);
    expect(report.schemaDiff.some((l) => l.startsWith('+ relation public.notes'))).to.equal(true);
    expect(await executed()).to.deep.equal([]);
    await knex.raw('DROP TABLE notes');
  });

  it('an up that fails halfway: the phases before it are reverted, exit 1', async () => {
    p.write(
      'migrations/2099.01.01T00.00.01.notes.js',
      `export const up = async ({ context }) => { await context.knex.raw('CREATE TABLE notes (id int PRIMARY KEY, body text)'); };
export const down = async ({ context }) => { await context.knex.raw('DROP TABLE notes'); };
`,
    );
    p.write('migrations/2099.01.01T00.00.03.boom.js', `export const up = async ({ context }) => { await context.knex.raw('SELECT 1/0'); };\nexport const down = async () => {};\n`);
    const r = await p.run(['rehearse']);
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    expect(await executed(), 'the phases before the failing one reverted').to.deep.equal([]);
    expect(r.stdout).to.match(/✗ rehearsal stopped at "up": .*division by zero/);
    expect(r.stdout).to.match(/The database is back at the start/);
    expect(r.stdout).to.match(/2099\.01\.01T00\.00\.03\.boom\.js failed and is not applied/);
    expect(await exists(`to_regclass('tags') IS NULL AND to_regclass('notes') IS NULL`)).to.equal(true);
  });
});

import { expect } from 'chai';
import type { Knex } from 'knex';
import { zeroDowntime } from '../lib/index.js';
import { freshDatabase, knexFor, silentLogger } from './support/pg.js';
import { renameProject } from './support/project.js';
import { jsonLines, jsonOut, spawnBin as bin } from './cli-support.js';

// Enough rows that the rest left after the kill and the SIGINT outlasts a process start: two processes share it.
const ROWS = 20_000;

// stdout only, and every line of it: a stray line on stdout is the fault this guards against, not noise to skip.
const events = (stdout: string) => jsonLines<{ event: string; outcome?: string; rowsDone?: number }>(stdout);

describe('`umzug backfill`: resume a stopped up, stop on SIGINT, finish with several processes', function () {
  this.timeout(120_000);
  let url: string;
  let knex: Knex;
  let dir: string;
  before(async () => {
    url = await freshDatabase('backfill_cli');
    knex = knexFor(url);
    await knex.raw(`CREATE TABLE items (id int PRIMARY KEY, title text)`);
    await knex.raw(`INSERT INTO items SELECT g, 't' || g FROM generate_series(1, ${ROWS}) g`);
    dir = renameProject(
      'backfill-cli',
      { file: '001.items-name.ts', table: 'items', from: 'title', to: 'name' },
      `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 8 } }, contract: { after: 0 },
  backfill: { batchSize: 200, adaptive: false, pause: '15ms', chunkRows: 2000, canary: false } };
`,
    ).dir;
  });
  after(() => knex?.destroy());

  const backfillRow = async () =>
    ((await knex.raw(`SELECT rows_done, done FROM zero_downtime.backfills`).catch(() => ({ rows: [] }))) as { rows: { rows_done: string; done: boolean }[] }).rows[0];

  it('runs the backfill an `up` left unfinished, stops cleanly on SIGINT, and finishes with a --workers 2 process and a --worker process', async () => {
    // 1. `up` killed mid-backfill: the expand is half done.
    const up = bin(dir, url, ['up']);
    for (let i = 0; i < 400 && Number((await backfillRow())?.rows_done ?? 0) === 0; i++) await new Promise((r) => setTimeout(r, 25));
    up.child.kill('SIGKILL');
    await up.exited;
    const afterKill = Number((await backfillRow())!.rows_done);
    expect(afterKill).to.be.greaterThan(0).and.lessThan(ROWS);

    // 2. `umzug backfill` resumes, and stops after its current batch on SIGINT, keeping its progress.
    const first = bin(dir, url, ['backfill', '--json']);
    for (let i = 0; i < 400 && Number((await backfillRow())!.rows_done) < afterKill + 1000; i++) await new Promise((r) => setTimeout(r, 25));
    first.child.kill('SIGINT');
    expect(await first.exited, first.output()).to.equal(130);
    const ev = events(first.stdout());
    expect(ev.some((e) => e.event === 'backfill-progress')).to.equal(true);
    expect(ev.find((e) => e.event === 'backfill-end')?.outcome).to.equal('interrupted');
    const stopped = await backfillRow();
    expect(stopped!.done).to.equal(false);
    expect(Number(stopped!.rows_done)).to.be.greaterThan(afterKill);
    const held = await knex.raw(`SELECT count(*)::int AS n FROM zero_downtime.backfill_chunks WHERE NOT done AND owner IS NOT NULL`);
    expect(held.rows[0].n, 'a stopped worker gives its chunk back').to.equal(0);

    // 3. Two processes share the rest: one with 2 workers, one in worker mode (as on another machine).
    const a = bin(dir, url, ['backfill', '--workers', '2', '--json']);
    const b = bin(dir, url, ['backfill', '--worker']);
    expect(await a.exited, a.output()).to.equal(0);
    expect(await b.exited, b.output()).to.equal(0);
    expect(events(a.stdout()).find((e) => e.event === 'backfill-end')?.outcome).to.equal('done');
    expect(b.output(), 'plain lines when not on a terminal').to.match(/backfill 001\.items-name\.ts #1 public\.items: (starting|done)/);
    const end = await backfillRow();
    expect(end!.done).to.equal(true);
    // Every row walked exactly once across the killed up, the interrupted run and the two final processes.
    expect(Number(end!.rows_done)).to.equal(ROWS);
    const owners = await knex.raw(`SELECT count(DISTINCT owner)::int AS n FROM zero_downtime.backfill_chunks`);
    expect(owners.rows[0].n).to.be.greaterThan(1);

    // 4. `up` finishes the expand (verify included) without walking the table again.
    const umzug = zeroDowntime({ knex, cwd: dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    let batches = 0;
    umzug.engine.subscribe((e) => {
      if (e.type === 'backfill') batches++;
    });
    await umzug.up({ to: '001.items-name.ts:expand' });
    expect(batches).to.equal(0);
    const bad = await knex.raw(`SELECT count(*)::int AS n FROM items WHERE name IS DISTINCT FROM title`);
    expect(bad.rows[0].n).to.equal(0);
  });

  it('`umzug up` stops cleanly on SIGINT mid-backfill (exit 130, progress kept, nothing recorded as applied), and the next `up` finishes it', async () => {
    await knex.raw(`CREATE TABLE gadgets (id int PRIMARY KEY, label text)`);
    await knex.raw(`INSERT INTO gadgets SELECT g, 'g' || g FROM generate_series(1, ${ROWS}) g`);
    // A state schema of its own: this project's migrations are not the first test's.
    const project = renameProject(
      'up-sigint',
      { file: '001.gadgets-name.ts', table: 'gadgets', from: 'label', to: 'name' },
      `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 8 } }, stateSchema: 'zd_sigint', contract: { after: 0 },
  backfill: { batchSize: 200, adaptive: false, pause: '15ms', chunkRows: 2000, canary: false } };
`,
    );
    const progress = async () =>
      ((await knex.raw(`SELECT rows_done, done FROM zd_sigint.backfills`).catch(() => ({ rows: [] }))) as { rows: { rows_done: string; done: boolean }[] }).rows[0];

    const up = bin(project.dir, url, ['up']);
    for (let i = 0; i < 400 && Number((await progress())?.rows_done ?? 0) < 1000; i++) await new Promise((r) => setTimeout(r, 25));
    up.child.kill('SIGINT');
    expect(await up.exited, up.output()).to.equal(130);
    expect(up.output()).to.match(/Stopping after the current batch/);
    // `up` shows its backfill as `umzug backfill` does (plain lines in CI), so a pipeline's no-output timeout never fires.
    expect(up.stdout()).to.match(/backfill 001\.gadgets-name\.ts #1 expand backfill: starting \(about \d+ rows\)/);
    expect(up.stdout()).to.match(/backfill 001\.gadgets-name\.ts #1 expand backfill: interrupted, \d+ rows walked/);
    expect(up.output()).to.match(/Stopped: .*`umzug up` \(or `umzug backfill`\) resumes from there/);
    const stopped = await progress();
    expect(stopped!.done).to.equal(false);
    expect(Number(stopped!.rows_done)).to.be.greaterThan(0).and.lessThan(ROWS);
    const held = await knex.raw(`SELECT count(*)::int AS n FROM zd_sigint.backfill_chunks WHERE NOT done AND owner IS NOT NULL`);
    expect(held.rows[0].n, 'the stopped up gives its chunk back').to.equal(0);
    const applied = await knex.raw(`SELECT name FROM zd_sigint.migrations`);
    expect(applied.rows, 'an interrupted expand is not recorded as applied').to.deep.equal([]);
    const free = await knex.raw(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
    expect(free.rows[0].n, 'the migration lock died with the stopped process').to.equal(0);

    const again = bin(project.dir, url, ['up', '--json']);
    expect(await again.exited, again.output()).to.equal(0);
    expect(jsonOut<{ applied: string[] }>(again.stdout()).applied).to.deep.equal(['001.gadgets-name.ts:expand']);
    const events = jsonLines<{ event?: string; outcome?: string }>(again.stdout()).map((l) => l.event ?? 'result');
    expect(events[0]).to.equal('backfill-start');
    expect(events).to.include('backfill-end');
    expect(events.at(-1), 'the result is the last line').to.equal('result');
    const end = await progress();
    expect(end!.done).to.equal(true);
    expect(Number(end!.rows_done), 'every row walked exactly once across both runs').to.equal(ROWS);
    const bad = await knex.raw(`SELECT count(*)::int AS n FROM gadgets WHERE name IS DISTINCT FROM label`);
    expect(bad.rows[0].n).to.equal(0);
  });
});

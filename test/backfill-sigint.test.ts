import { expect } from 'chai';
import type { Knex } from 'knex';
import { freshDatabase, knexFor, pgClient } from './support/pg.js';
import { renameProject } from './support/project.js';
import { spawnBin as bin } from './cli-support.js';

const ROWS = 150_000;

/**
 * SIGINT is honoured within one batch, with every option at its default (adaptive batches of up to 50 000 rows aimed
 * at 200 ms, the canary, an idle worker, 250 000-key chunks planned by an index walk because the key is sparse): a
 * stop once waited 62 s for a chunk's planning.
 */
describe('`umzug up` on SIGINT with the default options stops within one batch', function () {
  this.timeout(120_000);
  let url: string;
  let knex: Knex;
  before(async () => {
    url = await freshDatabase('backfill_sigint');
    knex = knexFor(url);
    // ids 7 apart: a key range wider than 4× the rows, so chunks are planned by walking the index
    await knex.raw(`CREATE TABLE parcels (id bigint PRIMARY KEY, label text)`);
    await knex.raw(`INSERT INTO parcels SELECT g * 7, 'p' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw(`ANALYZE parcels`);
  });
  after(() => knex?.destroy());

  it('exits 130 within 3 s of the signal, its progress kept and its chunks given back', async () => {
    const project = renameProject(
      'sigint-defaults',
      { file: '001.parcels-name.ts', table: 'parcels', from: 'label', to: 'name' },
      `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL } };\n`,
    );
    // Watched under the tool's own application_name: a client of ours polling would count as the application's
    // traffic and pace the backfill (which is not what this test is about).
    const watcher = await pgClient(url, 'umzug-zero-downtime test watcher');
    try {
    const progress = async () =>
      ((await watcher.query<{ rows_done: string }>(`SELECT rows_done FROM zero_downtime.backfills`).catch(() => ({ rows: [] }))) as { rows: { rows_done: string }[] }).rows[0];
    await new Promise((r) => setTimeout(r, 1100)); // the setup's statements a second in the past
    const up = bin(project.dir, url, ['up']);
    for (let i = 0; i < 1200 && Number((await progress())?.rows_done ?? 0) < 30_000; i++) await new Promise((r) => setTimeout(r, 25));
    expect(Number((await progress())?.rows_done ?? 0), up.output()).to.be.at.least(30_000);
    const signalled = performance.now();
    up.child.kill('SIGINT');
    expect(await up.exited, up.output()).to.equal(130);
    const tookMs = performance.now() - signalled;
    const done = Number((await progress())!.rows_done);
    expect(tookMs, `stopped ${Math.round(tookMs)} ms after SIGINT, ${done} of ${ROWS} rows done`).to.be.below(3000);
    expect(done).to.be.lessThan(ROWS);
    const held = await knex.raw(`SELECT count(*)::int AS n FROM zero_downtime.backfill_chunks WHERE NOT done AND owner IS NOT NULL`);
    expect(held.rows[0].n, 'every worker gives its chunk back').to.equal(0);
    } finally {
      await watcher.end();
    }
  });
});

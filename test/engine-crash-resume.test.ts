import { expect } from 'chai';
import type { Knex } from 'knex';
import { zeroDowntime } from '../lib/index.js';
import { freshDatabase, knexFor, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { spawnUp } from './support/backfill-spawn.js';

const ROWS = 30_000;

describe('a backfill killed mid-way (SIGKILL) resumes from its last committed batch', function () {
  let url: string;
  let knex: Knex;
  before(async () => {
    url = await freshDatabase('engine_crash_resume');
    knex = knexFor(url);
    await knex.raw(`CREATE TABLE items (id int PRIMARY KEY, title text)`);
    await knex.raw(`INSERT INTO items SELECT g, 't' || g FROM generate_series(1, ${ROWS}) g`);
  });
  after(() => knex?.destroy());

  it('scans every row exactly once across the killed run and the resumed one', async () => {
    const project = tempProject('crash');
    project.write(
      '001.items-name.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'items', from: 'title', to: 'name' })] });
`,
    );
    const child = spawnUp(url, project.dir, 500, 20);

    // Wait until some batches are committed, then kill without any chance to clean up.
    let saved: { rows_done: string; last_key: string[] } | undefined;
    for (let i = 0; i < 600; i++) {
      const r = await knex
        .raw<{ rows: { rows_done: string; last_key: string[] }[] }>(`SELECT rows_done, last_key FROM zero_downtime.backfills`)
        .catch(() => ({ rows: [] as { rows_done: string; last_key: string[] }[] }));
      if (r.rows[0] && Number(r.rows[0].rows_done) >= 5000) {
        saved = r.rows[0];
        break;
      }
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(saved, `backfill never got going: ${child.output()}`).to.not.equal(undefined);
    child.kill('SIGKILL');
    await child.exited;
    const atKill = (await knex.raw<{ rows: { rows_done: string; done: boolean; last_key: string[] }[] }>(`SELECT * FROM zero_downtime.backfills`)).rows[0]!;
    expect(atKill.done).to.equal(false);
    expect(Number(atKill.rows_done)).to.be.lessThan(ROWS);
    // Rows past the saved key are untouched: the killed run's uncommitted batch was rolled back by the server.
    const beyond = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM items WHERE id > ? AND name IS NOT NULL`, [
      Number(atKill.last_key[0]),
    ]);
    expect(beyond.rows[0]!.n).to.equal(0);

    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { batchSize: 500, canary: false }, logger: silentLogger });
    const batchesSeen: number[] = [];
    umzug.engine.subscribe((e) => {
      if (e.type === 'backfill') batchesSeen.push(e.progress.rowsDone);
    });
    await umzug.up();
    const end = (await knex.raw<{ rows: { rows_done: string; done: boolean }[] }>(`SELECT * FROM zero_downtime.backfills`)).rows[0]!;
    expect(end.done).to.equal(true);
    // Had the resumed run started over, it would have scanned more than ROWS rows in total.
    expect(Number(end.rows_done)).to.equal(ROWS);
    expect(batchesSeen[0]).to.equal(Number(atKill.rows_done) + 500);
    const bad = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM items WHERE name IS DISTINCT FROM title`);
    expect(bad.rows[0]!.n).to.equal(0);
  });
});

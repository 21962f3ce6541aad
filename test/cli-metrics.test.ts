import { expect } from 'chai';
import { createServer } from 'node:net';
import type { Knex } from 'knex';
import { spawnBin as run } from './cli-support.js';
import { freshDatabase, knexFor } from './support/pg.js';
import { renameProject } from './support/project.js';

const ROWS = 20_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('`umzug --metrics-port`: Prometheus scrapes a running command', function () {
  this.timeout(120_000);
  let url: string;
  let knex: Knex;
  let dir: string;
  before(async () => {
    url = await freshDatabase('cli_metrics');
    knex = knexFor(url);
    await knex.raw(`CREATE TABLE books (id int PRIMARY KEY, name text)`);
    await knex.raw(`INSERT INTO books SELECT g, 'b' || g FROM generate_series(1, ${ROWS}) g`);
    dir = renameProject(
      'cli-metrics',
      { file: '001.books-title.ts', table: 'books', from: 'name', to: 'title' },
      `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 8 } },
  backfill: { batchSize: 200, adaptive: false, pause: '15ms', canary: false }, monitor: { canary: false, sampleEvery: '200ms' } };
`,
    ).dir;
  });
  after(() => knex?.destroy());

  it('serves the backfill figures on /metrics while `up` runs, 404 elsewhere, and stops serving when the command ends', async () => {
    const up = run(dir, url, ['--metrics-port', '0', 'up']);
    let endpoint: string | undefined;
    for (let i = 0; i < 400 && !endpoint; i++) {
      endpoint = /Prometheus metrics on (http:\/\/\S+)/.exec(up.output())?.[1];
      if (!endpoint) await sleep(25);
    }
    expect(endpoint, up.output()).to.match(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);

    let rowsDone = 0;
    let body = '';
    for (let i = 0; i < 400 && rowsDone === 0; i++) {
      const res = await fetch(endpoint!);
      expect(res.status).to.equal(200);
      expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
      body = await res.text();
      const line = body.split('\n').find((l) => l.startsWith('umzug_zd_backfill_rows_done{'));
      rowsDone = line ? Number(line.split(' ').pop()) : 0;
      if (rowsDone === 0) await sleep(50);
    }
    expect(rowsDone, body).to.be.greaterThan(0).and.at.most(ROWS);
    expect(body).to.include('# TYPE umzug_zd_backfill_batch_duration_seconds histogram');
    expect((await fetch(endpoint!.replace(/\/metrics$/, '/other'))).status).to.equal(404);

    expect(await up.exited, up.output()).to.equal(0);
    const after = await fetch(endpoint!).then(
      () => 'answered',
      () => 'refused',
    );
    expect(after).to.equal('refused');
  });

  it('a port already in use stops the command before it runs anything (exit 2, the reason)', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const { port } = blocker.address() as { port: number };
    try {
      const down = run(dir, url, ['--metrics-port', String(port), 'down']);
      expect(await down.exited, down.output()).to.equal(2);
      expect(down.output()).to.match(new RegExp(`cannot serve metrics on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\); nothing was run`));
      const executed = await knex.raw<{ rows: { name: string }[] }>(`SELECT name FROM zero_downtime.migrations`);
      expect(executed.rows.map((r) => r.name)).to.deep.equal(['001.books-title.ts:expand']);
      const bad = run(dir, url, ['--metrics-port', 'many', 'status']);
      expect(await bad.exited).to.equal(2);
      expect(bad.output()).to.match(/--metrics-port must be a port number from 0 to 65535, not "many"; nothing was run/);
    } finally {
      blocker.close();
    }
  });
});

import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db } from '../lib/db/db.js';
import { detectPooling } from '../lib/db/pooling.js';
import { freshDatabase, knexFor } from './support/pg.js';
import { renameProject } from './support/project.js';
import { startWriter, type Writer } from './support/writers.js';
import { spawnBin as bin } from './cli-support.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PORT = process.env.PGBOUNCER_PORT ?? '6543';
const ROWS = 8_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The same database, reached through PgBouncer in transaction mode (scripts/pgbouncer.sh). */
const viaBouncer = (url: string) => url.replace(/:\d+\/([^/?]+)$/, `:${PORT}/$1`);

const CONFIG = `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 6 } }, contract: { after: 0 },
  lock: { leaseTimeout: '3s' },
  backfill: { batchSize: 250, adaptive: false, pause: '5ms', chunkRows: 2500, canary: false } };
`;

async function run(dir: string, url: string, args: string[]): Promise<{ code: number | null; out: string; stdout: string }> {
  const r = bin(dir, url, args);
  const code = await r.exited;
  return { code, out: r.output(), stdout: r.stdout() };
}

describe('behind PgBouncer in transaction mode', function () {
  this.timeout(300_000);
  const knexes: Knex[] = [];
  let dir: string;
  before(() => {
    execFileSync('bash', [path.join(ROOT, 'scripts/pgbouncer.sh')], { stdio: 'inherit' });
    dir = renameProject('pgbouncer', { file: '001.items-name.ts', table: 'items', from: 'title', to: 'name' }, CONFIG).dir;
  });
  after(() => Promise.all(knexes.map((k) => k.destroy())));

  const setUp = async (name: string) => {
    const direct = await freshDatabase(name);
    const knex = knexFor(direct);
    knexes.push(knex);
    await knex.raw(`CREATE TABLE items (id serial PRIMARY KEY, title text, email text)`);
    await knex.raw(`INSERT INTO items (title) SELECT 't' || g FROM generate_series(1, ${ROWS}) g`);
    return { direct, url: viaBouncer(direct), knex };
  };
  const backfillDone = async (knex: Knex) =>
    Number(((await knex.raw(`SELECT rows_done FROM zero_downtime.backfills`).catch(() => ({ rows: [] }))) as { rows: { rows_done: string }[] }).rows[0]?.rows_done ?? 0);

  it('is told apart from a direct connection', async () => {
    const direct = await freshDatabase('pgbouncer_detect');
    for (const [url, mode] of [
      [direct, 'session'],
      [viaBouncer(direct), 'transaction'],
    ] as const) {
      const k = knexFor(url);
      knexes.push(k);
      expect(await detectPooling(new Db(k)), url).to.equal(mode);
    }
  });

  it('up, status, flag set, up (contract), down, down of a rename under an old and a new application writing through it', async () => {
    const { url, knex } = await setUp('pgbouncer_rename');
    // built again on the new column with CREATE INDEX CONCURRENTLY: a statement outside a transaction, through the pooler
    await knex.raw(`CREATE INDEX items_title_idx ON items (title)`);
    const maxId = () => ROWS;
    const writers: Writer[] = [await startWriter(url, { table: 'items', column: 'title', maxId, label: 'old-app' })];
    let advisory = 0;
    let sessionPids = 0;
    const watch = setInterval(() => {
      void knex.raw(`SELECT (SELECT count(*)::int FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND d.datname = current_database()) AS a,
                            (SELECT count(*)::int FROM zero_downtime.leases WHERE session_pid IS NOT NULL) AS s`).then(
        (r: { rows: { a: number; s: number }[] }) => {
          advisory += r.rows[0]!.a;
          sessionPids += r.rows[0]!.s;
        },
        () => undefined,
      );
    }, 50);
    try {
      const up = await run(dir, url, ['up']);
      expect(up.code, up.out).to.equal(0);
      expect(up.out).to.match(/migrated.*001\.items-name\.ts:expand/s);
      writers.push(await startWriter(url, { table: 'items', column: 'name', maxId, label: 'new-app' }));
      const status = await run(dir, url, ['status', '--json']);
      expect(status.code, status.out).to.equal(0);
      expect(JSON.stringify(JSON.parse(status.stdout))).to.include('001.items-name.ts');
      const flag = await run(dir, url, ['flag', 'set', 'items-name', '50']);
      expect(flag.code, flag.out).to.equal(0);
      await sleep(500);
      await writers.shift()!.stop(); // the old version is retired before the contract
      const contract = await run(dir, url, ['up']);
      expect(contract.code, contract.out).to.equal(0);
      expect(contract.out).to.match(/migrated.*001\.items-name\.ts:contract/s);
      const undoContract = await run(dir, url, ['down']);
      expect(undoContract.code, undoContract.out).to.equal(0);
      await writers.shift()!.stop(); // and the new one before its column goes
      const undoExpand = await run(dir, url, ['down']);
      expect(undoExpand.code, undoExpand.out).to.equal(0);
    } finally {
      clearInterval(watch);
      await Promise.all(writers.map((w) => w.stop()));
    }
    expect(advisory, 'no session advisory lock is taken through a transaction pooler').to.equal(0);
    expect(sessionPids, 'the leases live on heartbeats there').to.equal(0);
    const indexes = (await knex.raw(`SELECT array_agg(indexdef ORDER BY indexname) AS d FROM pg_indexes WHERE tablename = 'items'`)).rows[0].d;
    expect(indexes).to.deep.equal(['CREATE UNIQUE INDEX items_pkey ON public.items USING btree (id)', 'CREATE INDEX items_title_idx ON public.items USING btree (title)']);
    const cols = (await knex.raw(`SELECT array_agg(column_name::text ORDER BY column_name) AS c FROM information_schema.columns WHERE table_name = 'items'`)).rows[0].c;
    expect(cols).to.deep.equal(['email', 'id', 'title']);
    const nulls = (await knex.raw(`SELECT count(*)::int AS n FROM items WHERE title IS NULL`)).rows[0].n;
    expect(nulls, 'every value the new version wrote came back into title').to.equal(0);
  });

  it('two `up` at once: one migrates, the other waits and finds nothing pending', async () => {
    const { url, knex } = await setUp('pgbouncer_two_up');
    const [a, b] = await Promise.all([run(dir, url, ['up']), run(dir, url, ['up'])]);
    expect([a.code, b.code], a.out + b.out).to.deep.equal([0, 0]);
    // The one that waited finds the expand done (in an earlier run, for it) and, with contract.after 0, contracts.
    const expands = [a.out, b.out].map((o) => (o.match(/event: 'migrated',\s*name: '001\.items-name\.ts:expand'/g) ?? []).length).sort();
    expect(expands, a.out + b.out).to.deep.equal([0, 1]);
    expect(await backfillDone(knex)).to.equal(ROWS);
  });

  it('a run frozen past the lease timeout loses the lock to the next one, and fails when it wakes, committing nothing', async () => {
    const { url, knex } = await setUp('pgbouncer_frozen');
    const a = bin(dir, url, ['up']);
    for (let i = 0; i < 600 && (await backfillDone(knex)) < 2500; i++) await sleep(25);
    a.child.kill('SIGSTOP');
    const frozenAt = await backfillDone(knex);
    expect(frozenAt).to.be.within(1, ROWS - 1);
    const b = await run(dir, url, ['up']);
    expect(b.code, b.out).to.equal(0);
    expect(b.out).to.match(/migrated.*001\.items-name\.ts:expand/s);
    a.child.kill('SIGCONT');
    expect(await a.exited, a.output()).to.not.equal(0);
    expect(/lost the migration lock \(/.test(a.output()), a.output()).to.equal(true);
    const bf = (await knex.raw(`SELECT rows_done::int AS n, done FROM zero_downtime.backfills`)).rows[0];
    expect(bf, 'every row counted once').to.deep.equal({ n: ROWS, done: true });
    const logged = (await knex.raw(`SELECT name FROM zero_downtime.migrations`)).rows.map((r: { name: string }) => r.name);
    expect(logged).to.deep.equal(['001.items-name.ts:expand']);
  });

  it('`backfill --workers 2` finishes what a killed `up` left, once its dead worker lease times out', async () => {
    const { url, knex } = await setUp('pgbouncer_workers');
    const up = bin(dir, url, ['up']);
    for (let i = 0; i < 600 && (await backfillDone(knex)) < 3500; i++) await sleep(25);
    up.child.kill('SIGKILL');
    await up.exited;
    const held = (await knex.raw(`SELECT count(*)::int AS n FROM zero_downtime.backfill_chunks WHERE NOT done AND owner IS NOT NULL`)).rows[0].n;
    expect(held, 'the killed run still owns a chunk').to.equal(1);
    const started = performance.now();
    const workers = await run(dir, url, ['backfill', '--workers', '2']);
    expect(workers.code, workers.out).to.equal(0);
    // The dead worker's chunk is free after the config's lock.leaseTimeout (3 s), not the 15 s default.
    expect(performance.now() - started, 'the dead worker lease timed out after lock.leaseTimeout').to.be.below(12_000);
    const bf = (await knex.raw(`SELECT rows_done::int AS n, done FROM zero_downtime.backfills`)).rows[0];
    expect(bf).to.deep.equal({ n: ROWS, done: true });
    const chunks = (await knex.raw(`SELECT sum(rows_done)::int AS n, count(*) FILTER (WHERE NOT done)::int AS open FROM zero_downtime.backfill_chunks`)).rows[0];
    expect(chunks).to.deep.equal({ n: ROWS, open: 0 });
    const wrong = (await knex.raw(`SELECT count(*)::int AS n FROM items WHERE name IS DISTINCT FROM title`)).rows[0].n;
    expect(wrong).to.equal(0);
  });
});

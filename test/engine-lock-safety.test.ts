import { expect } from 'chai';
import type { Knex } from 'knex';
import type pg from 'pg';
import { StepFailedError, zeroDowntime } from '../lib/index.js';
import { freshDatabase, knexFor, pgClient, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';

describe('lock-safe DDL facing a transaction that holds a lock on the table', function () {
  let url: string;
  let knex: Knex;
  let holder: pg.Client;
  let prober: pg.Client;

  beforeEach(async () => {
    url = await freshDatabase('engine_lock_safety');
    knex = knexFor(url);
    await knex.raw(`CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL)`);
    await knex.raw(`INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 2000) g`);
    holder = await pgClient(url, 'long-reporting-job');
    prober = await pgClient(url, 'app');
  });
  afterEach(async () => {
    await holder?.end().catch(() => undefined);
    await prober?.end().catch(() => undefined);
    await knex?.destroy();
  });

  const project = () => {
    const p = tempProject('lock');
    p.write(
      '001.orders-state.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'orders', from: 'status', to: 'state' })] });
`,
    );
    return p;
  };

  /** Reads the table every 10 ms as the application would, recording the slowest read. */
  const probe = () => {
    let running = true;
    let worst = 0;
    let reads = 0;
    const loop = (async () => {
      while (running) {
        const t0 = performance.now();
        await prober.query('SELECT status FROM orders WHERE id = 1');
        worst = Math.max(worst, performance.now() - t0);
        reads++;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    return {
      async stop() {
        running = false;
        await loop;
        return { worst, reads };
      },
    };
  };

  it('never makes other queries wait longer than lock_timeout, retries, and succeeds once the holder finishes', async () => {
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM orders'); // ACCESS SHARE until commit: blocks ALTER TABLE
    const umzug = zeroDowntime({ knex, cwd: project().dir, lock: { timeout: '200ms', maxAttempts: 40 }, logger: silentLogger });
    const retries: number[] = [];
    umzug.engine.subscribe((e) => {
      if (e.type === 'lock-retry') retries.push(e.retry.attempt);
    });
    const p = probe();
    const up = umzug.up();
    await new Promise((r) => setTimeout(r, 1500));
    await holder.query('COMMIT');
    const applied = await up;
    const { worst, reads } = await p.stop();
    expect(applied.map((m) => m.name)).to.deep.equal(['001.orders-state.ts:expand']);
    expect(retries.length).to.be.greaterThan(0);
    expect(reads).to.be.greaterThan(20);
    // A queued ALTER blocks readers behind it, but only for as long as it waits: lock_timeout (200 ms) plus slack.
    expect(worst).to.be.lessThan(200 + 250);
  });

  it('after the last attempt fails with a clear error naming the holder, and the state table tells what ran', async () => {
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM orders');
    const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const umzug = zeroDowntime({ knex, cwd: project().dir, lock: { timeout: '100ms', maxAttempts: 3 }, logger: silentLogger });
    let error: unknown;
    try {
      await umzug.up();
    } catch (e) {
      error = e;
    }
    const cause = (error as { cause?: unknown }).cause;
    expect(cause).to.be.instanceOf(StepFailedError);
    const message = (cause as Error).message;
    expect(message).to.match(/lock_timeout 100 ms on all 3 attempts/);
    expect(message).to.include(`pid ${holderPid}`);
    expect(message).to.match(/rolled back/);
    await holder.query('ROLLBACK');

    const state = await knex.raw<{ rows: { summary: string; expand_finished_at: Date | null }[] }>(
      `SELECT summary, expand_finished_at FROM zero_downtime.changes`,
    );
    expect(state.rows).to.have.length(1);
    expect(state.rows[0]!.expand_finished_at).to.equal(null);
    const steps = await knex.raw<{ rows: unknown[] }>(`SELECT * FROM zero_downtime.steps`);
    expect(steps.rows).to.deep.equal([]);
    const executed = await knex.raw<{ rows: unknown[] }>(`SELECT * FROM zero_downtime.migrations`);
    expect(executed.rows).to.deep.equal([]);
    const cols = await knex.raw<{ rows: { column_name: string }[] }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'`);
    expect(cols.rows.map((r) => r.column_name)).to.have.members(['id', 'status']);

    // Once the holder is gone, the same command resumes and completes.
    await umzug.up();
    const after = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM orders WHERE state IS DISTINCT FROM status`);
    expect(after.rows[0]!.n).to.equal(0);
  });
});

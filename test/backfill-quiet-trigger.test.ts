import { expect } from 'chai';
import type { Knex } from 'knex';
import { zeroDowntime } from '../lib/index.js';
import { freshDatabase, knexFor, pgClient, silentLogger, testDatabaseName } from './support/pg.js';
import { startLoop } from './support/column-writers.js';
import { tempProject } from './support/project.js';

const ROWS = 6_000;
const BATCH = 500;

/**
 * The backfill's own UPDATE computes what the sync trigger would, so the trigger is skipped for its rows (and the
 * try function that records unconvertible rows runs only for a batch that has one). Counted by PostgreSQL itself:
 * track_functions = 'pl' for the database, read from pg_stat_user_functions once every session has ended.
 */
describe('the backfill skips the sync trigger for its own rows, and the guard for batches that need none', function () {
  let url: string;
  let knex: Knex;
  before(async () => {
    url = await freshDatabase('quiet_trigger');
    const admin = await pgClient(url);
    await admin.query(`ALTER DATABASE ${testDatabaseName('quiet_trigger')} SET track_functions = 'pl'`);
    await admin.end();
    knex = knexFor(url);
  });
  after(() => knex?.destroy());

  /** Calls per function whose name starts with `prefix`, after every other session of the database has ended. */
  async function calls(prefix: string): Promise<number> {
    await knex.destroy();
    const c = await pgClient(url);
    try {
      // A backend sends its function counts when it exits; wait until none of the migrator's is left.
      for (let i = 0; i < 100; i++) {
        const r = await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
        if (r.rows[0]!.n === 0) break;
        await new Promise((res) => setTimeout(res, 50));
      }
      await c.query('SELECT pg_stat_clear_snapshot()');
      const r = await c.query<{ n: string | null }>(`SELECT sum(calls)::text AS n FROM pg_stat_user_functions WHERE starts_with(funcname, $1)`, [prefix]);
      return Number(r.rows[0]!.n ?? 0);
    } finally {
      await c.end();
      knex = knexFor(url);
    }
  }

  it('deriveColumn: the trigger fires for the application writes only, the try function never (no row fails)', async () => {
    await knex.raw(`CREATE TABLE people (id bigint PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL)`);
    await knex.raw(`INSERT INTO people SELECT g, 'f' || g, 'l' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE people');
    const project = tempProject('quiet-derive');
    project.write(
      '2026.12.07T10.00.00.full-name.ts',
      `import { defineMigration, deriveColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [deriveColumn({ table: 'people', column: { name: 'full_name', type: 'text' }, from: ['first_name', 'last_name'], up: "first_name || ' ' || last_name" })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 99 }, backfill: { batchSize: BATCH, adaptive: false, canary: false }, logger: silentLogger });
    const writer = await startLoop(url, 'app', async (c, i) => {
      await c.query(`UPDATE people SET first_name = $1 WHERE id = $2`, [`w${i}`, 1 + ((i * 7919) % ROWS)]);
    });
    try {
      await umzug.up();
    } finally {
      await writer.stop();
    }
    expect(writer.errors).to.deep.equal([]);
    const wrong = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM people WHERE full_name IS DISTINCT FROM first_name || ' ' || last_name`);
    expect(wrong.rows[0]!.n).to.equal(0);
    const writes = writer.ops();
    expect(await calls('zd_try_'), 'try function calls').to.equal(0);
    const triggerCalls = await calls('zd_derive_');
    // Every application write fires it (the loop may have written a few after the expand); none of the backfill's 6 000.
    expect(triggerCalls, `trigger calls for ${writes} application writes`).to.be.at.least(Math.min(writes, 1)).and.at.most(writes);
    expect(triggerCalls).to.be.below(ROWS);
  });

  it('changeColumnType in record mode: a row written unconvertible mid-backfill sends its batch alone to the guarded form, and is recorded', async () => {
    await knex.raw(`CREATE TABLE tickets (id bigint PRIMARY KEY, code text NOT NULL)`);
    await knex.raw(`INSERT INTO tickets SELECT g, g::text FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE tickets');
    const project = tempProject('quiet-type');
    project.write(
      '2026.12.07T11.00.00.code-int.ts',
      `import { defineMigration, changeColumnType } from 'umzug-zero-downtime';
export default defineMigration({ changes: [changeColumnType({ table: 'tickets', column: 'code', type: 'integer' })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 99 }, backfill: { batchSize: BATCH, adaptive: false, canary: false }, logger: silentLogger });
    // The old application writes a value `using` cannot convert into the last row as soon as the sync trigger is there,
    // before the backfill reaches it.
    let wrote = false;
    const writer = await startLoop(url, 'old-app', async (c) => {
      if (wrote) return;
      const r = await c.query(`SELECT 1 FROM pg_trigger WHERE tgrelid = 'tickets'::regclass AND NOT tgisinternal`);
      if (!r.rowCount) return;
      await c.query(`UPDATE tickets SET code = 'x-1' WHERE id = $1`, [ROWS]);
      wrote = true;
    });
    // The first batch waits for that write, so it lands ahead of the backfill.
    umzug.engine.addBatchGuard(async () => {
      for (let waited = 0; !wrote && waited < 10_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    });
    let failed: Error | null = null;
    try {
      await umzug.up().catch((e: Error) => (failed = e));
    } finally {
      await writer.stop();
    }
    expect(writer.errors).to.deep.equal([]);
    expect(wrote).to.equal(true);
    // Verify reports the recorded row and the expand stops there, to be fixed by hand.
    expect(String(failed)).to.match(/conversion|could not|mismatch/i);
    const recorded = await knex.raw<{ rows: { key: string }[] }>(`SELECT row_key::text AS key FROM zero_downtime.conversion_errors WHERE table_name = 'tickets'`);
    expect(recorded.rows.map((r) => r.key)).to.deep.equal([`["${ROWS}"]`]);
    const wrong = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM tickets WHERE id <> ${ROWS} AND code__new IS DISTINCT FROM code::integer`);
    expect(wrong.rows[0]!.n).to.equal(0);
    const tries = await calls('zd_try_');
    // The one batch holding the bad row ran the guarded form (its rows still NULL, at most a batch); the others did not.
    expect(tries, 'try function calls').to.be.at.least(1).and.at.most(BATCH);
    expect(await calls('zd_sync_'), 'trigger calls').to.be.at.most(5);
  });
});

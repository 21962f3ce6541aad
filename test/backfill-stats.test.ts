import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db } from '../lib/db/db.js';
import { StateStore } from '../lib/engine/state.js';
import { DEFAULT_LOCK_SAFETY } from '../lib/engine/executor.js';
import { runKeysetBackfill, DEFAULT_BACKFILL } from '../lib/backfill/keyset.js';
import { freshDatabase, knexFor } from './support/pg.js';

const ROWS = 30_000;

describe('backfill of a table whose statistics lag behind it (just filled, never analyzed)', function () {
  this.timeout(60_000);
  let knex: Knex;
  let db: Db;
  before(async () => {
    knex = knexFor(await freshDatabase('backfill_stats'));
    db = new Db(knex);
  });
  after(() => knex?.destroy());

  let n = 0;
  const fill = async (t: string) => {
    // Autovacuum off for the table, so only the backfill can analyze it during the test.
    await knex.raw(`CREATE TABLE ?? (id bigint PRIMARY KEY, a text, c text) WITH (autovacuum_enabled = false)`, [t]);
    await knex.raw(`INSERT INTO ?? SELECT g, 'a' || g, NULL FROM generate_series(1, ${ROWS}) g`, [t]);
    // A backend reports its counters up to a second after its statements: wait for the insert to show.
    for (let i = 0; i < 100; i++) {
      const r = await knex.raw(`SELECT pg_stat_clear_snapshot(), n_mod_since_analyze::int AS n FROM pg_stat_user_tables WHERE relid = ?::regclass`, [`"${t.replace(/"/g, '""')}"`]);
      if (r.rows[0]?.n >= ROWS) return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`the insert into ${t} never showed in pg_stat_user_tables`);
  };
  const backfill = (t: string) =>
    runKeysetBackfill({
      db,
      state: new StateStore(db, 'zero_downtime'),
      key: { migration: `m${n++}`, changeIndex: 0, phase: 'expand' },
      spec: { table: { schema: 'public', name: t }, set: [{ column: 'c', expression: `a || '!'` }] },
      keys: [{ name: 'id', type: 'bigint' }],
      totalEstimate: 0,
      options: { ...DEFAULT_BACKFILL, batchSize: 2000, canary: false },
      lock: { ...DEFAULT_LOCK_SAFETY, lockTimeoutMs: 300 },
    });
  const analyzed = async (t: string) =>
    (await knex.raw(`SELECT last_analyze IS NOT NULL AS yes, (SELECT reltuples FROM pg_class WHERE oid = relid)::float8 AS reltuples FROM pg_stat_user_tables WHERE relid = ?::regclass`, [`"${t.replace(/"/g, '""')}"`])).rows[0] as { yes: boolean; reltuples: number };

  it('analyzes it first, so the planner finds batch ends in the key index instead of sorting whole chunks', async () => {
    await fill('fresh; drop table x');
    expect((await analyzed('fresh; drop table x')).yes).to.equal(false);
    const p = await backfill('fresh; drop table x');
    expect(p.done).to.equal(true);
    const s = await analyzed('fresh; drop table x');
    expect(s.yes).to.equal(true);
    expect(s.reltuples).to.be.within(ROWS * 0.9, ROWS * 1.1);
  });

  it('goes on with the old statistics when another session holds the lock ANALYZE needs past lock_timeout', async () => {
    await fill('held');
    const holder = await knex.client.acquireConnection();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE held IN SHARE UPDATE EXCLUSIVE MODE');
      const p = await backfill('held');
      expect(p.done).to.equal(true);
      expect(p.rowsUpdated).to.equal(ROWS);
      expect((await analyzed('held')).yes).to.equal(false);
    } finally {
      await holder.query('ROLLBACK');
      await knex.client.releaseConnection(holder);
    }
  });

  it('leaves a table with current statistics alone', async () => {
    await fill('current');
    await knex.raw('ANALYZE current');
    const before = (await knex.raw(`SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'current'`)).rows[0].last_analyze;
    await backfill('current');
    const after = (await knex.raw(`SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'current'`)).rows[0].last_analyze;
    expect(after).to.deep.equal(before);
  });
});

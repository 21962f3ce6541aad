import { expect } from 'chai';
import pg from 'pg';
import type { Db } from '../lib/index.js';
import { verifyConsistency } from '../lib/verify/consistency.js';
import { useTestDatabase } from './support/pg.js';

const ROWS = 20_000;
const TAMPERED = [1, 2, 777, 10_001, 19_999, 20_000, 12_345];
const PARTED_KEYS = [
  { name: 'id', type: 'bigint' },
  { name: 'region', type: 'text' },
];

/** The statements verify ran, by watching the Db it is given. */
function recording(db: Db): { db: Db; texts: string[] } {
  const texts: string[] = [];
  const query = db.query.bind(db);
  const spy = Object.create(db) as Db;
  spy.query = ((text: string, values?: never) => {
    texts.push(text);
    return query(text, values);
  }) as Db['query'];
  return { db: spy, texts };
}

describe('verify: heap pages on a plain table and on each leaf of a partitioned one, keys where a leaf is foreign; each finds every row that disagrees', function () {
  const t = useTestDatabase('verify_pages', async ({ knex }) => {
    await knex.raw(`CREATE TABLE plain (id bigint PRIMARY KEY, a int NOT NULL, b int)`);
    await knex.raw(`CREATE TABLE parted (id bigint, region text, a int NOT NULL, b int, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`);
    await knex.raw(`CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu')`);
    await knex.raw(`CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us')`);
    for (const table of ['plain', 'parted']) {
      const cols = table === 'plain' ? 'id, a, b' : 'id, region, a, b';
      const region = table === 'plain' ? '' : `CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, `;
      await knex.raw(`INSERT INTO ${table} (${cols}) SELECT g, ${region}g, g * 2 FROM generate_series(1, ${ROWS}) g`);
      // Every row rewritten once, as a backfill leaves a table: half its pages hold dead versions.
      await knex.raw(`UPDATE ${table} SET b = a * 2`);
      await knex.raw(`UPDATE ${table} SET b = -1 WHERE id = ANY(?)`, [TAMPERED]);
      await knex.raw(`ANALYZE ${table}`);
    }
  });

  it('a plain table: every row read once by page ranges (no key-ordered chunk), the 7 tampered rows found', async () => {
    const { db, texts } = recording(t.db);
    const chunks: number[] = [];
    const r = await verifyConsistency(db, { table: { schema: 'public', name: 'plain' }, equal: [{ column: 'b', expression: 'a * 2' }] }, [{ name: 'id', type: 'bigint' }], 1000, (n) => chunks.push(n));
    expect(r.rowsChecked).to.equal(ROWS);
    expect(r.mismatches).to.equal(TAMPERED.length);
    // Samples are capped per range (5), and the 7 rewritten rows may all sit on the table's last page: all tampered,
    // at least 5 of them.
    const sampled = r.sampleKeys.map((k) => Number(k[0]));
    expect(sampled.length).to.be.within(5, 7);
    expect(TAMPERED).to.include.members(sampled);
    expect(texts.some((s) => s.includes('ctid >='))).to.equal(true);
    expect(texts.some((s) => s.includes('ORDER BY'))).to.equal(false);
    expect(chunks.length, 'chunks of about 1000 rows').to.be.within(15, 60);
  });

  it('a partitioned table: each leaf read by its own page ranges (a ctid is each partition’s own), the same 7 rows found', async () => {
    const { db, texts } = recording(t.db);
    const r = await verifyConsistency(db, { table: { schema: 'public', name: 'parted' }, equal: [{ column: 'b', expression: 'a * 2' }] }, PARTED_KEYS, 1000);
    expect(r.rowsChecked).to.equal(ROWS);
    expect(r.mismatches).to.equal(TAMPERED.length);
    const reads = texts.filter((s) => s.includes('ctid >='));
    expect(reads.some((s) => s.includes('"parted_eu"'))).to.equal(true);
    expect(reads.some((s) => s.includes('"parted_us"'))).to.equal(true);
    expect(texts.some((s) => s.includes('ORDER BY'))).to.equal(false);
  });

  it('a partitioned table, expressions that name the row by the table (as a change’s guard does): each leaf read, every row checked', async () => {
    const { db, texts } = recording(t.db);
    const r = await verifyConsistency(db, { table: { schema: 'public', name: 'parted' }, equal: [{ column: 'b', expression: '"public"."parted"."a" * 2' }] }, PARTED_KEYS, 1000);
    expect(r.rowsChecked).to.equal(ROWS);
    expect(r.mismatches).to.equal(TAMPERED.length);
    expect(texts.filter((s) => s.includes('ctid >=')).length).to.be.greaterThan(2);
  });

  it('a partitioned table with a foreign partition (no heap of ours there): walked by key, every row checked', async () => {
    await t.knex.raw(`CREATE EXTENSION IF NOT EXISTS postgres_fdw`);
    const u = new URL(t.url);
    const lit = pg.escapeLiteral;
    await t.knex.raw(`CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host ${lit(u.hostname)}, port ${lit(u.port || '5432')}, dbname ${lit(u.pathname.slice(1))})`);
    await t.knex.raw(`CREATE USER MAPPING FOR CURRENT_USER SERVER loopback OPTIONS (user ${lit(u.username || 'postgres')})`);
    await t.knex.raw(`CREATE TABLE mixed (id bigint NOT NULL, region text NOT NULL, a int NOT NULL, b int) PARTITION BY LIST (region)`);
    await t.knex.raw(`CREATE TABLE mixed_eu PARTITION OF mixed FOR VALUES IN ('eu')`);
    await t.knex.raw(`CREATE TABLE remote_us (id bigint NOT NULL, region text NOT NULL, a int NOT NULL, b int)`);
    await t.knex.raw(`CREATE FOREIGN TABLE mixed_us PARTITION OF mixed FOR VALUES IN ('us') SERVER loopback OPTIONS (table_name 'remote_us')`);
    await t.knex.raw(`INSERT INTO mixed_eu SELECT g, 'eu', g, g * 2 FROM generate_series(1, 300) g`);
    await t.knex.raw(`INSERT INTO remote_us SELECT g, 'us', g, CASE WHEN g = 7 THEN -1 ELSE g * 2 END FROM generate_series(1, 200) g`);
    const { db, texts } = recording(t.db);
    const r = await verifyConsistency(db, { table: { schema: 'public', name: 'mixed' }, equal: [{ column: 'b', expression: 'a * 2' }] }, PARTED_KEYS, 100);
    expect(r.rowsChecked).to.equal(500);
    expect(r.mismatches).to.equal(1);
    expect(texts.some((s) => s.includes('ctid >='))).to.equal(false);
  });
});

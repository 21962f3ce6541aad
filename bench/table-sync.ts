// splitTable sync benchmark: prints ratios measured side by side in one run (not part of `npm test`).
//   npx tsx bench/table-sync.ts [--rows 200k] [--ops 5000]
// 1. single-row UPDATE cost of the table being split, with the two-way sync triggers ÷ without;
// 2. copy backfill (keyset batches of 5 000, INSERT … SELECT … FOR SHARE … ON CONFLICT DO NOTHING) rows/s ÷ one
//    INSERT … SELECT of the whole table into an identical empty table (the fastest possible copy, which holds its
//    locks and snapshot for the whole run).
import { parseArgs } from 'node:util';
import type pg from 'pg';
import type { KeyColumn } from '../lib/postgres/batch-sql.js';
import { copyRangeSql, splitSyncTriggers, type SplitSync } from '../lib/postgres/table-sync.js';
import { client, dropBenchDatabase, fmt, freshBenchDatabase, parseSize } from './support.js';

const DB = 'zd_bench_table_sync';

async function updates(c: pg.Client, rows: number, ops: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < ops; i++) await c.query(`UPDATE people SET bio = $1 WHERE id = $2`, [`b${i}`, 1 + Math.floor(Math.random() * rows)]);
  return ops / ((performance.now() - t0) / 1000);
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { rows: { type: 'string', default: '200k' }, ops: { type: 'string', default: '5000' } } });
  const rows = parseSize(values.rows!);
  const ops = Number(values.ops);
  const url = await freshBenchDatabase(DB);
  const c = await client(url);
  try {
    await c.query(`CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, bio text, avatar text)`);
    await c.query(`INSERT INTO people SELECT g, 'p' || g, 'bio ' || g, 'a' || (g % 100) FROM generate_series(1, $1::int) g`, [rows]);
    await c.query(`CREATE TABLE plain_copy (id bigint PRIMARY KEY, bio text, avatar text)`);
    await c.query('VACUUM ANALYZE');
    await updates(c, rows, Math.min(ops, 1000)); // warm up

    const from = { schema: 'public', name: 'people' };
    const to = { schema: 'public', name: 'profiles' };
    const sync: SplitSync = {
      from,
      to,
      key: ['id'],
      columns: ['bio', 'avatar'],
      flag: 'zd.bench_split',
      forward: { fn: 'bench_fwd', trigger: 'bench_fwd' },
      back: { fn: 'bench_back', trigger: 'bench_back' },
    };
    await c.query(`CREATE TABLE profiles (id bigint PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE ON UPDATE CASCADE, bio text, avatar text)`);
    for (const s of splitSyncTriggers(sync)) await c.query(s.text);

    const keys: KeyColumn[] = [{ name: 'id', type: 'bigint' }];
    const copy = { into: to, key: ['id'], columns: ['bio', 'avatar'].map((x) => ({ column: x, expression: `_zd_s."${x}"` })), mode: 'insert' as const, quietFlag: sync.flag };
    const batch = 5000;
    const t0 = performance.now();
    for (let lo = 0; lo < rows; lo += batch) {
      await c.query('BEGIN');
      await c.query('SELECT set_config($1, $2, true)', [sync.flag, 'on']);
      await c.query(copyRangeSql(from, keys, copy, true, true), [String(lo), String(lo + batch)]);
      await c.query('COMMIT');
    }
    const copyRate = rows / ((performance.now() - t0) / 1000);
    const t1 = performance.now();
    await c.query(`INSERT INTO plain_copy SELECT id, bio, avatar FROM people`);
    const plainRate = rows / ((performance.now() - t1) / 1000);
    await c.query('VACUUM ANALYZE');
    await updates(c, rows, Math.min(ops, 1000));
    const mismatches = await c.query<{ n: string }>(`SELECT count(*) AS n FROM people p LEFT JOIN profiles t USING (id) WHERE ROW(p.bio, p.avatar) IS DISTINCT FROM ROW(t.bio, t.avatar)`);
    // Interleaved rounds, so drift in the shared machine's load hits both sides alike.
    let tWithout = 0;
    let tWith = 0;
    const rounds = 5;
    const per = Math.ceil(ops / rounds);
    for (let r = 0; r < rounds; r++) {
      await c.query('ALTER TABLE people DISABLE TRIGGER bench_fwd');
      tWithout += per / (await updates(c, rows, per));
      await c.query('ALTER TABLE people ENABLE TRIGGER bench_fwd');
      tWith += per / (await updates(c, rows, per));
    }
    const without = (per * rounds) / tWithout;
    const withSync = (per * rounds) / tWith;
    // The server-side cost per row, without the network round trip: one statement updating 20 000 rows.
    const bulk = Math.min(rows, 20_000);
    let bWithout = 0;
    let bWith = 0;
    for (let r = 0; r < 3; r++) {
      await c.query('ALTER TABLE people DISABLE TRIGGER bench_fwd');
      let t = performance.now();
      await c.query(`UPDATE people SET bio = bio || 'x' WHERE id <= $1`, [bulk]);
      bWithout += performance.now() - t;
      await c.query('ALTER TABLE people ENABLE TRIGGER bench_fwd');
      t = performance.now();
      await c.query(`UPDATE people SET bio = bio || 'y' WHERE id <= $1`, [bulk]);
      bWith += performance.now() - t;
    }

    console.log(`table-sync benchmark, ${rows} rows, ${ops} single-row updates each way`);
    console.log(`  single-row UPDATE: ${fmt(without, 0)} /s without triggers, ${fmt(withSync, 0)} /s with split sync → cost ratio ${fmt(without / withSync)}×`);
    console.log(`  ${bulk}-row UPDATE in one statement: ${fmt(bWithout / 3, 0)} ms without triggers, ${fmt(bWith / 3, 0)} ms with → per-row cost ratio ${fmt(bWith / bWithout)}×`);
    console.log(`  copy backfill: ${fmt(copyRate, 0)} rows/s in batches of ${batch}; one-statement INSERT … SELECT ${fmt(plainRate, 0)} rows/s → ratio ${fmt(copyRate / plainRate)}`);
    console.log(`  rows that disagree after the backfill and the first updates: ${mismatches.rows[0]!.n}`);
  } finally {
    await c.end();
    await dropBenchDatabase(DB);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main(process.argv.slice(2));

// MongoDB → PostgreSQL move benchmark: prints ratios measured side by side in one run (not part of `npm test`).
//   npx tsx bench/mongo.ts [--docs 200k] [--batch 1000] [--keep]
// Seeds N documents in MongoDB (FerretDB in this repository's setup), then measures on the same documents:
// 1. the raw driver cursor: find().sort({ _id: 1 }) streamed to the end, nothing done with the documents;
// 2. raw COPY FROM STDIN of the same rows, mapped beforehand (untimed) by the move's own mapper, into an identical
//    empty table: the fastest way into PostgreSQL;
// 3. our backfill (runMongoBackfill: cursor, mapping, ajv check, version-guarded upsert and progress row per batch).
// and prints backfill ÷ cursor and backfill ÷ COPY. Throughput only: no writers run meanwhile.
import { createReadStream, createWriteStream, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import * as bson from 'mongodb';
import { from as copyFrom } from 'pg-copy-streams';
import knexFactory from 'knex';
import { Db } from '../lib/db/db.js';
import { runMongoBackfill } from '../lib/mongo/backfill.js';
import { DocumentMapper } from '../lib/mongo/mapper.js';
import { allColumns, resolveMove, type MongoDocument } from '../lib/mongo/move.js';
import { PostgresSink } from '../lib/mongo/sink.js';
import { createTargetTable, mongoStateTables } from '../lib/mongo/sql.js';
import { VERSION_COLUMN } from '../lib/mongo/move.js';
import { client, dropBenchDatabase, fmt, freshBenchDatabase, parseSize, runIfMain } from './support.js';

const DB = 'zd_bench_mongo';
const MONGO_URL = process.env.BENCH_MONGO_URL ?? process.env.FERRETDB_URL ?? `mongodb://127.0.0.1:${process.env.FERRETDB_PORT ?? '27117'}/`;
const CITIES = ['Zürich', 'São Paulo', 'Łódź', '東京', 'Bern', 'tab\there', 'back\\slash'];

const move = resolveMove({
  collection: 'items',
  table: 'items',
  columns: [
    { name: 'name', type: 'text', required: true },
    { name: 'n', type: 'integer' },
    { name: 'big', type: 'bigint' },
    { name: 'ratio', type: 'double precision' },
    { name: 'at', type: 'timestamptz' },
    { name: 'active', type: 'boolean' },
    { name: 'tags', type: 'jsonb' },
    { name: 'city', type: 'text', from: 'profile.city' },
  ],
  unmapped: { column: 'extra' },
});

/** A document like an application's: strings, Int32, Int64 beyond 2^53, doubles, a Date, an array, a nested document. */
function doc(i: number): MongoDocument {
  return {
    _id: new bson.ObjectId(),
    name: `item ${i} ${CITIES[i % CITIES.length]}`,
    n: (i * 7919) % 2_000_000,
    big: 9_007_199_254_740_993n + BigInt(i),
    ratio: i / 7,
    at: new Date(1_600_000_000_000 + i * 1000),
    active: i % 2 === 0,
    tags: ['a', i % 100, { k: i % 3 }],
    profile: { city: CITIES[(i * 3) % CITIES.length], zip: String(10_000 + (i % 90_000)) },
  };
}

/** COPY text format: backslash, tab, newline and carriage return escaped; NULL as \N. */
function copyField(v: string | Buffer | null): string {
  if (v === null) return '\\N';
  const s = typeof v === 'string' ? v : `\\\\x${v.toString('hex')}`;
  return s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

async function seed(coll: bson.Collection<MongoDocument>, docs: number): Promise<number> {
  await coll.drop().catch(() => undefined);
  const t0 = performance.now();
  const slice = 5000;
  for (let lo = 0; lo < docs; lo += slice) {
    await coll.insertMany(Array.from({ length: Math.min(slice, docs - lo) }, (_x, j) => doc(lo + j)), { ordered: false });
  }
  return docs / ((performance.now() - t0) / 1000);
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { docs: { type: 'string', default: '200k' }, batch: { type: 'string', default: '1000' }, keep: { type: 'boolean' } } });
  const docs = parseSize(values.docs!);
  const batch = Number(values.batch);
  const mongo = new bson.MongoClient(MONGO_URL, { useBigInt64: true, serverSelectionTimeoutMS: 10_000 });
  await mongo.connect();
  const coll = mongo.db(DB).collection<MongoDocument>('items');
  const url = await freshBenchDatabase(DB);
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 4 } });
  const db = new Db(knex);
  const pg = await client(url);
  const file = path.join(os.tmpdir(), `zd-bench-mongo-${process.pid}.copy`);
  try {
    process.stderr.write(`seeding ${docs.toLocaleString('en')} documents in ${MONGO_URL}${DB}.items …\n`);
    const seedRate = await seed(coll, docs);

    // 1. raw cursor, _id order, the documents only counted
    let t0 = performance.now();
    let read = 0;
    for await (const _d of coll.find({}).sort({ _id: 1 }).batchSize(batch)) read++;
    const cursorRate = read / ((performance.now() - t0) / 1000);

    // 2. raw COPY of the same rows, mapped by the move's mapper beforehand (untimed) into a file
    const cols = allColumns(move);
    const mapper = new DocumentMapper(move);
    const out = createWriteStream(file);
    t0 = performance.now();
    for await (const d of coll.find({}).sort({ _id: 1 }).batchSize(batch)) {
      const r = mapper.map(d);
      if (!r.ok) throw new Error(`bench document does not map: ${r.reason}`);
      const line = [...r.row.cells.map((c) => copyField(c.param)), r.row.version.toString()].join('\t') + '\n';
      if (!out.write(line)) await new Promise<void>((res) => out.once('drain', () => res()));
    }
    await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
    const mapRate = docs / ((performance.now() - t0) / 1000);
    const copyTable = { schema: 'public', name: 'items_copy' };
    await pg.query(createTargetTable(copyTable, cols, move.key.column, move.key.type).text);
    t0 = performance.now();
    const names = [...cols.map((c) => c.name), VERSION_COLUMN].map((n) => `"${n}"`).join(', ');
    await pipeline(createReadStream(file), pg.query(copyFrom(`COPY public.items_copy (${names}) FROM STDIN`)));
    const copyRate = docs / ((performance.now() - t0) / 1000);
    const copied = Number((await pg.query<{ n: string }>(`SELECT count(*)::text AS n FROM public.items_copy`)).rows[0]!.n);

    // 3. our backfill into an identical empty table
    await pg.query('CREATE SCHEMA zero_downtime');
    for (const s of mongoStateTables('zero_downtime')) await pg.query(s.text);
    const table = { schema: 'public', name: 'items' };
    await pg.query(createTargetTable(table, cols, move.key.column, move.key.type).text);
    t0 = performance.now();
    const res = await runMongoBackfill({ db, stateSchema: 'zero_downtime', sink: new PostgresSink(move, table, 'zero_downtime', bson), collection: coll, bson, batchSize: batch });
    const backfillRate = res.read / ((performance.now() - t0) / 1000);
    const written = Number((await pg.query<{ n: string }>(`SELECT count(*)::text AS n FROM public.items`)).rows[0]!.n);
    if (read !== docs || copied !== docs || written !== docs || res.quarantined !== 0) {
      throw new Error(`counts disagree: seeded ${docs}, cursor ${read}, COPY ${copied}, backfill ${written} (${res.quarantined} quarantined)`);
    }

    const lines = [
      '',
      `documents: ${docs.toLocaleString('en')} (batch ${batch}); seeding ran at ${Math.round(seedRate)} docs/s`,
      `raw driver cursor read      ${String(Math.round(cursorRate)).padStart(9)} rows/s`,
      `cursor + mapping to a file  ${String(Math.round(mapRate)).padStart(9)} rows/s   (the COPY's input; for where the time goes)`,
      `raw COPY FROM STDIN         ${String(Math.round(copyRate)).padStart(9)} rows/s   (mapping done beforehand, untimed)`,
      `Mongo → PG backfill         ${String(Math.round(backfillRate)).padStart(9)} rows/s`,
      `backfill ÷ cursor = ${fmt(backfillRate / cursorRate)}   backfill ÷ COPY = ${fmt(backfillRate / copyRate)}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    rmSync(file, { force: true });
    await pg.end();
    await knex.destroy();
    if (!values.keep) {
      await coll.drop().catch(() => undefined);
      await dropBenchDatabase(DB);
    }
    await mongo.close();
  }
}

runIfMain(import.meta.url, main);

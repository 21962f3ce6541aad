// What the MongoDB side of a move costs the application and the operator, as ratios measured in one run (not part
// of `npm test`):
//   npx tsx bench/mongo-costs.ts [--sizes 10k,100k] [--writes 5] [--pairs 2] [--rows 1000] [--rebuild-max 100k]
// For each collection size N (seeded, then measured on the same collection):
// 1. our write ÷ a plain write, --pairs ABBA pairs of --writes writes each: a plain `updateOne` by _id against
//    MongoDualWriter.update, a plain `replaceOne` by _id against MongoDualWriter.replace, and after the write flip a
//    plain `updateOne` against ReverseDualWriter.update, on random documents; plus the commands each sends (driver
//    command monitoring) and how many of them make FerretDB read the whole collection (a filter other than exactly
//    `{ _id }`, a sort, a count);
// 2. the copy's start-up: runMongoBackfill from nothing to its first committed batch, ÷ a plain `find()`'s first batch;
// 3. reverse sync: the same --rows rows of a table synced into an empty collection and into one already holding N
//    documents (end ÷ start: what a small sync into a big collection pays), and a rebuild of N rows into an empty
//    collection, documents/s over its first and its last tenth (last ÷ first is 1 when the sync is flat with size;
//    up to --rebuild-max documents).
// The host's CPU steal (/proc/stat) is printed beside each size: read the ratios, not the seconds.
import os from 'node:os';
import { parseArgs } from 'node:util';
import * as bson from 'mongodb';
import knexFactory from 'knex';
import { Db } from '../lib/db/db.js';
import { runMongoBackfill } from '../lib/mongo/backfill.js';
import { MongoDualWriter } from '../lib/mongo/dual-writer.js';
import { allColumns, resolveMove, type MongoDocument } from '../lib/mongo/move.js';
import { ReverseDualWriter, reverseSync } from '../lib/mongo/reverse.js';
import { PostgresSink } from '../lib/mongo/sink.js';
import { createTargetTable, mongoStateTables } from '../lib/mongo/sql.js';
import { cpuTimes, dropBenchDatabase, fmt, freshBenchDatabase, parseSize, stolenSince, runIfMain } from './support.js';

const DB = 'zd_bench_mongo_costs';
const MONGO_URL = process.env.BENCH_MONGO_URL ?? process.env.FERRETDB_URL ?? `mongodb://127.0.0.1:${process.env.FERRETDB_PORT ?? '27117'}/`;

const move = resolveMove({
  collection: 'items',
  table: 'items',
  columns: [
    { name: 'name', type: 'text', required: true },
    { name: 'n', type: 'bigint' },
    { name: 'tags', type: 'jsonb' },
    { name: 'city', type: 'text', from: 'profile.city' },
  ],
  unmapped: { column: 'extra' },
});

const doc = (i: number): MongoDocument => ({
  _id: new bson.ObjectId(),
  name: `item ${i}`,
  n: BigInt(i) * 1_000_003n,
  tags: ['a', i % 100],
  profile: { city: ['Bern', 'Zürich', 'Łódź'][i % 3], zip: String(10_000 + (i % 90_000)) },
});

async function seed(coll: bson.Collection<MongoDocument>, n: number): Promise<void> {
  await coll.drop().catch(() => undefined);
  for (let lo = 0; lo < n; lo += 5000) await coll.insertMany(Array.from({ length: Math.min(5000, n - lo) }, (_x, j) => doc(lo + j)), { ordered: false });
}

/** A filter FerretDB hands to its storage as a condition: exactly `{ _id: value }`, the value no operator. */
function byIdOnly(f: unknown): boolean {
  if (!f || typeof f !== 'object') return false;
  const keys = Object.keys(f);
  if (keys.length !== 1 || keys[0] !== '_id') return false;
  const v = (f as { _id: unknown })._id;
  const plain = v !== null && typeof v === 'object' && !('_bsontype' in v) && !(v instanceof Date);
  return !(plain && Object.keys(v).some((k) => k.startsWith('$')));
}

/**
 * Commands sent to the collection's database while `f` runs, by name; `wide` counts those that read the whole
 * collection on FerretDB: a filter other than byIdOnly, a sort, a count.
 */
function commandLog(client: bson.MongoClient) {
  let on = false;
  const names = new Map<string, number>();
  let wide = 0;
  client.on('commandStarted', (e) => {
    if (!on || e.databaseName !== DB) return;
    names.set(e.commandName, (names.get(e.commandName) ?? 0) + 1);
    const c = e.command as Record<string, unknown>;
    const filters: unknown[] = [];
    if (e.commandName === 'find' || e.commandName === 'findAndModify') filters.push(c.filter ?? c.query ?? {});
    for (const u of (c.updates as { q: unknown }[] | undefined) ?? []) filters.push(u.q);
    for (const d of (c.deletes as { q: unknown }[] | undefined) ?? []) filters.push(d.q);
    if (c.sort !== undefined || e.commandName === 'count' || (e.commandName === 'aggregate' && JSON.stringify(c.pipeline).includes('$count'))) wide++;
    // a find without a filter streams in storage order: one pass, as the copy's own read
    for (const f of filters) if (!byIdOnly(f) && !(e.commandName === 'find' && Object.keys(f as object).length === 0)) wide++;
  });
  return {
    async during<T>(f: () => Promise<T>): Promise<T> {
      on = true;
      try {
        return await f();
      } finally {
        on = false;
      }
    },
    take(): { names: string; wide: number } {
      const out = { names: [...names].map(([k, v]) => `${k}×${v}`).join(' '), wide };
      names.clear();
      wide = 0;
      return out;
    },
  };
}

async function timeEach(ids: readonly unknown[], f: (id: unknown, i: number) => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  for (const [i, id] of ids.entries()) await f(id, i);
  return (performance.now() - t0) / ids.length;
}

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { sizes: { type: 'string', default: '10k,100k' }, writes: { type: 'string', default: '5' }, pairs: { type: 'string', default: '2' }, rows: { type: 'string', default: '1000' }, 'rebuild-max': { type: 'string', default: '100k' } } });
  const rebuildMax = parseSize(values['rebuild-max']!);
  const sizes = values.sizes!.split(',').map(parseSize);
  const writes = Number(values.writes);
  const pairs = Number(values.pairs);
  const rows = parseSize(values.rows!);
  const mongo = new bson.MongoClient(MONGO_URL, { useBigInt64: true, serverSelectionTimeoutMS: 10_000, monitorCommands: true });
  await mongo.connect();
  const log = commandLog(mongo);
  const mdb = mongo.db(DB);
  const coll = mdb.collection<MongoDocument>('items');
  const url = await freshBenchDatabase(DB);
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 4 } });
  const db = new Db(knex);
  const table = { schema: 'public', name: 'items' };
  const cols = allColumns(move);
  const out: string[] = [];
  try {
    await knex.raw('CREATE SCHEMA zero_downtime');
    for (const s of mongoStateTables('zero_downtime')) await knex.raw(s.text);
    for (const n of sizes) {
      process.stderr.write(`seeding ${n.toLocaleString('en')} documents in ${MONGO_URL}${DB}.items …\n`);
      await seed(coll, n);
      const cpu = cpuTimes();
      await knex.raw('DROP TABLE IF EXISTS items');
      await knex.raw(createTargetTable(table, cols, move.key.column, move.key.type).text);
      await knex.raw('DELETE FROM zero_downtime.mongo_backfill');

      // 2. copy start-up first, on an idle collection: from the call to the first committed batch
      let t0 = performance.now();
      for await (const _d of coll.find({}).batchSize(move.batchSize)) break;
      const plainFirst = performance.now() - t0;
      const ac = new AbortController();
      let firstBatch = NaN;
      t0 = performance.now();
      await runMongoBackfill({
        db,
        stateSchema: 'zero_downtime',
        sink: new PostgresSink(move, table, 'zero_downtime', bson),
        collection: coll,
        bson,
        signal: ac.signal,
        onProgress: (p) => {
          if (!Number.isFinite(firstBatch) && p.read > 0) firstBatch = performance.now() - t0;
          ac.abort();
        },
      }).catch((e: unknown) => {
        if (!ac.signal.aborted) throw e;
      });

      // 1. writes, ABBA, on random documents (their ids read beforehand, untimed)
      const all = (await coll.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
      const pick = () => Array.from({ length: writes }, () => all[Math.floor(Math.random() * all.length)]);
      const writer = new MongoDualWriter({ collection: coll, postgres: knex, move });
      await writer.update(all[0], { $set: { name: 'warm-up' } });
      const plainUpdate = (id: unknown, i: number) => coll.updateOne({ _id: id } as bson.Filter<MongoDocument>, { $set: { name: `plain ${i}` } });
      const dualUpdate = (id: unknown, i: number) => writer.update(id, { $set: { name: `dual ${i}` } });
      const plainReplace = (id: unknown, i: number) => coll.replaceOne({ _id: id } as bson.Filter<MongoDocument>, { ...doc(i), _id: id });
      const dualReplace = (id: unknown, i: number) => writer.replace(id, { ...doc(i), _id: id });
      // after the write flip: ReverseDualWriter.update (PostgreSQL first, then the document by _id) on rows the copy's
      // first batch wrote, against a plain updateOne of the same documents
      const copiedIds = (await knex.raw(`SELECT id FROM items WHERE _zd_deleted_at IS NULL LIMIT 500`)).rows.map((r: { id: string }) => r.id) as string[];
      const pickCopied = () => Array.from({ length: writes }, () => copiedIds[Math.floor(Math.random() * copiedIds.length)]!);
      const reverse = new ReverseDualWriter({ db, table, move, collection: coll, bson });
      const plainUpdateCopied = (id: unknown, i: number) => coll.updateOne({ _id: new bson.ObjectId(id as string) } as bson.Filter<MongoDocument>, { $set: { name: `plain ${i}` } });
      const reverseUpdate = (id: unknown, i: number) => reverse.update(id as string, { name: `reverse ${i}` });
      const times = { pu: [] as number[], du: [] as number[], pr: [] as number[], dr: [] as number[], pc: [] as number[], ru: [] as number[] };
      for (let pair = 0; pair < pairs; pair++) {
        for (const who of 'ABBA') {
          if (who === 'A') {
            times.pu.push(await timeEach(pick(), plainUpdate));
            times.pr.push(await timeEach(pick(), plainReplace));
            times.pc.push(await timeEach(pickCopied(), plainUpdateCopied));
          } else {
            times.du.push(await timeEach(pick(), dualUpdate));
            times.dr.push(await timeEach(pick(), dualReplace));
            times.ru.push(await timeEach(pickCopied(), reverseUpdate));
          }
        }
      }
      const one = all[Math.floor(all.length / 2)];
      await log.during(() => plainUpdate(one, 0));
      const cPlain = log.take();
      await log.during(() => dualUpdate(one, 0));
      const cUpdate = log.take();
      await log.during(() => dualReplace(one, 0));
      const cReplace = log.take();
      await log.during(() => reverseUpdate(copiedIds[0], 0));
      const cReverse = log.take();
      const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
      const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
      const line = (what: string, plain: number[], ours: number[]) => {
        const halves = ours.map((d, i) => d / plain[i]!);
        return `${what} plain ${fmt(mean(plain), 1)} ms, ours ${fmt(mean(ours), 1)} ms   ours ÷ plain = ${fmt(mean(ours) / mean(plain))}, median of halves ${fmt(median(halves))} (halves: ${halves.map((h) => fmt(h)).join(', ')})`;
      };

      // 3. reverse sync of the same rows into an empty collection, then into one holding the N documents
      await knex.raw('DROP TABLE IF EXISTS rev');
      const rev = { schema: 'public', name: 'rev' };
      await knex.raw(createTargetTable(rev, cols, move.key.column, move.key.type).text);
      await knex.raw(
        `INSERT INTO rev (id, name, n, tags, city, _zd_version)
           SELECT lpad(to_hex(g), 24, '0'), 'row ' || g, g * 7, '["r", 1]'::jsonb, 'Bern', g FROM generate_series(1, ?) g`,
        [rows],
      );
      const revColl = mdb.collection<MongoDocument>('rev');
      await revColl.drop().catch(() => undefined);
      t0 = performance.now();
      await log.during(() => reverseSync({ db, table: rev, move, collection: revColl, bson }));
      const revStart = rows / ((performance.now() - t0) / 1000);
      const cRevStart = log.take();
      // the rows again, now into the seeded collection of N documents (the rows' _ids are not among them)
      t0 = performance.now();
      await log.during(() => reverseSync({ db, table: rev, move, collection: coll, bson }));
      const revEnd = rows / ((performance.now() - t0) / 1000);
      const cRevEnd = log.take();
      await coll.deleteMany({ name: /^row / }).catch(() => undefined);
      await revColl.drop().catch(() => undefined);

      // 3b. a rebuild: N rows into an empty collection, documents/s over its first and its last tenth
      let rebuild = 'skipped (--rebuild-max)';
      if (n <= rebuildMax) {
        await knex.raw('TRUNCATE rev');
        await knex.raw(
          `INSERT INTO rev (id, name, n, tags, city, _zd_version)
             SELECT lpad(to_hex(g), 24, '0'), 'row ' || g, g * 7, '["r", 1]'::jsonb, 'Bern', g FROM generate_series(1, ?) g`,
          [n],
        );
        const marks: { rows: number; at: number }[] = [];
        t0 = performance.now();
        await reverseSync({ db, table: rev, move, collection: revColl, bson, onProgress: (p) => marks.push({ rows: p.rows, at: performance.now() - t0 }) });
        const rate = (from: number, to: number) => {
          const a = marks.find((m) => m.rows >= from) ?? { rows: 0, at: 0 };
          const b = marks.find((m) => m.rows >= to) ?? marks[marks.length - 1]!;
          return (b.rows - a.rows) / ((b.at - a.at) / 1000);
        };
        const first = rate(0, n / 10);
        const last = rate(n - n / 10, n);
        rebuild = `first tenth ${Math.round(first)} docs/s, last tenth ${Math.round(last)} docs/s; last ÷ first = ${fmt(last / first)}`;
        await revColl.drop().catch(() => undefined);
      }

      const steal = stolenSince(cpu);
      out.push(
        '',
        `documents: ${n.toLocaleString('en')}; CPU steal ${steal}; load average ${fmt(os.loadavg()[0]!, 1)}`,
        line('dual update  ', times.pu, times.du),
        line('dual replace ', times.pr, times.dr),
        line('reverse update', times.pc, times.ru),
        `  commands: plain update ${cPlain.names} (${cPlain.wide} whole-collection); dual update ${cUpdate.names} (${cUpdate.wide} whole-collection); dual replace ${cReplace.names} (${cReplace.wide} whole-collection); reverse update ${cReverse.names} (${cReverse.wide} whole-collection)`,
        `copy start-up: first batch after ${fmt(firstBatch / 1000)} s; a plain find()'s first batch ${fmt(plainFirst / 1000)} s; ratio ${fmt(firstBatch / plainFirst, 1)}`,
        `reverse sync of ${rows} rows: into an empty collection ${Math.round(revStart)} docs/s, into ${n.toLocaleString('en')} documents ${Math.round(revEnd)} docs/s; end ÷ start = ${fmt(revEnd / revStart)}`,
        `reverse sync rebuilding ${n.toLocaleString('en')} documents: ${rebuild}`,
        `  commands: start ${cRevStart.names} (${cRevStart.wide} whole-collection); end ${cRevEnd.names} (${cRevEnd.wide} whole-collection)`,
      );
      process.stdout.write(out.slice(-10).join('\n') + '\n');
    }
  } finally {
    await knex.destroy();
    await mdb.dropDatabase().catch(() => undefined);
    await dropBenchDatabase(DB);
    await mongo.close();
  }
}

runIfMain(import.meta.url, main);

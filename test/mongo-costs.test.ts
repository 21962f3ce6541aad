import { expect } from 'chai';
import type { Knex } from 'knex';
import * as bson from 'mongodb';
import { MongoClient, ObjectId, type Collection, type CommandStartedEvent } from 'mongodb';
import { Registry } from 'prom-client';
import { Db } from '../lib/db/db.js';
import { runMongoBackfill } from '../lib/mongo/backfill.js';
import { MongoDualWriter } from '../lib/mongo/dual-writer.js';
import { DualWriteMetrics } from '../lib/mongo/metrics.js';
import { allColumns, resolveMove, type MongoToPostgresOptions } from '../lib/mongo/move.js';
import { applyRowToMongo, reverseSync } from '../lib/mongo/reverse.js';
import { PostgresSink } from '../lib/mongo/sink.js';
import { createTargetTable, mongoStateTables } from '../lib/mongo/sql.js';
import { freshDatabase, knexFor, testDatabaseName } from './support/pg.js';
import { FERRETDB_URL } from './support/mongo.js';

type Doc = Record<string, unknown>;
const MONGO_DB = testDatabaseName('mongo_costs');

/**
 * What FerretDB (v1) answers without reading the whole collection: a filter that is exactly `{ _id: value }`, or no
 * filter at all for a plain pass over everything. Anything else (a second field, `$in`, `$or`, a sort, a count)
 * makes it read every document, so a write that sends one costs more as the collection grows.
 */
function readsEverything(e: CommandStartedEvent): boolean {
  const c = e.command as Record<string, unknown>;
  if (c.sort !== undefined || e.commandName === 'count' || e.commandName === 'aggregate' || e.commandName === 'distinct') return true;
  const filters: unknown[] = [];
  if (e.commandName === 'findAndModify') filters.push(c.query ?? {});
  if (e.commandName === 'find') {
    const f = (c.filter ?? {}) as object;
    if (Object.keys(f).length > 0) filters.push(f);
  }
  for (const u of (c.updates as { q: unknown }[] | undefined) ?? []) filters.push(u.q);
  for (const d of (c.deletes as { q: unknown }[] | undefined) ?? []) filters.push(d.q);
  return filters.some((f) => {
    const keys = Object.keys(f as object);
    if (keys.length !== 1 || keys[0] !== '_id') return true;
    const v = (f as { _id: unknown })._id;
    return v !== null && typeof v === 'object' && !('_bsontype' in v) && Object.keys(v).some((k) => k.startsWith('$'));
  });
}

describe('Mongo move costs: dual writes, reverse sync and the copy ask FerretDB only what it answers by _id', function () {
  this.timeout(120_000);
  let knex: Knex;
  let db: Db;
  let client: MongoClient;
  const seen: CommandStartedEvent[] = [];
  const options: MongoToPostgresOptions = {
    collection: 'costs',
    table: 'costs',
    columns: [
      { name: 'name', type: 'text', required: true },
      { name: 'n', type: 'bigint' },
    ],
    unmapped: { column: 'extra' },
    batchSize: 100,
  };
  const move = resolveMove(options);
  const table = { schema: 'public', name: 'costs' };

  before(async () => {
    knex = knexFor(await freshDatabase('mongo_costs'));
    db = new Db(knex);
    client = new MongoClient(FERRETDB_URL, { serverSelectionTimeoutMS: 20_000, useBigInt64: true, monitorCommands: true });
    await client.connect();
    await client.db(MONGO_DB).dropDatabase();
    client.on('commandStarted', (e) => {
      if (e.databaseName === MONGO_DB) seen.push(e);
    });
    await knex.raw('CREATE SCHEMA zero_downtime');
    for (const s of mongoStateTables('zero_downtime')) await knex.raw(s.text);
    await knex.raw(createTargetTable(table, allColumns(move), 'id', 'objectid').text);
  });
  after(async () => {
    await client?.db(MONGO_DB).dropDatabase().catch(() => undefined);
    await client?.close();
    await knex?.destroy();
  });

  const collectionOf = async (name: string, docs: number): Promise<Collection<Doc>> => {
    const coll = client.db(MONGO_DB).collection<Doc>(name);
    await coll.drop().catch(() => undefined);
    for (let lo = 0; lo < docs; lo += 1000) {
      await coll.insertMany(Array.from({ length: Math.min(1000, docs - lo) }, (_x, j) => ({ _id: new ObjectId(), name: `doc ${lo + j}`, n: BigInt(lo + j) })));
    }
    return coll;
  };
  const during = async (f: () => Promise<unknown>): Promise<CommandStartedEvent[]> => {
    seen.length = 0;
    await f();
    return [...seen];
  };
  const names = (events: readonly CommandStartedEvent[]) => events.map((e) => e.commandName).filter((n) => n !== 'getMore' && n !== 'killCursors');

  it('a dual write sends the same commands at 100 and at 3 000 documents, none of which reads the whole collection', async () => {
    const perSize = [];
    for (const size of [100, 3000]) {
      const coll = await collectionOf(`dual_${size}`, size);
      const writer = new MongoDualWriter({ collection: coll, postgres: knex, move: resolveMove({ ...options, collection: `dual_${size}` }) });
      const id = (await coll.findOne({}))!._id;
      await writer.update(id, { $set: { name: 'warm-up' } }); // loads the driver and asks the server what it is, once
      const update = await during(() => writer.update(id, { $set: { name: 'updated' } }));
      const replace = await during(() => writer.replace(id, { name: 'replaced', n: 7n, note: 'new field' }));
      const insert = await during(() => writer.insert({ name: 'inserted', n: 1n }));
      const del = await during(() => writer.delete(id));
      for (const [what, events] of Object.entries({ update, replace, insert, delete: del })) {
        expect(events.filter(readsEverything).map((e) => JSON.stringify(e.command)), `${what} at ${size} documents`).to.deep.equal([]);
      }
      perSize.push({ update: names(update), replace: names(replace), insert: names(insert), delete: names(del) });
    }
    expect(perSize[1]).to.deep.equal(perSize[0]);
    expect(perSize[0]!.update).to.deep.equal(['insert', 'findAndModify', 'delete']); // outbox entry, the write, outbox cleared
  });

  it('a replace that races a writer adding a field converges to exactly the replacement, in MongoDB and PostgreSQL', async () => {
    const coll = await collectionOf('race', 10);
    const m = resolveMove({ ...options, collection: 'race' });
    const id = (await coll.findOne({}))!._id;
    let raced = false;
    const racy = new Proxy(coll, {
      get(target, prop) {
        if (prop === 'findOneAndUpdate') {
          return async (...args: Parameters<Collection<Doc>['findOneAndUpdate']>) => {
            if (!raced) {
              raced = true;
              await target.updateOne({ _id: id } as never, { $set: { added: 'by another writer' }, $inc: { _zdv: 1n } } as never);
            }
            return target.findOneAndUpdate(...args);
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const writer = new MongoDualWriter({ collection: racy, postgres: knex, move: m });
    const r = await writer.replace(id, { name: 'replacement', n: 3n });
    expect(raced).to.equal(true);
    const doc = await coll.findOne({ _id: id } as never);
    expect(doc).to.deep.equal({ _id: id, name: 'replacement', n: 3n, _zdv: r.version });
    const row = async () => (await knex.raw(`SELECT name, n::text, extra, _zd_version::text AS v FROM costs WHERE id = ?`, [(id as ObjectId).toHexString()])).rows[0];
    expect(await row()).to.deep.equal({ name: 'replacement', n: '3', extra: null, v: String(r.version) });

    // The same race on an instance whose PostgreSQL is unreachable: one failure counted for the one call, and the
    // reconciler brings PostgreSQL to the final state.
    raced = false;
    const broken = knexFor('postgres://postgres@127.0.0.1:1/nowhere', 1);
    try {
      const metrics = new DualWriteMetrics(new Registry());
      const offline = new MongoDualWriter({ collection: racy, postgres: broken, move: m, metrics });
      const r2 = await offline.replace(id, { name: 'second replacement', n: 4n });
      expect(raced).to.equal(true);
      expect(r2.synced).to.equal(false);
      expect((await metrics.failures.get()).values[0]!.value).to.equal(1);
      expect(await coll.findOne({ _id: id } as never)).to.deep.equal({ _id: id, name: 'second replacement', n: 4n, _zdv: r2.version });
      const online = new MongoDualWriter({ collection: coll, postgres: knex, move: m });
      expect(await online.reconcile({ olderThanMs: 0 })).to.deep.include({ pending: 0, failed: 0 });
      expect(await row()).to.deep.equal({ name: 'second replacement', n: '4', extra: null, v: String(r2.version) });
    } finally {
      await broken.destroy();
    }
  });

  it('reverse sync reads the collection once, whatever the number of pages, and writes by _id alone', async () => {
    const rev = { schema: 'public', name: 'costs_rev' };
    await knex.raw(createTargetTable(rev, allColumns(move), 'id', 'objectid').text);
    await knex.raw(`INSERT INTO costs_rev (id, name, n, _zd_version) SELECT lpad(to_hex(g), 24, '0'), 'row ' || g, g, g FROM generate_series(1, 300) g`);
    const coll = await collectionOf('rev', 500);
    const events = await during(() => reverseSync({ db, table: rev, move, collection: coll, bson, batchSize: 50 }));
    const wide = events.filter(readsEverything);
    expect(wide.map((e) => JSON.stringify(e.command))).to.deep.equal([]);
    // one pass over the collection for the versions (a find without a filter), then one insert per row
    expect(names(events).filter((n) => n === 'find')).to.have.length(1);
    expect(names(events).filter((n) => n === 'insert')).to.have.length(300);
    const again = await during(() => reverseSync({ db, table: rev, move, collection: coll, bson, batchSize: 50 }));
    expect(names(again)).to.deep.equal(['find']);
  });

  it('a write by _id alone never leaves an older document over a newer one a concurrent writer put there', async () => {
    const coll = await collectionOf('guard', 0);
    const id = new ObjectId();
    const key = id.toHexString();
    const row = (version: bigint, deleted = false) => ({ texts: [key, `v${version}`, String(version), null], version, deleted });
    const put = (version: bigint) => coll.replaceOne({ _id: id } as never, { name: `v${version}`, n: version, _zdv: version }, { upsert: true });
    const now = async () => (await coll.findOne({ _id: id } as never)) as Doc | null;
    // what the writer thought it knew (read earlier) is stale in each case
    await put(5n);
    expect(await applyRowToMongo(coll, move, row(3n), bson, { exists: true, version: 1n }, true)).to.equal('newer-kept');
    expect(await now()).to.deep.include({ name: 'v5', _zdv: 5n });
    expect(await applyRowToMongo(coll, move, row(3n), bson, { exists: false }, true)).to.equal('newer-kept');
    expect(await now()).to.deep.include({ name: 'v5', _zdv: 5n });
    expect(await applyRowToMongo(coll, move, row(4n, true), bson, { exists: true, version: 1n }, true)).to.equal('newer-kept');
    expect(await now()).to.deep.include({ name: 'v5', _zdv: 5n });
    expect(await applyRowToMongo(coll, move, row(6n), bson, { exists: true, version: 5n }, true)).to.equal('written');
    expect(await now()).to.deep.include({ name: 'v6', _zdv: 6n });
    expect(await applyRowToMongo(coll, move, row(7n, true), bson, { exists: true, version: 6n }, true)).to.equal('deleted');
    expect(await now()).to.equal(null);
  });

  it('the copy asks for no sort and no count before its first batch, and a resumed copy neither writes nor counts a document twice', async () => {
    const coll = await collectionOf('costs', 1000);
    const copyMove = resolveMove({ ...options, table: 'costs_copy' });
    const copyTable = { schema: 'public', name: 'costs_copy' };
    await knex.raw(createTargetTable(copyTable, allColumns(copyMove), 'id', 'objectid').text);
    const sink = () => new PostgresSink(copyMove, copyTable, 'zero_downtime', bson);
    const ac = new AbortController();
    const first = await during(() =>
      runMongoBackfill({ db, stateSchema: 'zero_downtime', sink: sink(), collection: coll, bson, signal: ac.signal, onProgress: () => ac.abort() }).catch((e: unknown) => {
        if (!ac.signal.aborted) throw e;
      }),
    );
    expect(first.filter(readsEverything).map((e) => JSON.stringify(e.command))).to.deep.equal([]);
    const copied = (await knex.raw(`SELECT count(*)::int AS n FROM costs_copy`)).rows[0].n as number;
    expect(copied).to.be.within(100, 990);
    // documents the copy has not reached, changed through the dual-writer meanwhile: PostgreSQL has them at their
    // version already, so the resumed walk (which starts over on FerretDB) skips them, as it skips the copied ones
    const writer = new MongoDualWriter({ collection: coll, postgres: knex, move: copyMove });
    const some = await coll.find({}).skip(997).toArray();
    for (const d of some) await writer.update(d._id, { $set: { name: 'dual-written' } });
    const done = await runMongoBackfill({ db, stateSchema: 'zero_downtime', sink: sink(), collection: coll, bson });
    expect(done.read).to.equal(997);
    const st = (await knex.raw(`SELECT count(*)::int AS n, count(*) FILTER (WHERE name = 'dual-written')::int AS dual FROM costs_copy WHERE _zd_deleted_at IS NULL`)).rows[0];
    expect(st).to.deep.equal({ n: 1000, dual: 3 });
  });
});

import { expect } from 'chai';
import type { Knex } from 'knex';
import * as bson from 'mongodb';
import { Binary, Double, MongoClient, ObjectId, UUID, type Collection } from 'mongodb';
import { zeroDowntime, type ZeroDowntimeUmzug } from '../lib/index.js';
import { ReverseDualWriter, reverseSync, validateMove } from '../lib/public/mongo.js';
import { Db } from '../lib/db/db.js';
import { resolveMove, type MongoToPostgresOptions } from '../lib/mongo/move.js';
import { PostgresSink } from '../lib/mongo/sink.js';
import { freshDatabase, knexFor, testDatabaseName } from './support/pg.js';
import { tempProject } from './support/project.js';
import { FERRETDB_URL, mongoClient } from './support/mongo.js';

type Doc = Record<string, unknown>;
const MONGO_DB = testDatabaseName('mongo_reverse');
const DOCS = 240;

const OPTIONS: MongoToPostgresOptions = {
  collection: 'people',
  table: 'people',
  columns: [
    { name: 'name', type: 'text', required: true },
    { name: 'age', type: 'integer' },
    { name: 'big', type: 'bigint' },
    { name: 'ratio', type: 'double precision' },
    { name: 'born', type: 'timestamptz' },
    { name: 'active', type: 'boolean' },
    { name: 'friend', type: 'objectid' },
    { name: 'uid', type: 'uuid' },
    { name: 'blob', type: 'bytea' },
    { name: 'tags', type: 'jsonb' },
    { name: 'city', type: 'text', from: 'address.city' },
  ],
  unmapped: { column: 'extra' },
  batchSize: 50,
  verify: { chunkSize: 40 },
};

const NAMES = ['Zoë', 'O"Brien\'s', '東京', 'back\\slash', 'tab\there', '😀', ''];

/**
 * A document of the types that survive MongoDB → PostgreSQL → MongoDB exactly on FerretDB: Int32, Int64 (Int64 in
 * bigint columns, and inside jsonb beyond Int32 range), Doubles (integral ones in double columns), Dates before 1970,
 * ObjectIds, UUIDs, Binary, nested documents and arrays, and null next to missing at the top level, inside a nested
 * document on a mapped path, and inside jsonb. Some documents carry a version (written by a dual-writer), most not.
 */
function person(i: number): Doc {
  const d: Doc = {
    _id: new ObjectId(),
    name: `${NAMES[i % NAMES.length]} #${i}`,
    big: i % 3 === 0 ? 9_223_372_036_854_775_807n - BigInt(i) : BigInt(i) * 1_000_000_007n,
    ratio: i % 4 === 0 ? new Double(i) : i / 7 + 0.001,
    born: new Date(i % 5 === 0 ? -2_208_988_800_000 - i * 86_400_001 : 1_600_000_000_000 + i * 3_600_001),
    friend: new ObjectId(),
    uid: new UUID(),
    blob: new Binary(Buffer.from([i & 255, 0, 255, 7])),
    tags: ['x', i, null, { when: new Date(1_700_000_000_000 + i), ref: new ObjectId(), n: 2n ** 40n + BigInt(i), deep: [{ a: null }, { b: [1, 'b'] }] }],
  };
  if (i % 7 === 0) d.age = null;
  else if (i % 7 !== 1) d.age = i * 1000 - 50_000;
  if (i % 3 === 0) d.active = null;
  else if (i % 3 === 1) d.active = i % 2 === 0;
  if (i % 10 === 9) d.tags = null;
  else if (i % 10 === 8) delete d.tags;
  else if (i % 10 === 7) d.tags = [];
  if (i % 9 === 0) delete d.friend;
  const a = i % 6;
  if (a === 0) d.address = {};
  else if (a === 1) d.address = { city: 'Bern' };
  else if (a === 2) d.address = { city: null, zip: `${1000 + i}` };
  else if (a === 3) d.address = { city: NAMES[i % NAMES.length], zip: `${1000 + i}`, geo: { lat: i / 3 + 0.5, tags: [] } };
  else if (a === 4) d.address = null;
  if (i % 4 === 0) d.note = `only some documents have a note (${i})`;
  if (i % 8 === 0) d.meta = { empty: {}, list: [], nothing: null, long: 2n ** 53n + 1n };
  if (i % 10 === 0) d._zdv = BigInt(i + 1);
  return d;
}

/** Every document read type-exactly (Int32, Int64 and Double as themselves), as sorted canonical Extended JSON. */
async function snapshot(coll: Collection<Doc>): Promise<Map<string, Doc>> {
  const docs = await coll.find({}, { promoteValues: false, promoteLongs: false, useBigInt64: false }).toArray();
  return new Map(docs.map((d) => [keyOf(d._id), d]));
}

const keyOf = (id: unknown) => bson.BSON.EJSON.stringify(id as never, { relaxed: false });

function canon(d: Doc): string {
  const sort = (x: unknown): unknown =>
    Array.isArray(x) ? x.map(sort) : x && typeof x === 'object' ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sort((x as Doc)[k])])) : x;
  return JSON.stringify(sort(bson.BSON.EJSON.serialize(d, { relaxed: false })));
}

/** Field by field, so a failure names the document and the difference. */
function expectSame(actual: Map<string, Doc>, expected: Map<string, Doc>): void {
  const missing = [...expected.keys()].filter((k) => !actual.has(k));
  const extra = [...actual.keys()].filter((k) => !expected.has(k));
  expect({ missing, extra }).to.deep.equal({ missing: [], extra: [] });
  for (const [k, want] of expected) expect(canon(actual.get(k)!), `document ${k}`).to.equal(canon(want));
}

describe('Mongo move, reverse direction: PostgreSQL primary after the write flip, MongoDB kept in line for a rollback', function () {
  this.timeout(120_000);
  let knex: Knex;
  let db: Db;
  let client: MongoClient;
  let dead: MongoClient;
  let coll: Collection<Doc>;
  let umzug: ZeroDowntimeUmzug;
  let originals: Map<string, Doc>;
  const expected = new Map<string, Doc>();
  const quarantined: string[] = [];
  const move = resolveMove(OPTIONS);
  const table = { schema: 'public', name: 'people' };

  before(async () => {
    knex = knexFor(await freshDatabase('mongo_reverse'));
    db = new Db(knex);
    client = await mongoClient();
    // A MongoDB that is down: every write to it fails (fast).
    dead = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 250, useBigInt64: true });
    const mdb = client.db(MONGO_DB);
    await mdb.dropDatabase();
    coll = mdb.collection<Doc>('people');
    const docs = Array.from({ length: DOCS }, (_x, i) => person(i));
    // Three legacy documents that cannot be mapped (the quarantine keeps them; the reverse direction must not delete them).
    for (const i of [5, 50, 150]) {
      const bad: Doc = { ...person(10_000 + i), age: 'not a number' };
      delete bad._zdv;
      docs.push(bad);
      quarantined.push(keyOf(bad._id));
    }
    await coll.insertMany(docs);
    const project = tempProject('mongo-reverse');
    project.write(
      '2026.01.01T00.00.00.people.ts',
      `import { defineMigration, mongoToPostgres } from 'umzug-zero-downtime';
       export default defineMigration({ changes: [mongoToPostgres(${JSON.stringify(OPTIONS)})] });`,
    );
    // The contract waits (an hour): the move is between expand and cutover, where a rollback can still happen.
    umzug = zeroDowntime({ knex, cwd: project.dir, logger: null, contract: { after: '1h' }, mongo: { url: FERRETDB_URL, database: MONGO_DB } });
    await umzug.up();
    expect((await umzug.status()).migrations[0]!.expand).to.equal('applied');
    originals = await snapshot(coll);
    for (const [k, d] of originals) expected.set(k, d);
    expect(expected.size).to.equal(DOCS + 3);
  });
  after(async () => {
    await umzug?.close();
    await client?.close();
    await dead?.close();
    await knex?.destroy();
  });

  const pgVersion = async (hex: string) => BigInt((await knex.raw(`SELECT _zd_version::text AS v FROM people WHERE id = ?`, [hex])).rows[0].v as string);
  const liveKeys = async (n: number, offset: number) =>
    ((await knex.raw(`SELECT id FROM people WHERE _zd_deleted_at IS NULL ORDER BY id LIMIT ? OFFSET ?`, [n, offset])).rows as { id: string }[]).map((r) => r.id);
  const oidKey = (hex: string) => keyOf(ObjectId.createFromHexString(hex));

  /** The expected document after an update of some columns: the original with those fields, and the row's version. */
  const updated = async (hex: string, fields: Doc, city?: string | null) => {
    const d: Doc = { ...expected.get(oidKey(hex))! };
    for (const [f, v] of Object.entries(fields)) {
      // NULL in a column means a missing field, unless the document had null there (the unmapped-fields column says so).
      if (v === null && d[f] !== null) delete d[f];
      else d[f] = v;
    }
    if (city !== undefined) {
      const a = d.address && typeof d.address === 'object' ? (d.address as Doc) : {};
      d.address = { ...a, city };
    }
    d._zdv = await pgVersion(hex);
    expected.set(oidKey(hex), d);
  };

  it('inserts, partial updates and deletes through ReverseDualWriter reach MongoDB exactly; writes whose MongoDB copy failed wait in the outbox for reconcile() or reverseSync; validateMove finds 0 mismatches', async () => {
    const writer = new ReverseDualWriter({ db, table, move, collection: coll, bson });
    const broken = new ReverseDualWriter({ db, table, move, collection: dead.db(MONGO_DB).collection<Doc>('people'), bson });

    // Partial updates: exact Int64, a nested array with Int64 and a Date in jsonb, a nested path, a column set to NULL.
    const ups = await liveKeys(10, 3);
    for (const [n, hex] of ups.entries()) {
      const tags = [{ n: 2n ** 50n + BigInt(n), at: new Date(1_000_000_000_000 + n) }, 'y'];
      const r = await writer.update(hex, { name: `renamed ${n}`, big: 2n ** 62n + BigInt(n), active: true, tags, city: 'Neu', age: null });
      expect(r.synced).to.equal(true);
      await updated(hex, { name: `renamed ${n}`, big: 2n ** 62n + BigInt(n), active: true, tags, age: null }, 'Neu');
    }
    // New rows, given as BSON values (an ObjectId key, a UUID, Binary) and the unmapped fields as a document.
    for (let n = 0; n < 4; n++) {
      const id = new ObjectId();
      const uid = new UUID();
      const friend = new ObjectId();
      const born = new Date(Date.UTC(1969, 6, 20, 20, 17, 40, n));
      const r = await writer.upsert({
        id,
        name: `new ${n}`,
        age: 41 + n,
        big: 5n,
        ratio: 0.25,
        born,
        active: false,
        friend,
        uid,
        blob: new Binary(Buffer.from([n, 1, 2])),
        tags: ['t', { x: null }],
        city: 'Chur',
        extra: { address: { zip: '7000' }, note: 'new', deep: { empty: {}, n: 2n ** 60n } },
      });
      expect(r).to.deep.equal({ version: 1n, synced: true });
      expected.set(keyOf(id), {
        _id: id,
        name: `new ${n}`,
        age: 41 + n,
        big: 5n,
        ratio: new Double(0.25),
        born,
        active: false,
        friend,
        uid: new Binary(Buffer.from(uid.toHexString(false), 'hex'), 4),
        blob: new Binary(Buffer.from([n, 1, 2])),
        tags: ['t', { x: null }],
        address: { zip: '7000', city: 'Chur' },
        note: 'new',
        deep: { empty: {}, n: 2n ** 60n },
        _zdv: 1n,
      });
    }
    // Deletes: tombstones in PostgreSQL, the documents gone from MongoDB.
    for (const hex of await liveKeys(4, 40)) {
      const r = await writer.delete(hex);
      expect(r.synced).to.equal(true);
      expected.delete(oidKey(hex));
    }
    expect(await writer.delete(new ObjectId().toHexString())).to.deep.equal({ version: null, synced: true });
    expect(await writer.update(new ObjectId(), { name: 'nobody' })).to.deep.equal({ version: null, synced: true });

    // MongoDB unreachable for this instance: PostgreSQL has the writes, the outbox the pending copies.
    const unsynced: boolean[] = [];
    for (const hex of await liveKeys(3, 60)) {
      unsynced.push((await broken.update(hex, { name: 'while MongoDB was down' })).synced);
      await updated(hex, { name: 'while MongoDB was down' });
    }
    const lateId = new ObjectId();
    unsynced.push((await broken.upsert({ id: lateId, name: 'inserted while MongoDB was down' })).synced);
    expected.set(keyOf(lateId), { _id: lateId, name: 'inserted while MongoDB was down', _zdv: 1n });
    for (const hex of await liveKeys(2, 80)) {
      unsynced.push((await broken.delete(hex)).synced);
      expected.delete(oidKey(hex));
    }
    expect(unsynced).to.deep.equal([false, false, false, false, false, false]);
    expect(await writer.reconcile()).to.deep.equal({ applied: 6, failed: 0, pending: 0 });

    // More writes MongoDB missed; this time a full reverse sync (what a rollback runs) brings them in.
    for (const hex of await liveKeys(2, 100)) {
      await broken.update(hex, { ratio: new Double(-2.5), born: null });
      await updated(hex, { ratio: new Double(-2.5), born: null });
    }
    const gone = (await liveKeys(1, 120))[0]!;
    await broken.delete(gone);
    expected.delete(oidKey(gone));
    const sync = await reverseSync({ db, table, move, collection: coll, bson, batchSize: 64 });
    expect(sync).to.deep.include({ written: 2, deleted: 1 });
    // The outbox entries are stale now: applying them changes nothing.
    expect(await writer.reconcile()).to.deep.equal({ applied: 3, failed: 0, pending: 0 });

    expectSame(await snapshot(coll), expected);
    // The quarantined legacy documents are still there, untouched.
    for (const q of quarantined) expect(canon((await snapshot(coll)).get(q)!)).to.equal(canon(originals.get(q)!));

    const sink = new PostgresSink(move, table, 'zero_downtime', bson);
    const v = await validateMove({ db, sink, collection: coll, bson, stateSchema: 'zero_downtime', recheckDelayMs: 20 });
    expect(v.details).to.deep.equal([]);
    expect(v.mismatches).to.equal(0);
    expect(v.quarantineCount).to.equal(3);
    expect(v.mongoCount).to.equal(expected.size);
    expect(v.postgresCount + 3).to.equal(expected.size);

    // Nothing is rewritten by a second pass: every document already has its row's version.
    const again = await reverseSync({ db, table, move, collection: coll, bson });
    expect(again).to.deep.include({ written: 0, deleted: 0 });
  });

  it('reverseSync rebuilds an empty collection from the table: every document equals its original exactly, a re-run writes nothing', async () => {
    const restored = client.db(MONGO_DB).collection<Doc>('people_restored');
    await restored.drop().catch(() => undefined);
    const r = await reverseSync({ db, table, move, collection: restored, bson, batchSize: 100 });
    const live = Number((await knex.raw(`SELECT count(*)::int AS n FROM people WHERE _zd_deleted_at IS NULL`)).rows[0].n);
    expect(r.written).to.equal(live);
    expect(r.deleted).to.equal(0);
    // Unmappable documents live only in the quarantine (as exact Extended JSON), not in the table.
    const want = new Map([...expected].filter(([k]) => !quarantined.includes(k)));
    expectSame(await snapshot(restored), want);
    // Untouched documents came back byte-for-byte equal in value and type to what the backfill read.
    const untouched = [...originals.keys()].filter((k) => want.has(k) && canon(want.get(k)!) === canon(originals.get(k)!));
    expect(untouched.length).to.be.greaterThan(DOCS - 40);
    const again = await reverseSync({ db, table, move, collection: restored, bson });
    expect(again).to.deep.include({ written: 0, deleted: 0 });
  });
});

import { expect } from 'chai';
import type { Knex } from 'knex';
import type { Collection, MongoClient } from 'mongodb';
import * as bson from 'mongodb';
import { Registry } from 'prom-client';
import { zeroDowntime, VerificationFailedError } from '../lib/index.js';
import { Db } from '../lib/db/db.js';
import { runMongoBackfill } from '../lib/mongo/backfill.js';
import { MongoDualWriter } from '../lib/mongo/dual-writer.js';
import { DualWriteMetrics } from '../lib/mongo/metrics.js';
import { allColumns, resolveMove, type MongoToPostgresOptions } from '../lib/mongo/move.js';
import { PostgresSink } from '../lib/mongo/sink.js';
import { validateMove } from '../lib/mongo/validate.js';
import { ReadRouter } from '../lib/mongo/read-router.js';
import { createTargetTable, mongoStateTables } from '../lib/mongo/sql.js';
import { freshDatabase, knexFor, testDatabaseName } from './support/pg.js';
import { tempProject } from './support/project.js';
import { FERRETDB_URL, mongoClient, rng } from './support/mongo.js';

type Doc = Record<string, unknown>;
const MONGO_DB = testDatabaseName('mongo_dualwrite');
const LEGACY = 3000;

const OPTIONS: MongoToPostgresOptions = {
  collection: 'accounts',
  table: 'accounts',
  columns: [
    { name: 'name', type: 'text', required: true },
    { name: 'balance', type: 'bigint' },
    { name: 'tags', type: 'jsonb' },
    { name: 'seen', type: 'timestamptz' },
  ],
  unmapped: { column: 'extra' },
  batchSize: 150,
  verify: { chunkSize: 400 },
};

function legacyDoc(i: number): Doc {
  return { _id: new bson.ObjectId(), name: `acct ${i}`, balance: BigInt(i) * 9_007_199_254_741n, tags: [i % 5, 'x'], seen: new Date(1_600_000_000_000 + i) };
}

describe('Mongo dual-write through the backfill: concurrent writers, failed secondary writes, validation', function () {
  this.timeout(240_000);
  let knex: Knex;
  let broken: Knex;
  let client: MongoClient;
  let coll: Collection<Doc>;
  let db: Db;
  const move = resolveMove(OPTIONS);
  const table = { schema: 'public', name: 'accounts' };
  const metrics = new DualWriteMetrics(new Registry());
  let writer: MongoDualWriter;

  before(async () => {
    const url = await freshDatabase('mongo_dualwrite');
    knex = knexFor(url);
    // An application instance whose PostgreSQL is unreachable: every secondary write fails.
    broken = knexFor('postgres://postgres@127.0.0.1:1/nowhere', 2);
    db = new Db(knex);
    client = await mongoClient();
    const mdb = client.db(MONGO_DB);
    await mdb.dropDatabase();
    coll = mdb.collection<Doc>('accounts');
    await coll.insertMany(Array.from({ length: LEGACY }, (_x, i) => legacyDoc(i)));
    await knex.raw('CREATE SCHEMA zero_downtime');
    for (const s of mongoStateTables('zero_downtime')) await knex.raw(s.text);
    await knex.raw(`CREATE TABLE zero_downtime.backfills (migration text, change_index int, phase text, last_key jsonb, rows_done bigint NOT NULL DEFAULT 0,
      rows_updated bigint NOT NULL DEFAULT 0, batches int NOT NULL DEFAULT 0, total_estimate bigint, done boolean NOT NULL DEFAULT false, updated_at timestamptz,
      PRIMARY KEY (migration, change_index, phase))`);
    await knex.raw(createTargetTable(table, allColumns(move), 'id', 'objectid').text);
    writer = new MongoDualWriter({ collection: coll, postgres: knex, move, metrics });
  });
  after(async () => {
    await client?.close();
    await knex?.destroy();
    await broken?.destroy();
  });

  it('writers insert, update, replace and delete through the dual-writer while the backfill runs; afterwards validation finds 0 mismatches', async () => {
    const ids: unknown[] = (await coll.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
    let running = true;
    const stats = { ops: 0, unsynced: 0, errors: [] as string[] };
    const app = async (label: string, w: MongoDualWriter, seed: number) => {
      const r = rng(seed);
      let i = 0;
      while (running) {
        i++;
        const id = ids[Math.floor(r() * ids.length)];
        const x = r();
        try {
          let res: { synced: boolean };
          if (x < 0.2) {
            const doc: Doc = { ...legacyDoc(100_000 + seed * 10_000 + i), name: `${label} new ${i}` };
            res = await w.insert(doc);
            ids.push(doc._id);
          } else if (x < 0.65) res = await w.update(id, { $set: { name: `${label} ${i}`, seen: new Date() }, $inc: { balance: 1n } } as never);
          else if (x < 0.75) res = await w.replace(id, { name: `${label} replaced ${i}`, balance: BigInt(i), tags: { replaced: true }, note: `by ${label}` });
          else res = await w.delete(id);
          stats.ops++;
          if (!res.synced) stats.unsynced++;
        } catch (e) {
          stats.errors.push(`${label}: ${(e as Error).message}`);
        }
      }
    };
    const apps = [
      app('a', writer, 1),
      app('b', new MongoDualWriter({ collection: coll, postgres: knex, move, metrics }), 2),
      app('broken', new MongoDualWriter({ collection: coll, postgres: broken, move, metrics }), 3),
    ];
    // The reconciler, as an application would run it on a timer.
    const reconciler = (async () => {
      while (running) {
        await writer.reconcile({ olderThanMs: 300 });
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    const started = Date.now();
    const result = await runMongoBackfill({
      db,
      stateSchema: 'zero_downtime',
      sink: new PostgresSink(move, table, 'zero_downtime', bson),
      collection: coll,
      bson,
      // paced, so that the writers' operations land between, before and after its batches: at least two between any
      // two batches, however fast or slow the machine is
      beforeBatch: async () => {
        const target = stats.ops + 2;
        for (let i = 0; i < 200 && stats.ops < target; i++) await new Promise((r) => setTimeout(r, 10));
      },
      engineKey: { migration: 'm', changeIndex: 0, phase: 'expand' },
    });
    const opsDuringBackfill = stats.ops;
    while (Date.now() - started < 4000) await new Promise((r) => setTimeout(r, 100));
    running = false;
    await Promise.all([...apps, reconciler]);
    expect(stats.errors).to.deep.equal([]);
    expect(opsDuringBackfill, 'operations while the backfill ran').to.be.greaterThan(30);
    expect(stats.unsynced, 'the broken instance left writes to the reconciler').to.be.greaterThan(5);
    expect(result.read).to.be.at.least(LEGACY / 2);

    const before = await writer.refreshPending();
    expect(before.count).to.be.greaterThan(0);
    for (let round = 0; round < 5; round++) if ((await writer.reconcile({ olderThanMs: 0 })).pending === 0) break;
    const pending = await writer.refreshPending();
    expect(pending).to.deep.equal({ count: 0, oldestAgeSeconds: 0 });

    const sink = new PostgresSink(move, table, 'zero_downtime', bson);
    const full = await validateMove({ db, sink, collection: coll, bson, stateSchema: 'zero_downtime' });
    expect(full.details).to.deep.equal([]);
    expect(full.mismatches).to.equal(0);
    expect(full.mongoCount).to.equal(await coll.countDocuments({}));
    expect(full.postgresCount + full.quarantineCount).to.equal(full.mongoCount);
    expect(full.checked).to.equal(full.mongoCount);
    expect(full.chunks).to.be.greaterThan(5);
    const sample = await validateMove({ db, sink, collection: coll, bson, stateSchema: 'zero_downtime', sample: { windows: 5 }, chunkSize: 100 });
    expect(sample.mode).to.equal('sample');
    expect(sample.checked).to.be.within(1, 500);
    expect(sample.mismatches).to.equal(0);

    // Lag and failures are measured.
    const lag = (await metrics.lag.get()).values.filter((v) => v.metricName === 'zd_mongo_dual_write_lag_seconds_count');
    const inline = lag.find((v) => v.labels.via === 'inline')?.value ?? 0;
    const viaReconcile = lag.find((v) => v.labels.via === 'reconcile')?.value ?? 0;
    expect(inline).to.be.greaterThan(20);
    expect(viaReconcile).to.be.at.least(stats.unsynced);
    expect((await metrics.failures.get()).values[0]!.value).to.equal(stats.unsynced);
    expect((await metrics.pending.get()).values[0]!.value).to.equal(0);
  });

  it('validation pins a tampered row, a write that bypassed the dual-writer, a missing and an extra row down to their keys', async () => {
    const sink = new PostgresSink(move, table, 'zero_downtime', bson);
    const some = (await knex.raw(`SELECT id FROM accounts WHERE _zd_deleted_at IS NULL ORDER BY id LIMIT 3 OFFSET 1000`)).rows as { id: string }[];
    const [a, b, c] = some.map((x) => x.id) as [string, string, string];
    await knex.raw(`UPDATE accounts SET name = 'tampered' WHERE id = ?`, [a]);
    await coll.updateOne({ _id: bson.ObjectId.createFromHexString(b) }, { $set: { name: 'bypassed the dual-writer' } });
    await knex.raw(`UPDATE accounts SET _zd_deleted_at = now() WHERE id = ?`, [c]);
    const ghost = new bson.ObjectId().toHexString();
    await knex.raw(`INSERT INTO accounts (id, name) VALUES (?, 'ghost')`, [ghost]);
    const r = await validateMove({ db, sink, collection: coll, bson, stateSchema: 'zero_downtime', recheckDelayMs: 20 });
    expect(r.mismatches).to.equal(4);
    expect([...r.details].sort((x, y) => x.key.localeCompare(y.key))).to.deep.equal(
      [
        { key: a, kind: 'different' },
        { key: b, kind: 'different' },
        { key: c, kind: 'missing-in-postgres' },
        { key: ghost, kind: 'extra-in-postgres' },
      ].sort((x, y) => x.key.localeCompare(y.key)),
    );
    expect(r.bisections).to.be.greaterThan(0);
    // repaired through the dual-writer (a version bump rewrites the row), the ghost removed
    for (const k of [a, b, c]) await writer.update(bson.ObjectId.createFromHexString(k), { $set: { repaired: true } });
    await knex.raw(`DELETE FROM accounts WHERE id = ?`, [ghost]);
    const again = await validateMove({ db, sink, collection: coll, bson, stateSchema: 'zero_downtime' });
    expect(again.mismatches).to.equal(0);
  });

  it('versions decide: an older copy never overwrites a newer row, a tombstone is not resurrected, a re-created document wins', async () => {
    const sink = new PostgresSink(move, table, 'zero_downtime', bson);
    const doc = legacyDoc(7_001);
    await writer.insert(doc);
    const newer = await writer.update(doc._id, { $set: { name: 'newer' } });
    const stale = { ...doc, name: 'stale copy read by a slow backfill', _zdv: 0n };
    await db.transaction((c) => sink.write(c, [stale], 'backfill'));
    const row = async () => (await knex.raw(`SELECT name, _zd_version::text AS v, _zd_deleted_at IS NOT NULL AS deleted FROM accounts WHERE id = ?`, [(doc._id as bson.ObjectId).toHexString()])).rows[0];
    expect(await row()).to.deep.equal({ name: 'newer', v: String(newer.version), deleted: false });
    await writer.delete(doc._id);
    await db.transaction((c) => sink.write(c, [{ ...stale, _zdv: newer.version }], 'backfill'));
    expect((await row()).deleted).to.equal(true);
    const again = await writer.insert({ ...doc, name: 'born again' });
    expect(again.synced).to.equal(true);
    expect(await row()).to.deep.include({ name: 'born again', deleted: false });
  });

  it('a crash between the MongoDB write and the PostgreSQL write leaves an outbox entry the reconciler applies', async () => {
    const doc: Doc = { ...legacyDoc(8_001), _zdv: 5n };
    // what an instance killed right after its primary write leaves behind: the outbox entry and the document
    await writer.outbox.insertOne({ _id: new bson.ObjectId(), move: 'public.accounts', key: doc._id, op: 'write', at: new Date(Date.now() - 10_000) });
    await coll.insertOne(doc);
    expect((await knex.raw(`SELECT count(*)::int AS n FROM accounts WHERE id = ?`, [(doc._id as bson.ObjectId).toHexString()])).rows[0].n).to.equal(0);
    const pending = await writer.refreshPending();
    expect(pending.count).to.equal(1);
    expect(pending.oldestAgeSeconds).to.be.at.least(10);
    expect(await writer.reconcile()).to.deep.include({ applied: 1, pending: 0 });
    expect((await knex.raw(`SELECT name, _zd_version::text AS v FROM accounts WHERE id = ?`, [(doc._id as bson.ObjectId).toHexString()])).rows[0]).to.deep.equal({ name: doc.name, v: '5' });
  });

  it('the reconciler buries only what it saw: a document re-created right after it found it gone keeps its row', async () => {
    const row = async (id: unknown) => (await knex.raw(`SELECT name, _zd_deleted_at IS NOT NULL AS deleted FROM accounts WHERE id = ?`, [(id as bson.ObjectId).toHexString()])).rows[0];
    // A delete still in flight (its first outbox entry, version not known yet): the document is gone from MongoDB.
    const inFlightDelete = async (doc: Doc) => {
      await writer.insert(doc);
      await coll.deleteOne({ _id: doc._id } as never);
      await writer.outbox.insertOne({ _id: new bson.ObjectId(), move: 'public.accounts', key: doc._id, op: 'delete', at: new Date(Date.now() - 10_000) });
    };
    // Another instance re-creates the document between the reconciler's look in MongoDB and its PostgreSQL write.
    const doc = legacyDoc(9_001);
    await inFlightDelete(doc);
    const other = new MongoDualWriter({ collection: coll, postgres: knex, move, metrics });
    const racy = new Proxy(coll, {
      get(target, prop) {
        if (prop === 'findOne') {
          return async (...args: Parameters<Collection<Doc>['findOne']>) => {
            const found = await target.findOne(...args);
            if (!found) await other.replace(doc._id, { name: 're-created meanwhile', balance: 1n });
            return found;
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const reconciler = new MongoDualWriter({ collection: racy, postgres: knex, move, metrics });
    expect(await reconciler.reconcile({ olderThanMs: 0 })).to.deep.include({ pending: 0, failed: 0 });
    expect(await row(doc._id)).to.deep.equal({ name: 're-created meanwhile', deleted: false });
    // Without the race the row is buried, as the delete meant.
    const gone = legacyDoc(9_002);
    await inFlightDelete(gone);
    expect(await writer.reconcile({ olderThanMs: 0 })).to.deep.include({ pending: 0, failed: 0 });
    expect((await row(gone._id)).deleted).to.equal(true);
  });

  it('read cutover routes a stable share of keys to PostgreSQL, growing only', () => {
    let pct = 10;
    const router = new ReadRouter({ flag: 'accounts-read', percent: () => pct });
    const keys = Array.from({ length: 4000 }, (_x, i) => `k${i}`);
    const at10 = new Set(keys.filter((k) => router.usePostgres(k)));
    expect(at10.size).to.be.within(300, 500);
    pct = 50;
    const at50 = new Set(keys.filter((k) => router.usePostgres(k)));
    expect([...at10].every((k) => at50.has(k))).to.equal(true);
    expect(at50.size).to.be.within(1800, 2200);
    expect(new ReadRouter({ flag: 'x', decide: (k) => k === 'k1' }).usePostgres('k1')).to.equal(true);
  });
});

describe('Mongo move cutover gate: the contract validates again and refuses a mismatching table', function () {
  this.timeout(120_000);
  let knex: Knex;
  let client: MongoClient;

  before(async () => {
    knex = knexFor(await freshDatabase('mongo_dualwrite_gate'));
    client = await mongoClient();
    const mdb = client.db(`${MONGO_DB}_gate`);
    await mdb.dropDatabase();
    await mdb.collection<Doc>('gated').insertMany(Array.from({ length: 500 }, (_x, i) => legacyDoc(i)));
  });
  after(async () => {
    await client?.close();
    await knex?.destroy();
  });

  it('expand passes, a drifted row stops the contract with the key, a repair lets it through', async () => {
    const project = tempProject('mongo-gate');
    project.write(
      '2026.01.01T00.00.00.gated.ts',
      `import { defineMigration, mongoToPostgres } from 'umzug-zero-downtime';
       export default defineMigration({ changes: [mongoToPostgres(${JSON.stringify({ ...OPTIONS, collection: 'gated', table: 'gated' })})] });`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, logger: null, contract: { after: 0 }, mongo: { url: FERRETDB_URL, database: `${MONGO_DB}_gate` } });
    try {
      await umzug.up();
      const status = await umzug.status();
      expect(status.migrations[0]!.expand).to.equal('applied');
      const id = (await knex.raw(`SELECT id FROM gated ORDER BY id LIMIT 1`)).rows[0].id as string;
      await knex.raw(`UPDATE gated SET balance = balance + 1 WHERE id = ?`, [id]);
      let err: unknown = null;
      await umzug.up().catch((e) => (err = e));
      const cause = (err as { cause?: unknown })?.cause ?? err;
      expect(cause).to.be.instanceOf(VerificationFailedError);
      expect((cause as Error).message).to.contain(id).and.to.contain('cutover waits');
      expect((await umzug.status()).migrations[0]!.contract).to.not.equal('applied');
      const w = new MongoDualWriter({ collection: client.db(`${MONGO_DB}_gate`).collection<Doc>('gated'), postgres: knex, move: resolveMove({ ...OPTIONS, collection: 'gated', table: 'gated' }) });
      await w.delete(bson.ObjectId.createFromHexString(id));
      expect((await knex.raw(`SELECT count(*)::int AS n FROM gated WHERE _zd_deleted_at IS NOT NULL`)).rows[0].n).to.equal(1);
      await umzug.up();
      expect((await umzug.status()).migrations[0]!.contract).to.equal('applied');
      // contract removed the tombstones
      expect((await knex.raw(`SELECT count(*)::int AS n FROM gated WHERE _zd_deleted_at IS NOT NULL`)).rows[0].n).to.equal(0);
      expect((await knex.raw(`SELECT count(*)::int AS n FROM gated`)).rows[0].n).to.equal(499);
    } finally {
      await umzug.close();
    }
  });
});

import { expect } from 'chai';
import type { Knex } from 'knex';
import type { MongoClient, Collection } from 'mongodb';
import * as bson from 'mongodb';
import { zeroDowntime, type ZeroDowntimeUmzug, type EngineEvent } from '../lib/index.js';
import { runMongoBackfill, MongoBackfillInterrupted } from '../lib/mongo/backfill.js';
import { resolveMove } from '../lib/mongo/move.js';
import { PostgresSink } from '../lib/mongo/sink.js';
import { mongoStateTables, createTargetTable } from '../lib/mongo/sql.js';
import { allColumns } from '../lib/mongo/move.js';
import { Db } from '../lib/db/db.js';
import { freshDatabase, knexFor, testDatabaseName } from './support/pg.js';
import { tempProject } from './support/project.js';
import { MongoClient as Client } from 'mongodb';
import { breakDocument, FERRETDB_URL, mongoClient, oddDocument, ODD_COLUMNS, rng, startPrivateFerret, type PrivateFerret } from './support/mongo.js';

const DOCS = 3_000;
const MONGO_DB = testDatabaseName('mongo_backfill');

type Doc = Record<string, unknown>;

describe('mongoToPostgres: 3000 documents with odd types through `umzug up`', function () {
  this.timeout(300_000);
  let url: string;
  let knex: Knex;
  let client: MongoClient;
  let umzug: ZeroDowntimeUmzug;
  const good = new Map<string, Doc>();
  const bad: { doc: Doc; expect: RegExp }[] = [];
  const events: EngineEvent[] = [];

  before(async () => {
    url = await freshDatabase('mongo_backfill');
    knex = knexFor(url);
    client = await mongoClient();
    const db = client.db(MONGO_DB);
    await db.dropDatabase();
    const coll = db.collection<Doc>('things');
    const r = rng(7);
    let batch: Doc[] = [];
    for (let i = 0; i < DOCS; i++) {
      let doc = oddDocument(i, r);
      if (i % 251 === 0) {
        const broken = breakDocument(doc, bad.length);
        bad.push(broken);
        doc = broken.doc;
      } else good.set((doc._id as bson.ObjectId).toHexString(), doc);
      batch.push(doc);
      if (batch.length === 5000) {
        await coll.insertMany(batch, { ordered: false });
        batch = [];
      }
    }
    if (batch.length > 0) await coll.insertMany(batch, { ordered: false });
    const project = tempProject('mongo-backfill');
    project.write(
      '2026.01.01T00.00.00.move-things.ts',
      `import { defineMigration, mongoToPostgres } from 'umzug-zero-downtime';
       export default defineMigration({ changes: [mongoToPostgres({
         collection: 'things', table: 'things', batchSize: 500,
         columns: ${JSON.stringify(ODD_COLUMNS)},
         unmapped: { column: 'extra' },
       })] });`,
    );
    umzug = zeroDowntime({ knex, cwd: project.dir, logger: null, mongo: { url: FERRETDB_URL, database: MONGO_DB }, onEvent: (e) => events.push(e) });
  });
  after(async () => {
    await umzug?.close();
    await client?.close();
    await knex?.destroy();
  });

  it('expand copies every mappable document with exact values and quarantines every other one with its reason', async () => {
    await umzug.up();
    const rows = (
      await knex.raw(`SELECT id, name, count, big::text AS big, price::text AS price, encode(float8send(ratio), 'hex') AS ratio,
        (extract(epoch FROM at) * 1000)::bigint::text AS at_ms, active, tags::text AS tags, city, blob, meta::text AS meta, extra::text AS extra,
        meta->>'long' AS meta_long, _zd_version::text AS v FROM things WHERE _zd_deleted_at IS NULL`)
    ).rows as Record<string, unknown>[];
    expect(rows.length).to.equal(good.size);
    let checkedValues = 0;
    for (const row of rows) {
      const doc = good.get(row.id as string);
      expect(doc, `row ${row.id} has no source document`).to.not.equal(undefined);
      const d = doc!;
      expect(row.name).to.equal(d.name);
      expect(row.count).to.equal(d.count);
      expect(row.big).to.equal((d.big as bigint).toString());
      const price = d.price;
      expect(row.price).to.equal(typeof price === 'bigint' ? price.toString() : numericOfDouble(price as number));
      const buf = Buffer.alloc(8);
      buf.writeDoubleBE(d.ratio as number);
      expect(row.ratio, `ratio of ${row.id}`).to.equal(buf.toString('hex'));
      expect(row.at_ms).to.equal(String((d.at as Date).getTime()));
      expect(row.active).to.equal(d.active === undefined ? null : d.active);
      expect(JSON.parse(row.tags as string)).to.deep.equal(d.tags);
      expect(row.city).to.equal((d.profile as Doc).city);
      expect((row.blob as Buffer).equals(Buffer.from((d.blob as bson.Binary).buffer))).to.equal(true);
      expect(row.meta_long).to.equal(((d.meta as Doc).long as bigint).toString());
      const meta = JSON.parse(row.meta as string) as Record<string, unknown>;
      expect(meta.ref).to.deep.equal({ $oid: ((d.meta as Doc).ref as bson.ObjectId).toHexString() });
      expect(meta.when).to.deep.equal({ $date: ((d.meta as Doc).when as Date).toISOString() });
      expect(meta.ts).to.deep.equal({ $timestamp: { t: 1_700_000_000 + Number(String(d.name).split('#')[1]), i: Number(String(d.name).split('#')[1]) % 100 } });
      const extra = JSON.parse(row.extra as string) as { profile: { zip: string; geo: { lat: number } }; note?: string };
      expect(extra.profile.zip).to.equal((d.profile as Doc).zip);
      expect(extra.profile.geo.lat).to.equal(((d.profile as Doc).geo as Doc).lat);
      expect(extra.note).to.equal(d.note);
      expect(row.v).to.equal('0');
      checkedValues++;
    }
    expect(checkedValues).to.equal(good.size);

    const q = (await knex.raw(`SELECT doc_id, key, reason, document, source FROM zero_downtime.mongo_quarantine WHERE move = 'public.things'`)).rows as Record<string, string>[];
    expect(q.length).to.equal(bad.length);
    for (const b of bad) {
      const docId = bson.BSON.EJSON.stringify(b.doc._id as never, { relaxed: false });
      const entry = q.find((x) => x.doc_id === docId);
      expect(entry, `document ${docId} is not in quarantine`).to.not.equal(undefined);
      expect(entry!.reason).to.match(b.expect);
      expect(entry!.source).to.equal('backfill');
      // the whole document is kept, exactly
      const back = bson.BSON.EJSON.parse(entry!.document as string, { relaxed: false }) as Doc;
      expect(String(back._id)).to.equal(String(b.doc._id));
      expect(String((back.meta as Doc).long)).to.equal(((b.doc.meta as Doc).long as bigint).toString());
    }
    // status shows the backfill as a finished bar, and the verification's result
    const status = await umzug.status();
    const change = status.migrations[0]!.changes[0]!;
    expect(change.backfill).to.deep.include({ rowsDone: DOCS, done: true });
    expect(change.verify).to.deep.include({ rowsChecked: DOCS, mismatches: 0 });
    expect(events.some((e) => e.type === 'task' && e.kind === 'mongo-backfill' && e.status === 'progress')).to.equal(true);
    expect(events.some((e) => e.type === 'backfill' && e.progress.done === false)).to.equal(true);
    expect(events.filter((e) => e.type === 'task' && e.status === 'done').map((e) => (e as { kind: string }).kind)).to.deep.equal(['mongo-backfill', 'mongo-verify']);
  });

  it('a second `up` skips the finished tasks; `down` archives the table and forgets the progress', async () => {
    events.length = 0;
    await umzug.up();
    expect(events.filter((e) => e.type === 'task' && e.status !== 'skipped')).to.have.length(0);
    await umzug.down();
    const left = (await knex.raw(`SELECT count(*)::int AS n FROM zero_downtime.mongo_backfill`)).rows[0].n as number;
    expect(left).to.equal(0);
    const archived = (await knex.raw(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'zero_downtime' AND tablename LIKE 'zd_mongo_%'`)).rows[0].n as number;
    expect(archived).to.equal(1);
    expect((await knex.raw(`SELECT to_regclass('public.things') AS t`)).rows[0].t).to.equal(null);
  });
});

/** What PostgreSQL numeric prints for a double read from a JavaScript number's shortest text. */
function numericOfDouble(v: number): string {
  const s = String(v);
  if (!/e/i.test(s)) return s;
  const [m, e] = s.split(/e/i) as [string, string];
  const exp = Number(e);
  const neg = m.startsWith('-');
  const [w, f = ''] = m.replace('-', '').split('.') as [string, string?];
  const digits = w + f;
  const point = w.length + exp;
  const out = point <= 0 ? `0.${'0'.repeat(-point)}${digits}` : point >= digits.length ? digits + '0'.repeat(point - digits.length) : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return (neg ? '-' : '') + out;
}

describe('Mongo backfill resumes: stopped half-way, and across a FerretDB restart', function () {
  this.timeout(300_000);
  const N = 6_000;
  let knex: Knex;
  let client: MongoClient;
  let coll: Collection<Doc>;
  // Killed and restarted by the second test: a FerretDB of this describe's own, not the one other files use.
  let ferret: PrivateFerret;
  const move = resolveMove({ collection: 'resume', table: 'resume', columns: [{ name: 'n', type: 'bigint' }, { name: 'payload', type: 'jsonb' }], batchSize: 500 });
  const table = { schema: 'public', name: 'resume' };

  before(async () => {
    const url = await freshDatabase('mongo_backfill_resume');
    knex = knexFor(url);
    ferret = await startPrivateFerret();
    client = new Client(ferret.url, { serverSelectionTimeoutMS: 20_000, useBigInt64: true });
    await client.connect();
    const db = client.db(`${MONGO_DB}_resume`);
    await db.dropDatabase();
    coll = db.collection<Doc>('resume');
    for (let i = 0; i < N; i += 2000) {
      await coll.insertMany(Array.from({ length: 2000 }, (_x, j) => ({ _id: new bson.ObjectId(), n: BigInt(i + j) * 1_000_000_007n, payload: { i: i + j, s: 'x'.repeat(50) } })));
    }
    await knex.raw('CREATE SCHEMA zero_downtime');
    for (const s of mongoStateTables('zero_downtime')) await knex.raw(s.text);
  });
  after(async () => {
    await client?.close();
    await ferret?.remove();
    await knex?.destroy();
  });

  const fresh = async () => {
    await knex.raw('DROP TABLE IF EXISTS resume');
    await knex.raw(createTargetTable(table, allColumns(move), 'id', 'objectid').text);
    await knex.raw(`DELETE FROM zero_downtime.mongo_backfill`);
  };
  const sinkFor = () => new PostgresSink(move, table, 'zero_downtime', bson);

  const expectExact = async () => {
    const rows = (await knex.raw(`SELECT count(*)::int AS n, count(DISTINCT n)::int AS d, sum(n)::text AS s FROM resume WHERE _zd_deleted_at IS NULL`)).rows[0];
    const expectedSum = ((BigInt(N) * BigInt(N - 1)) / 2n) * 1_000_000_007n;
    expect(rows).to.deep.equal({ n: N, d: N, s: expectedSum.toString() });
    const st = (await knex.raw(`SELECT sum(read)::int AS read, bool_and(done) AS done FROM zero_downtime.mongo_backfill WHERE move = 'public.resume'`)).rows[0];
    // every document read exactly once over all runs: progress commits with its batch
    expect(st).to.deep.equal({ read: N, done: true });
  };

  it('a backfill stopped half-way resumes after its last committed batch', async () => {
    await fresh();
    const ac = new AbortController();
    let batches = 0;
    const first = runMongoBackfill({
      db: new Db(knex),
      stateSchema: 'zero_downtime',
      sink: sinkFor(),
      collection: coll,
      bson,
      signal: ac.signal,
      onProgress: () => {
        if (++batches === 7) ac.abort();
      },
    });
    let stopped: unknown = null;
    await first.catch((e) => (stopped = e));
    expect(stopped).to.be.instanceOf(MongoBackfillInterrupted);
    const half = (await knex.raw(`SELECT count(*)::int AS n FROM resume`)).rows[0].n as number;
    expect(half).to.be.within(1, N - 1);
    await runMongoBackfill({ db: new Db(knex), stateSchema: 'zero_downtime', sink: sinkFor(), collection: coll, bson });
    await expectExact();
  });

  it('FerretDB killed and restarted mid-backfill: the backfill waits, reopens its cursor after the last commit, nothing lost or doubled', async () => {
    await fresh();
    let batches = 0;
    let restarted: Promise<void> | null = null;
    const progressAtKill: number[] = [];
    const done = await runMongoBackfill({
      db: new Db(knex),
      stateSchema: 'zero_downtime',
      sink: sinkFor(),
      collection: coll,
      bson,
      batchSize: 300,
      onProgress: (p) => {
        if (++batches === 5 && !restarted) {
          progressAtKill.push(p.read);
          restarted = (async () => {
            await ferret.stop();
            await new Promise((r) => setTimeout(r, 1500));
            await ferret.start();
          })();
        }
      },
    });
    await restarted;
    expect(progressAtKill[0]).to.be.lessThan(N);
    expect(done.read).to.equal(N);
    await expectExact();
  });
});

import { expect } from 'chai';
import { Long, MongoClient, ObjectId } from 'mongodb';
import { testDatabaseName } from './support/pg.js';

export const FERRETDB_URL = process.env.FERRETDB_URL ?? `mongodb://127.0.0.1:${process.env.FERRETDB_PORT ?? '27117'}/`;

describe('FerretDB is there for the Mongo side (smoke)', function () {
  let client: MongoClient;
  before(async () => {
    client = new MongoClient(FERRETDB_URL, { serverSelectionTimeoutMS: 5000, useBigInt64: true });
    await client.connect();
  });
  after(() => client?.close());

  it('speaks the MongoDB wire protocol: insert, find by _id range, Int64 exact', async () => {
    const db = client.db(testDatabaseName('smoke'));
    await db.dropDatabase();
    const coll = db.collection<{ _id: ObjectId; n: bigint; name: string }>('things');
    const docs = Array.from({ length: 100 }, (_v, i) => ({ _id: new ObjectId(), n: 9_007_199_254_740_993n + BigInt(i), name: `t${i}` }));
    await coll.insertMany(docs);
    const sorted = [...docs].sort((a, b) => a._id.toHexString().localeCompare(b._id.toHexString()));
    const page = await coll.find({ _id: { $gt: sorted[49]!._id } }).sort({ _id: 1 }).limit(10).toArray();
    expect(page.map((d) => d.name)).to.deep.equal(sorted.slice(50, 60).map((d) => d.name));
    const one = await coll.findOne({ name: 't0' });
    expect(one!.n).to.equal(9_007_199_254_740_993n);
    expect(Long.fromBigInt(one!.n).toString()).to.equal('9007199254740993');
    const info = await db.admin().command({ buildInfo: 1 });
    expect(String(info.ferretdbVersion ?? info.version)).to.match(/1\.24\.2|\d+\.\d+/);
  });
});

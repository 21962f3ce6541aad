import { expect } from 'chai';
import type { Knex } from 'knex';
import type { MongoClient } from 'mongodb';
import { ObjectId } from 'mongodb';
import { cliProject, jsonLines, jsonOut, type CliProject } from './cli-support.js';
import { freshDatabase, knexFor, testDatabaseName } from './support/pg.js';
import { FERRETDB_URL, mongoClient } from './support/mongo.js';

const MONGO_DB = testDatabaseName('mongo_cli');
const DOCS = 300;

interface StatusJson {
  migrations: {
    file: string;
    expand: string;
    contract: string | null;
    changes: {
      kind: string;
      backfill: { rowsDone: number; done: boolean } | null;
      verify: { rowsChecked: number; mismatches: number } | null;
      copy?: { system: string; items: string; read: number; written: number; quarantined: number };
    }[];
  }[];
}

interface VerifyJson {
  changes: { kind: string; rowsChecked: number; mismatches: number; sampleKeys: string[][]; source?: { system: string; sourceCount: number; targetCount: number; quarantineCount: number } }[];
  mismatches: number;
}

describe('`umzug` bin with a MongoDB move: backfill, status and verify against FerretDB + PostgreSQL', function () {
  this.timeout(120_000);
  let url: string;
  let knex: Knex;
  let client: MongoClient;
  let p: CliProject;
  // The bin reads MONGO_URL in umzug.config.ts: a closed port makes the first `up` stop after the expand steps.
  const mongoUp = { MONGO_URL: FERRETDB_URL };
  const mongoDown = { MONGO_URL: 'mongodb://127.0.0.1:1/' };

  before(async () => {
    url = await freshDatabase('mongo_cli');
    knex = knexFor(url);
    client = await mongoClient();
    const mdb = client.db(MONGO_DB);
    await mdb.dropDatabase();
    const docs: Record<string, unknown>[] = Array.from({ length: DOCS }, (_x, i) => ({ _id: new ObjectId(), name: `person ${i}`, age: i, tags: [i, 'x'] }));
    docs.push({ _id: new ObjectId(), name: 'bad age', age: 'forty' }, { _id: 'a string id', name: 'bad key', age: 1 });
    await mdb.collection('people').insertMany(docs);
    p = cliProject('mongo-cli', { type: 'module' }, url);
    p.write(
      'umzug.config.ts',
      `import type { ZeroDowntimeConfig } from 'umzug-zero-downtime';
const config: ZeroDowntimeConfig = {
  knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 4 } },
  contract: { after: '1h' },
  logger: null,
  backfill: { canary: false },
  monitor: { canary: false },
  mongo: { url: process.env.MONGO_URL ?? '', database: ${JSON.stringify(MONGO_DB)}, clientOptions: { serverSelectionTimeoutMS: 500 } },
};
export default config;
`,
    );
    p.write(
      'migrations/2026.01.01T00.00.00.people.ts',
      `import { defineMigration, mongoToPostgres } from 'umzug-zero-downtime';
export default defineMigration({
  changes: [
    mongoToPostgres({
      collection: 'people',
      table: 'people',
      columns: [
        { name: 'name', type: 'text', required: true },
        { name: 'age', type: 'integer' },
        { name: 'tags', type: 'jsonb' },
      ],
      batchSize: 100,
      verify: { chunkSize: 64 },
    }),
  ],
});
`,
    );
  });
  after(async () => {
    await client?.close();
    await knex?.destroy();
  });

  it('backfill resumes the copy an `up` could not start, with --json events; up finishes; status shows progress, quarantine and validation', async () => {
    const failed = await p.run(['up'], mongoDown);
    expect(failed.code, failed.stdout + failed.stderr).to.not.equal(0);
    expect(failed.stderr).to.match(/127\.0\.0\.1:1/);
    expect((await knex.raw(`SELECT count(*)::int AS n FROM people`)).rows[0].n).to.equal(0);

    const waiting = jsonOut<StatusJson>(await p.run(['status', '--json'], mongoUp));
    expect(waiting.migrations[0]!.expand).to.equal('in-progress');

    const bf = await p.run(['backfill', '--json'], mongoUp);
    expect(bf.code, bf.stdout + bf.stderr).to.equal(0);
    const events = jsonLines<{ event: string; backfill?: string; outcome?: string; rowsDone?: number; done?: boolean }>(bf.stdout, bf.stderr);
    expect(events[0]).to.deep.include({ event: 'backfill-start' });
    expect(events[0]!.backfill).to.match(/people → public\.people/);
    expect(events.filter((e) => e.event === 'backfill-progress').length).to.be.at.least(3);
    expect(events.at(-1)).to.deep.include({ event: 'backfill-end', outcome: 'done', rowsDone: DOCS + 2 });
    expect((await knex.raw(`SELECT count(*)::int AS n FROM people`)).rows[0].n).to.equal(DOCS + 1); // + the tombstone of the bad age
    const nothing = await p.run(['backfill'], mongoUp);
    expect(nothing.stdout).to.match(/No backfill to run/);

    const up = await p.run(['up', '--json'], mongoUp, { spawn: true });
    expect(up.code, up.stdout + up.stderr).to.equal(0);
    expect(jsonOut<{ applied: string[] }>(up).applied).to.deep.equal(['2026.01.01T00.00.00.people.ts:expand']);

    const status = jsonOut<StatusJson>(await p.run(['status', '--json'], mongoUp));
    const m = status.migrations[0]!;
    expect(m.expand).to.equal('applied');
    expect(m.contract).to.equal('waiting');
    expect(m.changes[0]!.backfill).to.deep.include({ rowsDone: DOCS + 2, done: true });
    expect(m.changes[0]!.verify).to.deep.include({ rowsChecked: DOCS + 2, mismatches: 0 });
    expect(m.changes[0]!.copy).to.deep.equal({ system: 'MongoDB', items: 'documents', read: DOCS + 2, written: DOCS, quarantined: 2 });
    const text = await p.run(['status'], mongoUp);
    expect(text.stdout).to.contain(`consistent (${DOCS + 2} rows)`).and.to.contain(`MongoDB: ${DOCS + 2} documents read, ${DOCS} rows written, 2 quarantined`);
  });

  it('verify --json reports 0 mismatches, then a tampered row with its key (exit code 1), and records it for status', async () => {
    const clean = await p.run(['verify', '--json'], mongoUp);
    expect(clean.code, clean.stdout + clean.stderr).to.equal(0);
    const ok = jsonOut<VerifyJson>(clean);
    expect(ok.mismatches).to.equal(0);
    expect(ok.changes[0]).to.deep.include({ kind: 'mongoToPostgres', rowsChecked: DOCS + 2, mismatches: 0 });
    expect(ok.changes[0]!.source).to.deep.include({ system: 'MongoDB', sourceCount: DOCS + 2, targetCount: DOCS, quarantineCount: 2 });

    const id = (await knex.raw(`SELECT id FROM people WHERE _zd_deleted_at IS NULL ORDER BY id OFFSET 123 LIMIT 1`)).rows[0].id as string;
    await knex.raw(`UPDATE people SET age = age + 1 WHERE id = ?`, [id]);
    const bad = await p.run(['verify', '--json'], mongoUp);
    expect(bad.code).to.equal(1);
    const report = jsonOut<VerifyJson>(bad);
    expect(report.mismatches).to.equal(1);
    expect(report.changes[0]!.sampleKeys).to.deep.equal([[id, 'different']]);
    expect(bad.stderr).to.match(/bypasses the dual-writer/);

    const plain = await p.run(['verify'], mongoUp);
    expect(plain.stdout).to.contain(`1 of ${DOCS + 2} rows disagree; sample keys: (${id}, different)`);
    const status = jsonOut<StatusJson>(await p.run(['status', '--json'], mongoUp));
    expect(status.migrations[0]!.changes[0]!.verify).to.deep.include({ mismatches: 1 });
  });
});

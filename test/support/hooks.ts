// Once the run ends, the databases it made (test/support/pg.ts names them per run) are dropped.
import { MongoClient } from 'mongodb';
import { dropRunDatabases, RUN_ID } from './pg.js';
import { FERRETDB_URL } from './mongo.js';

async function dropRunMongoDatabases(): Promise<void> {
  const client = new MongoClient(FERRETDB_URL, { serverSelectionTimeoutMS: 2000 });
  try {
    await client.connect();
    const { databases } = await client.db('admin').admin().listDatabases({ nameOnly: true });
    for (const d of databases) if (d.name.startsWith(`zdt_${RUN_ID}_`)) await client.db(d.name).dropDatabase();
  } catch {
    // FerretDB not running (a run of PostgreSQL-only files): nothing of ours is there
  } finally {
    await client.close().catch(() => undefined);
  }
}

// A global teardown, not a root afterAll: with --parallel a root hook runs after every file in its worker, and would
// drop the databases of the files the other worker is still running. This runs once, in mocha's own process, at the end.
export async function mochaGlobalTeardown(): Promise<void> {
  await dropRunDatabases();
  await dropRunMongoDatabases();
}

// ZDT_TEST_TIMES=<file>: each test file appends "<seconds>\t<file>" there once its tests have run, which is how the
// suite's slow files are found (mocha's own durations leave out the files' before hooks, often most of their time).
const timesFile = process.env.ZDT_TEST_TIMES;
let fileStarted = 0;
export const mochaHooks = timesFile
  ? {
      beforeAll(this: Mocha.Context): void {
        fileStarted = Date.now();
      },
      async afterAll(this: Mocha.Context): Promise<void> {
        const root = this.test?.parent;
        const file = root?.suites.find((s) => s.file)?.file ?? root?.file ?? '?';
        const { appendFileSync } = await import('node:fs');
        const { relative } = await import('node:path');
        appendFileSync(timesFile, `${((Date.now() - fileStarted) / 1000).toFixed(1)}\t${relative(process.cwd(), file)}\n`);
      },
    }
  : {};

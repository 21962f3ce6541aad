// Mocha root hooks: once the run ends, the databases it made (test/support/pg.ts names them per run) are dropped.
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

export const mochaHooks = {
  async afterAll(this: { timeout(ms: number): void }): Promise<void> {
    this.timeout(60_000);
    await dropRunDatabases();
    await dropRunMongoDatabases();
  },
};

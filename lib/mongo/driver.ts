import type * as MongoDriver from 'mongodb';
import type { MongoConnectionConfig } from './connection.js';

export type MongoModule = typeof MongoDriver;

let loading: Promise<MongoModule> | null = null;

/**
 * The `mongodb` driver, loaded on first use: it is an optional peer dependency, so a project without MongoDB never
 * loads it (nothing in lib/ imports it at the top level except as types).
 */
export function loadMongoDriver(): Promise<MongoModule> {
  loading ??= import('mongodb').catch((e: unknown) => {
    loading = null;
    throw new Error(
      `mongoToPostgres needs the \`mongodb\` driver (an optional peer dependency): run \`npm install mongodb\`. (${(e as Error).message})`,
    );
  });
  return loading;
}


export async function connectMongo(config: MongoConnectionConfig): Promise<MongoDriver.MongoClient> {
  const driver = await loadMongoDriver();
  const client = new driver.MongoClient(config.url, { serverSelectionTimeoutMS: 10_000, ...config.clientOptions, useBigInt64: true });
  await client.connect();
  return client;
}

/** Errors worth waiting out: the server restarting, a network blip, a failover. */
export function isTransientMongoError(e: unknown): boolean {
  const err = e as { name?: string; message?: string; errorLabels?: string[]; hasErrorLabel?: (l: string) => boolean } | null;
  if (!err) return false;
  if (/MongoNetwork|MongoServerSelection|MongoNotConnected|MongoPoolCleared|MongoTopologyClosed/.test(err.name ?? '')) return true;
  if (typeof err.hasErrorLabel === 'function' && (err.hasErrorLabel('RetryableWriteError') || err.hasErrorLabel('ResetPool'))) return true;
  return /connection .* closed|ECONNREFUSED|ECONNRESET|socket|Topology is closed|connection pool/i.test(err.message ?? '');
}

/** What a server answers cheaply; decided once per client from `buildInfo`. */
export interface MongoServerTraits {
  /**
   * FerretDB (v1): only a filter that is exactly `{ _id: value }` reaches its storage as a condition; any other filter
   * (a second field, `$in`, `$gt`, `$or`), a sort and a count make it read every document of the collection. MongoDB
   * answers all of those from the `_id` index.
   */
  readonly ferretdb: boolean;
}

const TRAITS = new WeakMap<object, Promise<MongoServerTraits>>();

export function serverTraits(collection: MongoDriver.Collection<MongoDriver.Document>): Promise<MongoServerTraits> {
  const client = collection.db.client;
  let t = TRAITS.get(client);
  if (!t) {
    t = collection.db
      .admin()
      .command({ buildInfo: 1 })
      .then((b) => ({ ferretdb: typeof b.ferretdbVersion === 'string' }));
    // A failed look-up (server away) is asked again next time instead of being remembered.
    t.catch(() => TRAITS.delete(client));
    TRAITS.set(client, t);
  }
  return t;
}

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

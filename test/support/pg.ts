import pg from 'pg';
import knexFactory, { type Knex } from 'knex';
import { Db } from '../../lib/db/db.js';

export const PG_BASE = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';

export function urlFor(database: string): string {
  return `${PG_BASE}/${database}`;
}

/**
 * This run's own prefix for every database it makes (PostgreSQL and FerretDB alike), so two `npm test` on one server
 * never drop each other's databases. Inherited by the processes a test spawns; ZDT_RUN sets it by hand.
 */
export const RUN_ID = (process.env.ZDT_RUN ??= Math.random().toString(36).slice(2, 8));

/** A database name of this run's own: `zdt_<run>_<name>`, at most 63 bytes (PostgreSQL truncates longer ones). */
export function testDatabaseName(name: string): string {
  return `zdt_${RUN_ID}_${name.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}`.slice(0, 63);
}

/** Drops every database this run made (the root hook calls it once the run ends). */
export async function dropRunDatabases(): Promise<void> {
  const admin = new pg.Client({ connectionString: urlFor('postgres') });
  await admin.connect();
  try {
    const r = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [`zdt_${RUN_ID}_`]);
    for (const { datname } of r.rows) await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(datname)} WITH (FORCE)`).catch(() => undefined);
  } finally {
    await admin.end();
  }
}

/**
 * A database of the test file's own, dropped and made anew, so tests cannot leak into each other.
 * The name is derived from the file name by the caller.
 */
export async function freshDatabase(name: string): Promise<string> {
  const database = testDatabaseName(name);
  const admin = new pg.Client({ connectionString: urlFor('postgres') });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
  } finally {
    await admin.end();
  }
  return urlFor(database);
}

export function knexFor(url: string, poolMax = 10): Knex {
  return knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: poolMax } });
}

/** A fresh database of the test file's own (see freshDatabase), a Knex pool on it and the engine's Db over that pool. */
export async function openTestDatabase(name: string, poolMax?: number): Promise<{ url: string; knex: Knex; db: Db }> {
  const url = await freshDatabase(name);
  const knex = knexFor(url, poolMax);
  return { url, knex, db: new Db(knex) };
}

/**
 * For the enclosing describe(): a fresh database of its own (openTestDatabase) before its tests, `setup` run on it,
 * its pool closed after. The returned object's fields are set once that before hook has run.
 */
export function useTestDatabase(name: string, setup?: (t: { url: string; knex: Knex; db: Db }) => Promise<void>): { url: string; knex: Knex; db: Db } {
  const t = {} as { url: string; knex: Knex; db: Db };
  before(async () => {
    Object.assign(t, await openTestDatabase(name));
    await setup?.(t);
  });
  after(() => t.knex?.destroy());
  return t;
}

export async function pgClient(url: string, applicationName = 'zdt-test'): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: applicationName });
  await c.connect();
  return c;
}

const t0 = performance.now();
const trace = (level: string) => (m: unknown) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(2)}s ${level}] ${typeof m === 'string' ? m : JSON.stringify(m)}\n`);
/** The engine's log, dropped; with ZDT_TRACE=1, printed with the time since the file started (to see where a test spends it). */
export const silentLogger = process.env.ZDT_TRACE
  ? { info: trace('info'), warn: trace('warn'), error: trace('error'), debug: trace('debug') }
  : { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };

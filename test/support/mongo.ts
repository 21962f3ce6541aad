import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { freePort } from './throwaway-cluster.js';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Binary, BSONRegExp, Long, MongoClient, ObjectId, Timestamp } from 'mongodb';

export const FERRETDB_URL = process.env.FERRETDB_URL ?? `mongodb://127.0.0.1:${process.env.FERRETDB_PORT ?? '27117'}/`;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export async function mongoClient(): Promise<MongoClient> {
  const c = new MongoClient(FERRETDB_URL, { serverSelectionTimeoutMS: 20_000, useBigInt64: true });
  await c.connect();
  return c;
}

/** A FerretDB of one test's own: its port, its data; stop() kills it, start() brings it back on the same data. */
export interface PrivateFerret {
  readonly url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  remove(): Promise<void>;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/**
 * A FerretDB process of the calling test's own, from the binary scripts/ferretdb-build.sh caches, on a free port
 * with its data in a temporary folder: a test that kills FerretDB kills only this one, never the one the other
 * test files (of this run, or of another run on the same machine) are using.
 */
export async function startPrivateFerret(): Promise<PrivateFerret> {
  const bin = execFileSync('bash', [path.join(ROOT, 'scripts/ferretdb-build.sh')], { encoding: 'utf8' }).trim().split('\n').at(-1)!;
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zdt-ferret-'));
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    child = spawn(bin, ['--handler=sqlite', `--sqlite-url=file:${dir}/`, `--listen-addr=127.0.0.1:${port}`, '--state-dir=-', '--telemetry=disable', '--debug-addr=-', '--log-level=error'], {
      stdio: 'ignore',
    });
    for (let i = 0; i < 200 && !(await portOpen(port)); i++) await new Promise((r) => setTimeout(r, 50));
    if (!(await portOpen(port))) throw new Error(`a private FerretDB (${bin}) did not open 127.0.0.1:${port} within 10 s`);
  };
  const stop = async (): Promise<void> => {
    const c = child as ChildProcess | null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  };
  await start();
  return {
    url: `mongodb://127.0.0.1:${port}/`,
    stop,
    start,
    async remove() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A small deterministic generator, so a failing case can be re-run. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CITIES = ['Zürich', 'São Paulo', 'Łódź', '東京', 'O"Brien\'s', 'back\\slash', 'tab\there', '😀 city', ''];

/**
 * A document with odd types (what FerretDB can store: no Decimal128, NaN or MinKey): Int64 above 2^53, Int32, doubles
 * with long fractions, dates before 1970 and after 9999, nested documents and arrays with ObjectIds, dates, Int64,
 * Timestamps and regexes inside, Binary, missing and null fields, fields no column names (kept in `extra`).
 */
export function oddDocument(i: number, r: () => number): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    _id: new ObjectId(),
    name: `${CITIES[i % CITIES.length]} #${i}`,
    count: Math.floor(r() * 2 ** 31) - 2 ** 30,
    big: i % 5 === 0 ? Long.fromString('9223372036854775807').toBigInt() - BigInt(i) : BigInt(Math.floor(r() * 2 ** 52)) * 1024n + BigInt(i),
    price: i % 3 === 0 ? r() * 1e6 : i % 3 === 1 ? BigInt(i % 90) * 100000000000000007n : i / 8,
    ratio: [0.1, -0.5, 1e300, 5e-324, 2 ** -1074 * 3, r()][i % 6],
    at: new Date(i % 11 === 0 ? -2208988800000 - i * 86_400_000 : i % 13 === 0 ? 253402300800000 + i * 1000 : 1_600_000_000_000 + i * 60_000 + (i % 1000)),
    active: i % 7 === 0 ? null : i % 7 === 1 ? undefined : i % 2 === 0,
    tags: i % 4 === 0 ? [] : ['a', i, { nested: [i, null, 'x'] }],
    profile: { city: CITIES[(i * 7) % CITIES.length], zip: String(10000 + i), geo: { lat: r() * 180 - 90, lng: r() * 360 - 180 } },
    blob: new Binary(Buffer.from([i & 255, (i >> 8) & 255, 0, 255])),
    meta: {
      long: 9007199254740993n + BigInt(i),
      ref: new ObjectId(),
      when: new Date(1_700_000_000_000 + i),
      ts: new Timestamp({ t: 1_700_000_000 + i, i: i % 100 }),
      re: new BSONRegExp(`^x${i}`, 'i'),
      deep: { a: [1, { b: [2, 3, { c: 'd' }] }] },
    },
  };
  if (doc.active === undefined) delete doc.active;
  if (i % 9 === 0) doc.note = `only some documents have a note (${i})`;
  return doc;
}

/** Breaks a document in one of the ways the move must quarantine, and says which. */
export function breakDocument(doc: Record<string, unknown>, kind: number): { doc: Record<string, unknown>; expect: RegExp } {
  switch (kind % 6) {
    case 0:
      return { doc: { ...doc, name: 'nul \u0000 inside' }, expect: /name: the string contains a NUL character/ };
    case 1:
      return { doc: { ...doc, count: 'not a number' }, expect: /count: expected an integer \(integer\), found a string/ };
    case 2:
      return { doc: { ...doc, _id: `string-id-${String(doc._id)}` }, expect: /_id: expected an ObjectId, found a string/ };
    case 3:
      return { doc: { ...doc, count: 2 ** 40 }, expect: /count: 1099511627776 is out of range for integer/ };
    case 4: {
      const { name: _n, ...rest } = doc;
      return { doc: rest, expect: /name: required, but missing/ };
    }
    default:
      return { doc: { ...doc, active: 'yes' }, expect: /active: expected a Boolean, found a string/ };
  }
}

export const ODD_COLUMNS = [
  { name: 'name', type: 'text', required: true },
  { name: 'count', type: 'integer' },
  { name: 'big', type: 'bigint' },
  { name: 'price', type: 'numeric' },
  { name: 'ratio', type: 'double precision' },
  { name: 'at', type: 'timestamptz' },
  { name: 'active', type: 'boolean' },
  { name: 'tags', type: 'jsonb' },
  { name: 'city', type: 'text', from: 'profile.city' },
  { name: 'blob', type: 'bytea' },
  { name: 'meta', type: 'jsonb' },
] as const;

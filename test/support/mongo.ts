import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

/** Where scripts/services.sh keeps the FerretDB it started on this port (data, log, pid): shared by every checkout. */
function ferretStateDir(): string {
  const port = process.env.FERRETDB_PORT ?? '27117';
  const cache = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  return process.env.FERRETDB_STATE_DIR ?? path.join(cache, 'umzug-zero-downtime', `ferretdb-run-${port}`);
}

/** Stops FerretDB (SIGKILL to the pid scripts/services.sh recorded) and waits until the process is gone. */
export async function stopFerret(): Promise<void> {
  const pid = Number(readFileSync(path.join(ferretStateDir(), 'ferretdb.pid'), 'utf8').trim());
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
      await new Promise((r) => setTimeout(r, 50));
    } catch {
      return;
    }
  }
}

/** Starts FerretDB again the way the test setup does (scripts/services.sh starts it when its port is closed). */
export function startFerret(): void {
  execFileSync('bash', [path.join(ROOT, 'scripts/services.sh')], { stdio: 'pipe' });
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

import { binaryOf, bsonKind, describeBson, int64Of, type BsonLike } from './bson.js';
import { doubleDecimal, doubleText, plainDecimal, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN } from './decimal.js';
import { fromBson, jsonbText, compactJson, MapError, type StringCheck } from './json.js';

/**
 * The PostgreSQL types a document field can be moved into, each with explicit rules for which BSON types it takes.
 * `numeric` has no precision/scale on purpose: a typmod would round values silently; add a CHECK later instead.
 */
export type MongoColumnType =
  | 'text'
  | 'objectid'
  | 'uuid'
  | 'integer'
  | 'bigint'
  | 'numeric'
  | 'double precision'
  | 'boolean'
  | 'timestamptz'
  | 'jsonb'
  | 'bytea';

export const COLUMN_TYPES: readonly MongoColumnType[] = ['text', 'objectid', 'uuid', 'integer', 'bigint', 'numeric', 'double precision', 'boolean', 'timestamptz', 'jsonb', 'bytea'];

/** The key column's types: `_id` values of another BSON type are quarantined. */
export type MongoKeyType = 'objectid' | 'text' | 'bigint' | 'uuid';

/** The SQL type of the column (ObjectIds as their 24 hex digits, compared byte-wise like MongoDB compares them). */
export function sqlType(t: MongoColumnType): string {
  switch (t) {
    case 'objectid':
      return 'text COLLATE "C"';
    case 'text':
      return 'text';
    default:
      return t;
  }
}

/** A converted value: the parameter sent to PostgreSQL and the text both sides hash for the checksum. */
export interface Cell {
  readonly param: string | Buffer | null;
  readonly piece: string | null;
}

const NULL_CELL: Cell = { param: null, piece: null };

/** Milliseconds of 4714-11-24 BC 00:00 UTC, the first instant PostgreSQL's timestamptz can hold. */
const PG_MIN_TIMESTAMP_MS = -210866803200000;

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

function fail(where: string, expected: string, v: unknown): never {
  throw new MapError(`${where}: expected ${expected}, found ${describeBson(v)}`);
}

/** Converts one value for a column of type `t`, or throws MapError with the reason. `v` undefined means missing. */
export function convert(t: MongoColumnType, v: unknown, where: string, checkString: StringCheck): Cell {
  const k = bsonKind(v);
  if (t === 'jsonb') {
    if (k === 'missing') return NULL_CELL;
    const node = fromBson(v, checkString, where);
    return { param: compactJson(node), piece: jsonbText(node) };
  }
  if (k === 'missing' || k === 'null' || k === 'undefined') return NULL_CELL;
  switch (t) {
    case 'text': {
      if (k === 'string' || k === 'symbol') {
        const s = checkString(String(v), where);
        return { param: s, piece: s };
      }
      return fail(where, 'a string', v);
    }
    case 'objectid': {
      if (k !== 'objectId') return fail(where, 'an ObjectId', v);
      const hex = (v as BsonLike).toString('hex');
      return { param: hex, piece: hex };
    }
    case 'uuid': {
      let hex: string | null = null;
      if (k === 'binary') {
        const { bytes, subType } = binaryOf(v);
        if ((subType === 4 || subType === 3) && bytes.length === 16) hex = bytes.toString('hex');
      } else if (k === 'string' && UUID_RE.test(v as string)) hex = (v as string).replace(/-/g, '').toLowerCase();
      if (!hex) return fail(where, 'a UUID (Binary subtype 4 or a UUID string)', v);
      const s = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
      return { param: s, piece: s };
    }
    case 'integer':
    case 'bigint': {
      const [lo, hi] = t === 'integer' ? [INT32_MIN, INT32_MAX] : [INT64_MIN, INT64_MAX];
      let b: bigint | null = null;
      if (k === 'int32' || k === 'int64') b = k === 'int64' ? int64Of(v) : BigInt(Number(v));
      else if (k === 'double') {
        const n = Number(v);
        if (Number.isInteger(n) && !Object.is(n, -0)) b = BigInt(n);
      }
      if (b === null) return fail(where, `an integer (${t})`, v);
      if (b < lo || b > hi) throw new MapError(`${where}: ${b} is out of range for ${t}`);
      const s = b.toString();
      return { param: s, piece: s };
    }
    case 'numeric': {
      let s: string | null = null;
      if (k === 'int32') s = String(Number(v));
      else if (k === 'int64') s = int64Of(v).toString();
      else if (k === 'double') {
        const n = Number(v);
        s = Number.isNaN(n) ? 'NaN' : n === Infinity ? 'Infinity' : n === -Infinity ? '-Infinity' : doubleDecimal(n);
      } else if (k === 'decimal128') {
        const text = (v as BsonLike).toString();
        s = /^-?Inf/i.test(text) ? (text.startsWith('-') ? '-Infinity' : 'Infinity') : /NaN/i.test(text) ? 'NaN' : plainDecimal(text);
      }
      if (s === null) return fail(where, 'a number (Decimal128, Int32, Int64 or Double)', v);
      return { param: s, piece: s };
    }
    case 'double precision': {
      let n: number | null = null;
      if (k === 'double' || k === 'int32') n = Number(v);
      else if (k === 'int64') {
        const b = int64Of(v);
        // Only integers a double holds exactly; a larger Int64 would be rounded.
        if (b >= -(2n ** 53n) && b <= 2n ** 53n) n = Number(b);
        else throw new MapError(`${where}: Int64 ${b} cannot be stored exactly as double precision (use bigint or numeric)`);
      }
      if (n === null) return fail(where, 'a Double, Int32 or Int64', v);
      const buf = Buffer.alloc(8);
      buf.writeDoubleBE(n);
      return { param: doubleText(n), piece: buf.toString('hex') };
    }
    case 'boolean': {
      if (k !== 'boolean') return fail(where, 'a Boolean', v);
      const s = v ? 'true' : 'false';
      return { param: s, piece: s };
    }
    case 'timestamptz': {
      if (k !== 'date') return fail(where, 'a Date', v);
      const ms = (v as Date).getTime();
      if (Number.isNaN(ms)) throw new MapError(`${where}: an invalid Date`);
      if (ms < PG_MIN_TIMESTAMP_MS) throw new MapError(`${where}: ${new Date(ms).toISOString()} is before the earliest timestamptz (4714-11-24 BC)`);
      return { param: timestamptzText(ms), piece: (BigInt(ms) * 1000n).toString() };
    }
    case 'bytea': {
      if (k !== 'binary') return fail(where, 'Binary data', v);
      const { bytes, subType } = binaryOf(v);
      if (subType !== 0 && subType !== 2) {
        throw new MapError(`${where}: Binary subtype ${subType} would lose its subtype in bytea (map it to jsonb, or to uuid for subtype 4)`);
      }
      return { param: Buffer.from(bytes), piece: bytes.toString('hex') };
    }
  }
}

/** Timestamp text PostgreSQL reads in any DateStyle, years beyond 9999 and before year 1 (BC) included. */
export function timestamptzText(ms: number): string {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const rest = `${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}+00`;
  return y >= 1 ? `${p(y, 4)}-${rest}` : `${p(1 - y, 4)}-${rest} BC`;
}

/** The SQL expression, over column `c` (already quoted), whose text equals the JavaScript side's `piece`. */
export function pieceSql(t: MongoColumnType, c: string): string {
  switch (t) {
    case 'double precision':
      return `encode(float8send(${c}), 'hex')`;
    case 'bytea':
      return `encode(${c}, 'hex')`;
    case 'timestamptz':
      return `CASE WHEN isfinite(${c}) THEN ((extract(epoch FROM ${c}) * 1000000)::numeric(30,0))::text ELSE ${c}::text END`;
    default:
      return `${c}::text`;
  }
}

export function isKeyType(t: string): t is MongoKeyType {
  return t === 'objectid' || t === 'text' || t === 'bigint' || t === 'uuid';
}

import type * as MongoDriver from 'mongodb';
import { binaryOf, bsonKind, describeBson, int64Of, type BsonLike } from './bson.js';
import { doubleDecimal, plainDecimal, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN } from './decimal.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';

/**
 * A JSON value whose numbers keep their exact decimal text: JavaScript numbers cannot hold an Int64 or a Decimal128,
 * PostgreSQL's jsonb (numeric inside) can.
 */
export type JNode = null | boolean | string | JNum | readonly JNode[] | JObj;
export interface JNum {
  readonly t: 'num';
  readonly v: string;
}
export interface JObj {
  readonly t: 'obj';
  readonly e: readonly (readonly [string, JNode])[];
}

export class MapError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'mongo-map';
  override name = 'MapError';
}

const num = (v: string): JNum => ({ t: 'num', v });
const obj = (e: (readonly [string, JNode])[]): JObj => ({ t: 'obj', e });
const isNum = (n: JNode): n is JNum => typeof n === 'object' && n !== null && !Array.isArray(n) && (n as JNum).t === 'num';
const isObj = (n: JNode): n is JObj => typeof n === 'object' && n !== null && !Array.isArray(n) && (n as JObj).t === 'obj';

export type StringCheck = (s: string, where: string) => string;

/**
 * A BSON value as jsonb: numbers as JSON numbers with their exact digits (Int64 and Decimal128 included), strings as
 * strings, embedded documents and arrays as they are; the other BSON types in MongoDB Extended JSON v2 form
 * (`{"$oid": …}`, `{"$date": …}`, `{"$binary": …}`), which toBson() reads back. Values JSON numbers cannot carry
 * exactly (NaN, ±Infinity, -0) keep their Extended JSON form too.
 */
export function fromBson(v: unknown, checkString: StringCheck, where: string): JNode {
  const k = bsonKind(v);
  switch (k) {
    case 'missing':
    case 'null':
    case 'undefined':
      return null;
    case 'string':
      return checkString(v as string, where);
    case 'boolean':
      return v as boolean;
    case 'int32':
      return num(String(Number(v as number)));
    case 'double': {
      const n = Number(typeof v === 'number' ? v : (v as { valueOf(): number }).valueOf());
      const d = Object.is(n, -0) ? null : doubleDecimal(n);
      return d === null ? obj([['$numberDouble', Object.is(n, -0) ? '-0.0' : String(n)]]) : num(d);
    }
    case 'int64':
      return num(int64Of(v).toString());
    case 'decimal128': {
      const text = (v as BsonLike).toString();
      const d = plainDecimal(text);
      return d === null || (text.trim().startsWith('-') && !d.startsWith('-')) ? obj([['$numberDecimal', text]]) : num(d);
    }
    case 'date': {
      const ms = (v as Date).getTime();
      if (Number.isNaN(ms)) throw new MapError(`${where}: an invalid Date`);
      const d = new Date(ms);
      const y = d.getUTCFullYear();
      return obj([['$date', y >= 1970 && y <= 9999 ? d.toISOString() : obj([['$numberLong', String(ms)]])]]);
    }
    case 'objectId':
      return obj([['$oid', (v as BsonLike).toString('hex')]]);
    case 'binary': {
      const { bytes, subType } = binaryOf(v);
      return obj([['$binary', obj([['base64', bytes.toString('base64')], ['subType', subType.toString(16).padStart(2, '0')]])]]);
    }
    case 'regex': {
      const r = v as { source?: string; flags?: string; pattern?: string; options?: string };
      return obj([['$regularExpression', obj([['pattern', checkString(r.pattern ?? r.source ?? '', where)], ['options', r.options ?? r.flags ?? '']])]]);
    }
    case 'timestamp': {
      const t = v as { t?: number; i?: number; high?: number; low?: number };
      return obj([['$timestamp', obj([['t', num(String(t.t ?? t.high ?? 0))], ['i', num(String(t.i ?? t.low ?? 0))]])]]);
    }
    case 'minKey':
      return obj([['$minKey', num('1')]]);
    case 'maxKey':
      return obj([['$maxKey', num('1')]]);
    case 'code': {
      const c = v as { code: string; scope?: Record<string, unknown> | null };
      const e: [string, JNode][] = [['$code', checkString(c.code, where)]];
      if (c.scope) e.push(['$scope', fromBson(c.scope, checkString, `${where}.$scope`)]);
      return obj(e);
    }
    case 'symbol':
      return obj([['$symbol', checkString((v as BsonLike).toString(), where)]]);
    case 'dbref': {
      const r = v as { collection: string; oid: unknown; db?: string };
      const e: [string, JNode][] = [['$ref', r.collection], ['$id', fromBson(r.oid, checkString, `${where}.$id`)]];
      if (r.db) e.push(['$db', r.db]);
      return obj(e);
    }
    case 'array':
      return (v as unknown[]).map((x, i) => fromBson(x, checkString, `${where}[${i}]`));
    case 'object':
      return obj(
        Object.entries(v as Record<string, unknown>)
          .filter(([, x]) => x !== undefined)
          .map(([key, x]) => [checkString(key, `${where} (a field name)`), fromBson(x, checkString, `${where}.${key}`)] as const),
      );
    default:
      throw new MapError(`${where}: ${describeBson(v)} has no JSON form`);
  }
}

/** Compact JSON text, to send to PostgreSQL. */
export function compactJson(n: JNode): string {
  if (n === null) return 'null';
  if (typeof n === 'boolean') return n ? 'true' : 'false';
  if (typeof n === 'string') return JSON.stringify(n);
  if (Array.isArray(n)) return `[${n.map(compactJson).join(',')}]`;
  if (isNum(n)) return n.v;
  return `{${(n as JObj).e.map(([k, x]) => `${JSON.stringify(k)}:${compactJson(x)}`).join(',')}}`;
}

/**
 * The text PostgreSQL prints for this value as jsonb (`value::text`): object keys ordered shorter first, then by
 * bytes, a repeated key keeping its last value, `", "` and `": "` separators, numbers as numeric prints them. Used so
 * a checksum over the jsonb text of a row is computed identically on both sides.
 */
export function jsonbText(n: JNode): string {
  if (n === null) return 'null';
  if (typeof n === 'boolean') return n ? 'true' : 'false';
  if (typeof n === 'string') return JSON.stringify(n);
  if (Array.isArray(n)) return `[${n.map(jsonbText).join(', ')}]`;
  if (isNum(n)) return plainDecimal(n.v) ?? n.v;
  const last = new Map<string, JNode>();
  for (const [k, x] of (n as JObj).e) last.set(k, x);
  const keys = [...last.keys()].sort(jsonbKeyOrder);
  return `{${keys.map((k) => `${JSON.stringify(k)}: ${jsonbText(last.get(k)!)}`).join(', ')}}`;
}

function jsonbKeyOrder(a: string, b: string): number {
  const ba = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  return ba.length !== bb.length ? ba.length - bb.length : Buffer.compare(ba, bb);
}

/** JSON text to JNode, keeping every number's digits (JSON.parse would round an Int64 above 2^53). */
export function parseJson(text: string): JNode {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const fail = (what: string): never => {
    throw new SyntaxError(`JSON: ${what} at position ${i}`);
  };
  const value = (): JNode => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const e: [string, JNode][] = [];
      ws();
      if (text[i] === '}') return i++, obj(e);
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const k = str();
        ws();
        if (text[i++] !== ':') fail('expected ":"');
        e.push([k, value()]);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i++] === '}') return obj(e);
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const a: JNode[] = [];
      ws();
      if (text[i] === ']') return i++, a;
      for (;;) {
        a.push(value());
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i++] === ']') return a;
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return str();
    if (text.startsWith('true', i)) return (i += 4), true;
    if (text.startsWith('false', i)) return (i += 5), false;
    if (text.startsWith('null', i)) return (i += 4), null;
    const m = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 400_000));
    if (!m) return fail('unexpected character');
    i += m[0].length;
    return num(m[0]);
  };
  const str = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const out = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return out;
}

/**
 * JNode back to a BSON value, for the reverse direction (PostgreSQL → MongoDB). A number becomes Int32 if it is an
 * integer in Int32 range, Int64 (bigint) if in Int64 range, a Double if its digits read back as the same double, else
 * a Decimal128: the value is kept exactly, the BSON number type may differ from the original (jsonb has one number
 * type). Extended JSON forms become their BSON types.
 */
export function toBson(n: JNode, bson: typeof MongoDriver): unknown {
  if (n === null || typeof n === 'boolean' || typeof n === 'string') return n;
  if (Array.isArray(n)) return n.map((x) => toBson(x, bson));
  if (isNum(n)) return numberToBson(n.v, bson);
  const o = n as JObj;
  const first = o.e[0]?.[0];
  if (first?.startsWith('$')) {
    const ext = extendedToBson(o, bson);
    if (ext !== NOT_EXTENDED) return ext;
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of o.e) out[k] = toBson(x, bson);
  return out;
}

export function numberToBson(text: string, bson: typeof MongoDriver): unknown {
  const plain = plainDecimal(text) ?? text;
  if (/^-?\d+$/.test(plain)) {
    const b = BigInt(plain);
    if (b >= INT32_MIN && b <= INT32_MAX) return Number(b);
    if (b >= INT64_MIN && b <= INT64_MAX) return b;
  }
  const d = Number(plain);
  if (Number.isFinite(d) && doubleDecimal(d) === plain) return new bson.Double(d);
  return bson.Decimal128.fromString(plain);
}

const NOT_EXTENDED = Symbol('not extended json');

function extendedToBson(o: JObj, bson: typeof MongoDriver): unknown {
  const m = new Map(o.e);
  const s = (k: string): string | undefined => {
    const x = m.get(k);
    return typeof x === 'string' ? x : isNum(x ?? null) ? (x as JNum).v : undefined;
  };
  const sub = (k: string): Map<string, JNode> | undefined => {
    const x = m.get(k);
    return x && isObj(x) ? new Map(x.e) : undefined;
  };
  const keys = [...m.keys()].sort().join(',');
  switch (keys) {
    case '$oid':
      return bson.ObjectId.createFromHexString(s('$oid')!);
    case '$date': {
      const d = m.get('$date');
      if (typeof d === 'string') return new Date(d);
      const inner = d && isObj(d) ? new Map(d.e).get('$numberLong') : undefined;
      return new Date(Number(typeof inner === 'string' ? inner : 0));
    }
    case '$numberDouble':
      return new bson.Double(Number(s('$numberDouble')));
    case '$numberDecimal':
      return bson.Decimal128.fromString(s('$numberDecimal')!);
    case '$numberLong':
      return BigInt(s('$numberLong')!);
    case '$binary': {
      const b = sub('$binary');
      const b64 = b?.get('base64');
      const st = b?.get('subType');
      return new bson.Binary(Buffer.from(typeof b64 === 'string' ? b64 : '', 'base64'), parseInt(typeof st === 'string' ? st : '0', 16));
    }
    case '$regularExpression': {
      const r = sub('$regularExpression');
      const p = r?.get('pattern');
      const f = r?.get('options');
      return new bson.BSONRegExp(typeof p === 'string' ? p : '', typeof f === 'string' ? f : '');
    }
    case '$timestamp': {
      const t = sub('$timestamp');
      const tv = t?.get('t');
      const iv = t?.get('i');
      return new bson.Timestamp({ t: Number(tv && isNum(tv) ? tv.v : 0), i: Number(iv && isNum(iv) ? iv.v : 0) });
    }
    case '$minKey':
      return new bson.MinKey();
    case '$maxKey':
      return new bson.MaxKey();
    case '$code':
      return new bson.Code(s('$code')!);
    case '$code,$scope':
      return new bson.Code(s('$code')!, toBson(m.get('$scope')!, bson) as Record<string, unknown>);
    case '$symbol':
      return new bson.BSONSymbol(s('$symbol')!);
    case '$id,$ref':
    case '$db,$id,$ref':
      return new bson.DBRef(s('$ref')!, toBson(m.get('$id')!, bson) as MongoDriver.ObjectId, s('$db'));
    default:
      return NOT_EXTENDED;
  }
}

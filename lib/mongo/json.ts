import { binaryOf, bsonKind, describeBson, int64Of, type BsonLike } from './bson.js';
import { doubleDecimal, plainDecimal } from './decimal.js';
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
export const isNum = (n: JNode): n is JNum => typeof n === 'object' && n !== null && !Array.isArray(n) && (n as JNum).t === 'num';
export const isObj = (n: JNode): n is JObj => typeof n === 'object' && n !== null && !Array.isArray(n) && (n as JObj).t === 'obj';

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

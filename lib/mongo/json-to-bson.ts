import type * as MongoDriver from 'mongodb';
import { isNum, isObj, type JObj, type JNode, type JNum } from './json.js';
import { doubleDecimal, plainDecimal, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN } from './decimal.js';

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

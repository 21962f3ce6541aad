/**
 * What a value read by the `mongodb` driver is, told by shape (`_bsontype`), never by instanceof: the application
 * may load its own copy of the driver (and so of `bson`), whose classes are not ours.
 */
export type BsonKind =
  | 'missing'
  | 'null'
  | 'undefined'
  | 'string'
  | 'double'
  | 'int32'
  | 'int64'
  | 'decimal128'
  | 'boolean'
  | 'date'
  | 'objectId'
  | 'binary'
  | 'regex'
  | 'timestamp'
  | 'minKey'
  | 'maxKey'
  | 'code'
  | 'symbol'
  | 'dbref'
  | 'array'
  | 'object'
  | 'unknown';

export interface BsonLike {
  readonly _bsontype?: string;
  toString(format?: string): string;
}

export function bsonKind(v: unknown): BsonKind {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return 'string';
    case 'number':
      // The driver promotes Int32 and Double to plain numbers; an integral one read as a number is indistinguishable.
      return Number.isInteger(v) && !Object.is(v, -0) && Math.abs(v) <= 0x7fffffff ? 'int32' : 'double';
    case 'bigint':
      return 'int64';
    case 'boolean':
      return 'boolean';
    case 'object':
      break;
    default:
      return 'unknown';
  }
  if (Array.isArray(v)) return 'array';
  if (v instanceof Date || Object.prototype.toString.call(v) === '[object Date]') return 'date';
  if (v instanceof RegExp || Object.prototype.toString.call(v) === '[object RegExp]') return 'regex';
  const t = (v as BsonLike)._bsontype;
  switch (t) {
    case undefined:
      return Buffer.isBuffer(v) ? 'binary' : 'object';
    case 'ObjectId':
    case 'ObjectID':
      return 'objectId';
    case 'Decimal128':
      return 'decimal128';
    case 'Long':
      return 'int64';
    case 'Int32':
      return 'int32';
    case 'Double':
      return 'double';
    case 'Binary':
      return 'binary';
    case 'BSONRegExp':
      return 'regex';
    case 'Timestamp':
      return 'timestamp';
    case 'MinKey':
      return 'minKey';
    case 'MaxKey':
      return 'maxKey';
    case 'Code':
      return 'code';
    case 'BSONSymbol':
    case 'Symbol':
      return 'symbol';
    case 'DBRef':
      return 'dbref';
    default:
      return 'unknown';
  }
}

/** Plain words for a reason: "Int64 9007199254740993", "Decimal128 1.50", "a string". */
export function describeBson(v: unknown): string {
  const k = bsonKind(v);
  switch (k) {
    case 'missing':
      return 'missing';
    case 'null':
      return 'null';
    case 'string':
      return `a string (${JSON.stringify(String(v).slice(0, 40))})`;
    case 'array':
      return `an array of ${(v as unknown[]).length}`;
    case 'object':
      return 'an embedded document';
    default:
      return `${KIND_WORDS[k] ?? k} ${safeText(v)}`.trim();
  }
}

const KIND_WORDS: Partial<Record<BsonKind, string>> = {
  double: 'Double',
  int32: 'Int32',
  int64: 'Int64',
  decimal128: 'Decimal128',
  boolean: 'Boolean',
  date: 'Date',
  objectId: 'ObjectId',
  binary: 'Binary',
  regex: 'Regex',
  timestamp: 'Timestamp',
  minKey: 'MinKey',
  maxKey: 'MaxKey',
  code: 'Code',
  symbol: 'Symbol',
  dbref: 'DBRef',
};

function safeText(v: unknown): string {
  try {
    const k = bsonKind(v);
    if (k === 'date') return Number.isNaN((v as Date).getTime()) ? 'Invalid Date' : (v as Date).toISOString();
    if (k === 'binary' || k === 'minKey' || k === 'maxKey') return '';
    return String(v).slice(0, 60);
  } catch {
    return '';
  }
}

/** Int64 as bigint, whether the driver gave a bigint (useBigInt64) or a Long. */
export function int64Of(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  return BigInt((v as BsonLike).toString());
}

/** The bytes of a Binary (or Buffer / Uint8Array) and its subtype. */
export function binaryOf(v: unknown): { bytes: Buffer; subType: number } {
  if (Buffer.isBuffer(v)) return { bytes: v, subType: 0 };
  const b = v as { buffer?: Uint8Array; sub_type?: number; position?: number; value?: () => Uint8Array };
  const raw = b.buffer ?? new Uint8Array();
  const len = typeof b.position === 'number' ? b.position : raw.length;
  return { bytes: Buffer.from(raw.buffer, raw.byteOffset, len), subType: b.sub_type ?? 0 };
}

/** Reads a dotted path (`profile.name`) the way a query does for embedded documents; arrays are not traversed. */
export function readPath(doc: Record<string, unknown>, path: string): unknown {
  let cur: unknown = doc;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || bsonKind(cur) !== 'object') return undefined;
    if (!Object.prototype.hasOwnProperty.call(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

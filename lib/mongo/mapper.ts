import AjvModule from 'ajv';
import type { Ajv as AjvInstance, Options as AjvOptions, ValidateFunction } from 'ajv';
import { bsonKind, describeBson, int64Of, readPath } from './bson.js';
import { convert, type Cell, type MongoColumnType } from './column-types.js';
import { fromBson, compactJson, jsonbText, MapError, type JNode } from './json.js';
import { allColumns, type MongoDocument, type MongoMove } from './move.js';

// ajv is CommonJS with `exports.default`; under NodeNext the default import is the module object.
const Ajv = ((AjvModule as unknown as { default?: unknown }).default ?? AjvModule) as unknown as new (o: AjvOptions) => AjvInstance;

/** A document mapped to a row: cells in allColumns() order. */
export interface MappedRow {
  /** The key column's text, as PostgreSQL prints it. */
  readonly key: string;
  readonly cells: readonly Cell[];
  readonly version: bigint;
}

export type MapResult =
  | { readonly ok: true; readonly row: MappedRow }
  | { readonly ok: false; readonly key: string | null; readonly version: bigint; readonly reason: string };

/**
 * Maps documents of one move: explicit type rules per column (lib/mongo/column-types.ts), missing vs null, NUL
 * characters, fields no column takes, then the ajv check of the mapped row. Never throws for a bad document: it
 * returns the reason, and the caller quarantines it.
 */
export class DocumentMapper {
  private readonly columns: { name: string; type: MongoColumnType }[];
  private readonly validate: ValidateFunction;

  constructor(readonly move: MongoMove) {
    this.columns = allColumns(move);
    const ajv = new Ajv({ allErrors: true, strict: false });
    const properties: Record<string, unknown> = {};
    for (const c of this.columns) properties[c.name] = viewSchema(c.type);
    const required = [move.key.column, ...move.columns.filter((c) => c.required).map((c) => c.name)];
    const base = { type: 'object', properties, required };
    this.validate = ajv.compile(move.schema ? { allOf: [base, move.schema] } : base);
  }

  private checkString = (s: string, where: string): string => {
    if (LONE_SURROGATE.test(s)) throw new MapError(`${where}: the string has an unpaired UTF-16 surrogate, which UTF-8 (and so PostgreSQL) cannot hold`);
    if (!s.includes('\u0000')) return s;
    if (this.move.nul === 'strip') return s.replace(/\u0000/g, '');
    throw new MapError(`${where}: the string contains a NUL character (\\u0000), which PostgreSQL text and jsonb cannot hold (option nul: 'strip' removes them)`);
  };

  /** The key column's text for an `_id`, or a reason why this `_id` cannot be a key. */
  keyOf(id: unknown): { key: string } | { reason: string } {
    try {
      // One BSON type per key type, so two `_id`s MongoDB tells apart never share a row (a UUID string and a Binary UUID).
      if (this.move.key.type === 'uuid' && bsonKind(id) !== 'binary' && id != null) throw new MapError(`_id: expected a Binary UUID, found ${describeBson(id)}`);
      const cell = convert(this.move.key.type, id, '_id', this.checkString);
      if (cell.piece === null) return { reason: '_id is missing or null' };
      return { key: cell.piece };
    } catch (e) {
      return { reason: `${(e as Error).message} (the key column ${this.move.key.column} holds ${this.move.key.type} values)` };
    }
  }

  versionOf(doc: MongoDocument): bigint | string {
    const v = doc[this.move.versionField];
    const k = bsonKind(v);
    if (k === 'missing' || k === 'null') return 0n;
    if (k === 'int32' || k === 'int64') return k === 'int64' ? int64Of(v) : BigInt(Number(v));
    if (k === 'double' && Number.isInteger(Number(v))) return BigInt(Number(v));
    return `version field ${this.move.versionField} is ${describeBson(v)}, not an integer`;
  }

  map(doc: MongoDocument): MapResult {
    const k = this.keyOf(doc._id);
    const key = 'key' in k ? k.key : null;
    const version = this.versionOf(doc);
    if (typeof version === 'string') return { ok: false, key, version: 0n, reason: version };
    if (key === null) return { ok: false, key, version, reason: (k as { reason: string }).reason };
    try {
      const cells: Cell[] = [{ param: key, piece: key }];
      const view: Record<string, unknown> = { [this.move.key.column]: viewValue(this.move.key.type, cells[0]!) };
      let source: Record<string, unknown> | null = null;
      if (this.move.map) {
        try {
          source = this.move.map(doc);
        } catch (e) {
          throw new MapError(`map() refused the document: ${(e as Error).message}`);
        }
        if (!source || typeof source !== 'object') throw new MapError('map() returned no object');
      }
      // Fields that are null where a scalar column holds NULL, as NULL also means "missing": the unmapped-fields
      // column records them, so the reverse direction gives back null, not a missing field.
      const nulls: string[] = [];
      for (const c of this.move.columns) {
        const raw = source ? source[c.name] : readPath(doc, c.from);
        if (raw === null && c.type !== 'jsonb') nulls.push(c.from);
        if (c.required && (raw === undefined || raw === null)) {
          throw new MapError(`${c.from}: required, but ${raw === undefined ? 'missing' : 'null'}`);
        }
        const cell = convert(c.type, raw, c.from, this.checkString);
        cells.push(cell);
        view[c.name] = viewValue(c.type, cell);
      }
      if (!this.move.map && this.move.unmapped !== 'ignore') {
        const keep = typeof this.move.unmapped === 'object';
        const rest = leftover(doc, this.move.columns.map((c) => c.from), this.move.versionField, keep ? { nulls } : null);
        if (keep) {
          const node = rest ? fromBson(rest, this.checkString, '(unmapped fields)') : null;
          const cell: Cell = node === null ? { param: null, piece: null } : { param: compactJson(node), piece: jsonbText(node) };
          cells.push(cell);
          view[this.move.unmapped.column] = viewValue('jsonb', cell);
        } else if (rest) {
          throw new MapError(`fields no column takes: ${fieldList(rest).join(', ')} (map them, or set unmapped: 'ignore' or { column })`);
        }
      }
      if (!this.validate(view)) {
        const errors = (this.validate.errors ?? []).map((e) => `${e.instancePath || '(row)'} ${e.message ?? 'is invalid'}`);
        throw new MapError(`the mapped row fails the schema: ${errors.join('; ')}`);
      }
      return { ok: true, row: { key, cells, version } };
    } catch (e) {
      if (e instanceof MapError) return { ok: false, key, version, reason: e.message };
      return { ok: false, key, version, reason: `unexpected error while mapping: ${(e as Error).message}` };
    }
  }
}

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The row as ajv sees it: JSON values a schema author expects (numbers as numbers where exact, jsonb parsed). */
function viewValue(t: MongoColumnType, cell: Cell): unknown {
  if (cell.param === null) return null;
  const p = cell.param;
  switch (t) {
    case 'integer':
      return Number(p);
    case 'bigint': {
      const n = Number(p);
      return Number.isSafeInteger(n) ? n : String(p);
    }
    case 'double precision':
      return Number(p);
    case 'boolean':
      return p === 'true';
    case 'bytea':
      return (p as Buffer).toString('hex');
    case 'jsonb':
      return JSON.parse(p as string) as unknown;
    default:
      return String(p);
  }
}

function viewSchema(t: MongoColumnType): Record<string, unknown> {
  switch (t) {
    case 'integer':
      return { type: ['integer', 'null'], minimum: -2147483648, maximum: 2147483647 };
    case 'bigint':
      return { anyOf: [{ type: ['integer', 'null'] }, { type: 'string', pattern: '^-?\\d+$' }] };
    case 'double precision':
      return { type: ['number', 'null'] };
    case 'boolean':
      return { type: ['boolean', 'null'] };
    case 'numeric':
      return { type: ['string', 'null'], pattern: '^(-?\\d+(\\.\\d+)?|NaN|-?Infinity)$' };
    case 'objectid':
      return { type: ['string', 'null'], pattern: '^[0-9a-f]{24}$' };
    case 'uuid':
      return { type: ['string', 'null'], pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' };
    case 'bytea':
      return { type: ['string', 'null'], pattern: '^([0-9a-f]{2})*$' };
    case 'jsonb':
      return {};
    default:
      return { type: ['string', 'null'] };
  }
}

/**
 * The fields of `doc` that no path takes (besides `_id` and the version field); null when none. With `nulls` (the
 * unmapped-fields column is on), the taken paths whose value is null are kept as null, and an embedded document a
 * path runs through that is empty is kept as `{}`: a column cannot tell these from a missing field, and the reverse
 * direction must give the document back as it was.
 */
function leftover(doc: MongoDocument, paths: readonly string[], versionField: string, keep: { readonly nulls: readonly string[] } | null): Record<string, unknown> | null {
  const tree: Record<string, unknown> = {};
  for (const p of paths) {
    let node = tree;
    const parts = p.split('.');
    parts.forEach((part, i) => {
      if (i === parts.length - 1) node[part] = true;
      else {
        if (node[part] === true) return;
        node = (node[part] ??= {}) as Record<string, unknown>;
      }
    });
  }
  const nulls = new Set(keep?.nulls ?? []);
  const walk = (d: Record<string, unknown>, t: Record<string, unknown>, prefix: string): Record<string, unknown> | null => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(d)) {
      if (v === undefined) continue;
      const taken = t[k];
      if (taken === true) {
        if (v === null && nulls.has(prefix + k)) out[k] = null;
        continue;
      }
      if (taken && bsonKind(v) === 'object') {
        const inner = walk(v as Record<string, unknown>, taken as Record<string, unknown>, `${prefix}${k}.`);
        if (inner) out[k] = inner;
        else if (keep && Object.values(v as Record<string, unknown>).every((x) => x === undefined)) out[k] = {};
        continue;
      }
      out[k] = v;
    }
    return Object.keys(out).length > 0 ? out : null;
  };
  const { _id: _ignored, [versionField]: _v, ...rest } = doc;
  return walk(rest, tree, '');
}

function fieldList(rest: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(rest)) {
    if (bsonKind(v) === 'object' && Object.keys(v as object).length > 0) out.push(...fieldList(v as Record<string, unknown>, `${prefix}${k}.`));
    else out.push(prefix + k);
  }
  return out.slice(0, 20);
}

export type { JNode };

import { ChangeInputError, ident, resolveTable, type TableInput, type TableName } from '../postgres/identifiers.js';
import { COLUMN_TYPES, isKeyType, type MongoColumnType, type MongoKeyType } from './column-types.js';

/** A MongoDB document as the driver returns it. */
export type MongoDocument = Record<string, unknown>;

export interface MongoColumnOptions {
  /** The PostgreSQL column. */
  readonly name: string;
  readonly type: MongoColumnType;
  /** Dotted path of the field in the document (`profile.name`). Default: the column name. */
  readonly from?: string;
  /** A missing or null field sends the document to quarantine instead of writing NULL. Default false. */
  readonly required?: boolean;
}

export interface MongoVerifyOptions {
  /** Documents per checksum chunk. Default 1000. */
  readonly chunkSize?: number;
  /** Largest share of mismatching documents (0–1) that still lets the expand finish and the contract run. Default 0. */
  readonly maxMismatchRate?: number;
}

export interface MongoToPostgresOptions {
  /** The source collection; the database defaults to the one in the `mongo` config (or its URL). */
  readonly collection: string | { readonly database?: string; readonly name: string };
  readonly table: TableInput;
  /** The primary key column the `_id` goes to. Default `{ column: 'id', type: 'objectid' }`. */
  readonly key?: { readonly column?: string; readonly type?: MongoKeyType };
  /** Target columns, each with its type and source path: the explicit type rules apply per column. */
  readonly columns: readonly MongoColumnOptions[];
  /**
   * Your own mapping from a document to the columns' values (BSON values; the type rules still apply to what it
   * returns). Throw to send a document to quarantine with the error's message as the reason.
   */
  readonly map?: (doc: MongoDocument) => Record<string, unknown>;
  /** A JSON Schema (ajv) every mapped row must satisfy besides the column types; failures go to quarantine. */
  readonly schema?: Record<string, unknown>;
  /** The document field holding the row version the dual-writer bumps. Default `_zdv`. */
  readonly version?: string;
  /**
   * Fields no column takes: `quarantine` the document (default: nothing is dropped silently), `ignore` them, or
   * keep them in a jsonb column (`{ column: 'extra' }`). That column also records what a column cannot: a mapped
   * field that is null (NULL in a column means missing) and an empty embedded document on a mapped path, so the
   * reverse direction gives documents back exactly.
   */
  readonly unmapped?: 'quarantine' | 'ignore' | { readonly column: string };
  /** Strings with a NUL character, which PostgreSQL text and jsonb cannot hold: `quarantine` (default) or `strip`. */
  readonly nul?: 'quarantine' | 'strip';
  /** A read-cutover flag that must be at 100 % before the contract runs. */
  readonly readFlag?: string;
  readonly batchSize?: number;
  readonly verify?: MongoVerifyOptions;
}

export interface MongoColumn {
  readonly name: string;
  readonly type: MongoColumnType;
  readonly from: string;
  readonly required: boolean;
}

/** The checked, defaulted form of the options: what every part of the move (backfill, dual-writer, verify) uses. */
export interface MongoMove {
  readonly collection: { readonly database: string | null; readonly name: string };
  readonly table: TableInput;
  readonly key: { readonly column: string; readonly type: MongoKeyType };
  readonly columns: readonly MongoColumn[];
  readonly map: ((doc: MongoDocument) => Record<string, unknown>) | null;
  readonly schema: Record<string, unknown> | null;
  readonly versionField: string;
  readonly unmapped: 'quarantine' | 'ignore' | { readonly column: string };
  readonly nul: 'quarantine' | 'strip';
  readonly readFlag: string | null;
  readonly batchSize: number;
  readonly chunkSize: number;
  readonly maxMismatchRate: number;
}

/** Bookkeeping columns the target table gets: the row version and the tombstone mark. */
export const VERSION_COLUMN = '_zd_version';
export const DELETED_COLUMN = '_zd_deleted_at';

const MOVE_MARK = Symbol.for('umzug-zero-downtime.mongo-move');

export function isMongoMove(x: unknown): x is MongoMove {
  return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[MOVE_MARK] === true;
}

export function resolveMove(o: MongoToPostgresOptions | MongoMove): MongoMove {
  if (isMongoMove(o)) return o;
  const bad = (msg: string): never => {
    throw new ChangeInputError(`mongoToPostgres: ${msg}`);
  };
  if (!o || typeof o !== 'object') bad('options must be an object');
  const collection =
    typeof o.collection === 'string'
      ? { database: null, name: o.collection }
      : o.collection && typeof o.collection.name === 'string'
        ? { database: o.collection.database ?? null, name: o.collection.name }
        : bad(`collection must be a name or { database, name }, got ${JSON.stringify(o.collection)}`);
  if (collection.name.length === 0 || collection.name.includes('\0') || collection.name.startsWith('system.')) bad(`collection ${JSON.stringify(collection.name)} is not a usable collection name`);
  resolveTable(o.table, 'public');
  const keyType = o.key?.type ?? 'objectid';
  if (!isKeyType(keyType)) bad(`key.type must be objectid, text, bigint or uuid, got ${JSON.stringify(keyType)}`);
  const key = { column: o.key?.column ?? 'id', type: keyType };
  ident(key.column);
  if (!Array.isArray(o.columns)) bad('columns must be an array of { name, type, from? }');
  const columns: MongoColumn[] = o.columns.map((c, i) => {
    if (!c || typeof c.name !== 'string' || c.name.length === 0) bad(`columns[${i}].name must be a non-empty string`);
    ident(c.name);
    if (!COLUMN_TYPES.includes(c.type)) bad(`columns[${i}] (${c.name}): type must be one of ${COLUMN_TYPES.join(', ')}, got ${JSON.stringify(c.type)}`);
    const from = c.from ?? c.name;
    if (typeof from !== 'string' || from.length === 0 || from.split('.').some((p) => p.length === 0)) bad(`columns[${i}] (${c.name}): from must be a dotted field path`);
    return { name: c.name, type: c.type, from, required: c.required === true };
  });
  const versionField = o.version ?? '_zdv';
  if (typeof versionField !== 'string' || versionField.length === 0 || versionField.includes('.') || versionField === '_id') bad('version must be a top-level field name other than _id');
  const unmapped = o.unmapped ?? 'quarantine';
  if (typeof unmapped === 'object') {
    if (!unmapped || typeof unmapped.column !== 'string') bad('unmapped must be "quarantine", "ignore" or { column }');
    ident(unmapped.column);
  } else if (unmapped !== 'quarantine' && unmapped !== 'ignore') bad(`unmapped must be "quarantine", "ignore" or { column }, got ${JSON.stringify(unmapped)}`);
  const names = [key.column, ...columns.map((c) => c.name), ...(typeof unmapped === 'object' ? [unmapped.column] : [])];
  for (const reserved of [VERSION_COLUMN, DELETED_COLUMN]) if (names.includes(reserved)) bad(`${reserved} is reserved for the move's bookkeeping`);
  if (new Set(names).size !== names.length) bad(`two columns have the same name: ${JSON.stringify(names)}`);
  const nul = o.nul ?? 'quarantine';
  if (nul !== 'quarantine' && nul !== 'strip') bad(`nul must be "quarantine" or "strip", got ${JSON.stringify(nul)}`);
  if (o.map !== undefined && typeof o.map !== 'function') bad('map must be a function (doc) => ({ column: value, … })');
  // A map decides every column itself, so there are no unmapped fields to keep; the mapper would leave the column's
  // cell out and every write would fail.
  if (o.map !== undefined && typeof unmapped === 'object') bad(`unmapped: { column } cannot be combined with map: a map returns every column itself (return ${unmapped.column} from it instead)`);
  if (o.schema !== undefined && (typeof o.schema !== 'object' || o.schema === null)) bad('schema must be a JSON Schema object');
  const positive = (v: unknown, field: string, dflt: number): number => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) return bad(`${field} must be a positive integer`);
    return v;
  };
  const rate = o.verify?.maxMismatchRate ?? 0;
  if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) bad('verify.maxMismatchRate must be between 0 and 1');
  const move: MongoMove & { [MOVE_MARK]: true } = {
    collection,
    table: o.table,
    key,
    columns,
    map: o.map ?? null,
    schema: o.schema ?? null,
    versionField,
    unmapped,
    nul,
    readFlag: o.readFlag ?? null,
    batchSize: positive(o.batchSize, 'batchSize', 1000),
    chunkSize: positive(o.verify?.chunkSize, 'verify.chunkSize', 1000),
    maxMismatchRate: rate,
    [MOVE_MARK]: true,
  };
  return Object.freeze(move);
}

export function targetTable(move: MongoMove, defaultSchema: string): TableName {
  return resolveTable(move.table, defaultSchema);
}

/** The name a move is known by in the state tables: one move per target table. */
export function moveId(t: TableName): string {
  return `${t.schema}.${t.name}`;
}

/** Every column of the target table in order: key, data columns, the unmapped-fields column. */
export function allColumns(move: MongoMove): { name: string; type: MongoColumnType }[] {
  return [
    { name: move.key.column, type: move.key.type },
    ...move.columns.map((c) => ({ name: c.name, type: c.type })),
    ...(typeof move.unmapped === 'object' ? [{ name: move.unmapped.column, type: 'jsonb' as const }] : []),
  ];
}

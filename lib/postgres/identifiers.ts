import pg from 'pg';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';

/** A table, always with its schema resolved: `users` in config schema `public` becomes { schema: 'public', name: 'users' }. */
export interface TableName {
  readonly schema: string;
  readonly name: string;
}

/** What a migration author may write for a table: a bare name (in the configured schema) or an explicit pair. */
export type TableInput = string | TableName;

/** Thrown for input that is wrong before anything ran; the database was not touched. */
export class ChangeInputError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'change-input';
  override name = 'ChangeInputError';
}

const MAX_IDENTIFIER_BYTES = 63;

/**
 * Double-quotes an identifier (pg's escapeIdentifier doubles embedded quotes), so `users; drop table x` and
 * `x"; drop table users; --` are names like any other. Names PostgreSQL would silently truncate are refused:
 * a truncated name can collide with another object.
 */
export function ident(name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new ChangeInputError(`an identifier must be a non-empty string, got ${JSON.stringify(name)}`);
  if (name.includes('\u0000')) throw new ChangeInputError(`identifier ${JSON.stringify(name)} contains a NUL character`);
  if (Buffer.byteLength(name, 'utf8') > MAX_IDENTIFIER_BYTES) {
    throw new ChangeInputError(`identifier ${JSON.stringify(name)} is longer than PostgreSQL's ${MAX_IDENTIFIER_BYTES} bytes and would be truncated`);
  }
  return pg.escapeIdentifier(name);
}

export function qualified(table: TableName): string {
  return `${ident(table.schema)}.${ident(table.name)}`;
}

/** A string literal for DDL, where PostgreSQL accepts no parameters (DEFAULT, COMMENT). */
export function literal(value: string): string {
  return pg.escapeLiteral(value);
}

export function resolveTable(input: TableInput, defaultSchema: string): TableName {
  if (typeof input === 'string') return { schema: defaultSchema, name: input };
  if (input && typeof input.schema === 'string' && typeof input.name === 'string') return { schema: input.schema, name: input.name };
  throw new ChangeInputError(`a table must be a name or { schema, name }, got ${JSON.stringify(input)}`);
}

export function tableLabel(t: TableName): string {
  return `${t.schema}.${t.name}`;
}

/**
 * A short, stable, identifier-safe suffix for objects we create (triggers, functions, constraints), derived from
 * the names involved so two changes never pick the same object name and reruns find the object they made.
 */
export function objectName(prefix: string, ...parts: string[]): string {
  let h = 0x811c9dc5;
  for (const ch of parts.join('\u0001')) {
    h ^= ch.codePointAt(0) ?? 0;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  const readable = parts
    .join('_')
    .replace(/[^a-zA-Z0-9_]/g, '')
    .slice(0, 30);
  return `${prefix}_${readable}_${h.toString(16).padStart(8, '0')}`.toLowerCase();
}

/**
 * A dollar-quoted string whose tag the body does not contain, so nothing in it — an identifier, an author's
 * expression holding `$zd$` — can end the quoted block early.
 */
export function dollarQuote(body: string): string {
  let tag = 'zd';
  for (let i = 0; body.includes(`$${tag}$`); i++) tag = `zd${i}`;
  return `$${tag}$${body}$${tag}$`;
}

import { loadModule, parseSync } from 'libpg-query';

/**
 * PostgreSQL's own parser (libpg-query: the server's grammar compiled to WebAssembly), and small readers for its
 * JSON parse tree. The tree is read as plain JSON (`obj`, `str`): its node types are many and only a few fields of
 * a few nodes matter to us.
 */
export type Json = { readonly [k: string]: unknown };
export const obj = (v: unknown): Json => (v && typeof v === 'object' ? (v as Json) : {});
export const str = (v: unknown): string => (typeof v === 'string' ? v : '');
export const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

let loaded: Promise<void> | null = null;

/** The parser is WebAssembly, loaded once (about 30 ms) on first use. */
export function loadSqlParser(): Promise<void> {
  return (loaded ??= loadModule());
}

export interface ParsedStatement {
  /** The node, e.g. `{ AlterTableStmt: {...} }`. */
  readonly node: Json;
  /** The node's type, e.g. `AlterTableStmt`. */
  readonly kind: string;
  /** The statement's own text, and its offset in the parsed string. */
  readonly text: string;
  readonly offset: number;
}

/** Parses SQL once loadSqlParser() has resolved; throws the parser's error (with its position) on invalid SQL. */
export function parseSqlSync(sql: string): ParsedStatement[] {
  const tree = obj(parseSync(sql));
  return list(tree.stmts).map((st) => {
    const s = obj(st);
    const node = obj(s.stmt);
    const start = Number(s.stmt_location ?? 0);
    const len = s.stmt_len === undefined || Number(s.stmt_len) === 0 ? sql.length - start : Number(s.stmt_len);
    const raw = sql.slice(start, start + len);
    // A statement's span starts right after the previous one: comments and blank lines before it are not its text.
    const lead = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/.exec(raw)?.[0].length ?? 0;
    return { node, kind: Object.keys(node)[0] ?? '', text: raw.slice(lead).trim(), offset: start + lead };
  });
}

/** `schema.name` of a RangeVar as written (the schema omitted when the statement omits it). */
export function rangeVar(v: unknown): string {
  const r = obj(v);
  const name = str(r.relname);
  return str(r.schemaname) ? `${str(r.schemaname)}.${name}` : name;
}

/** A DROP's object: a List of String names, [schema, name] or [name]. */
export function dottedName(v: unknown): string {
  return list(obj(obj(v).List).items)
    .map((i) => str(obj(obj(i).String).sval))
    .join('.');
}

/** A type name as written, e.g. `int4`, `varchar(255)` → its last name part and its modifiers. */
export function typeName(v: unknown): { name: string; mods: number[] } {
  const t = obj(obj(v).TypeName ?? v);
  const names = list(t.names).map((n) => str(obj(obj(n).String).sval));
  const mods = list(t.typmods).map((m) => Number(obj(obj(obj(m).A_Const).ival).ival ?? 0));
  return { name: names[names.length - 1] ?? '', mods };
}

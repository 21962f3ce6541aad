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
let ready = false;

/** The parser is WebAssembly, loaded once (about 30 ms) on first use. */
export function loadSqlParser(): Promise<void> {
  return (loaded ??= loadModule().then(() => {
    ready = true;
  }));
}

/** Whether loadSqlParser() has resolved, so the synchronous checks below can run. */
export function sqlParserReady(): boolean {
  return ready;
}

/** A `SELECT <one target>` with nothing else: the target's node, else why not. */
function soleTarget(sql: string): { node: Json } | { problem: string } {
  let stmts: ParsedStatement[];
  try {
    stmts = parseSqlSync(sql);
  } catch (e) {
    return { problem: `PostgreSQL's parser refuses it (${(e as Error).message})` };
  }
  if (stmts.length !== 1 || !stmts[0]!.node.SelectStmt) return { problem: 'it is more than one statement' };
  const sel = obj(stmts[0]!.node.SelectStmt);
  const extra = Object.keys(sel).filter((k) => !['targetList', 'limitOption', 'op'].includes(k));
  if (extra.length > 0) return { problem: `it goes on past one expression (${extra.join(', ')})` };
  const targets = list(sel.targetList);
  if (targets.length !== 1) return { problem: `it is ${targets.length} expressions` };
  const t = obj(obj(targets[0]).ResTarget);
  if (t.name) return { problem: 'it names its result (AS …)' };
  return { node: obj(t.val) };
}

/** Why `expr` is not exactly one SQL expression (read by PostgreSQL's grammar), or null when it is. */
export function oneExpressionProblem(expr: string): string | null {
  const r = soleTarget(`SELECT ${expr}`);
  return 'problem' in r ? r.problem : null;
}

/** Why `type` is not exactly one type name (`numeric(10,2)`, `timestamptz[]`, `character varying(20)`), or null. */
export function oneTypeProblem(type: string): string | null {
  const r = soleTarget(`SELECT NULL::${type}`);
  if ('problem' in r) return r.problem;
  const cast = obj(r.node.TypeCast);
  if (!r.node.TypeCast || !obj(obj(cast.arg).A_Const).isnull) return 'it is more than a type name';
  return null;
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

import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { glob } from 'tinyglobby';
import type * as TS from 'typescript';
import type { RemovedStructure } from '../changes/removed.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { loadSqlParser } from '../postgres/sql-ast.js';
import { PLACEHOLDER_PREFIX, sqlRefs } from './sql-refs.js';

/**
 * The source scanner behind `umzug refs` and `contract.requireNoRefs`: where the application's code still mentions a
 * column or table that a pending contract removes. Pure: files in, findings out; no database.
 *
 * Why the TypeScript compiler API and PostgreSQL's parser, not a text search: `name` is in every log message,
 * comment, `full_name` and unrelated table; a grep would either drown the real references or, narrowed by regular
 * expressions, miss them. The compiler's syntax tree (no type checking, so it reads .js/.cjs/.mjs and .ts alike, in
 * about a millisecond a file) tells a string literal from a comment and a property access from text, and gives the
 * call chain a string is an argument of; each string that looks like SQL is then read by the same PostgreSQL
 * parser the linter uses (libpg-query), so a column is a column reference of a statement over the removed column's
 * table. `typescript` is loaded on first use from the scanned project (most TypeScript and many JavaScript projects
 * have it), else from this package's own installation; when neither has it, a scan of .ts/.js files fails saying
 * so (RefsScanError), and never passes silently. .sql files need only libpg-query.
 *
 * Findings, by kind:
 * - `sql-string`: a string or template literal that is SQL (starts with SELECT, INSERT, UPDATE, DELETE, WITH, …
 *   and parses; `${…}` substitutions and Knex's `?` / `??` bindings become placeholders) referencing it;
 * - `sql-file`: a statement of a .sql file referencing it;
 * - `knex-builder`: a Knex-style builder chain (`knex('users').select('name')`, `.where('name', …)`,
 *   `.update({ name })`, `.insert({ name })`, `.pluck`, `.orderBy`, `.join`, `'users.name'`) over the removed
 *   column's table, or over a table it cannot know (a variable, `Model.query()`), naming the column;
 * - `orm-field`: a property access, object key, class property or destructured name that config `refs.fields` maps
 *   to a removed column (`{ 'users.name': ['userName'] }`);
 * - `identifier`: any other string that is exactly the removed name, qualified (`'users.name'`), or for a removed
 *   table its name (`tableName = 'audit_log'`).
 * A finding on a line with (or after a line with) `umzug-zero-downtime: allow ref` is left out.
 */

export type RefKind = 'sql-string' | 'sql-file' | 'knex-builder' | 'orm-field' | 'identifier';

export interface RefFinding {
  /** Relative to the scan's cwd, with `/`. */
  readonly file: string;
  /** 1-based. */
  readonly line: number;
  readonly column: number;
  /** The source line, trimmed. */
  readonly text: string;
  readonly kind: RefKind;
  readonly removed: RemovedStructure;
}

export interface RefsScanOptions {
  readonly removed: readonly RemovedStructure[];
  /** ORM property names of a column: `table.column` (in defaultSchema) or `schema.table.column` → names. */
  readonly fields?: Readonly<Record<string, readonly string[]>>;
  /** The schema of bare table names in `fields`; default `public`. */
  readonly defaultSchema?: string;
}

export interface RefsScanResult {
  readonly findings: readonly RefFinding[];
  readonly filesScanned: number;
}

export class RefsScanError extends ZeroDowntimeError {
  override name = 'RefsScanError';
  readonly code: ZeroDowntimeErrorCode = 'refs-scan';
}

export const SOURCE_EXTENSIONS = ['ts', 'tsx', 'mts', 'cts', 'js', 'jsx', 'mjs', 'cjs', 'sql'] as const;
/** Never scanned: dependencies, build output, version control, declaration files (generated from the source). */
export const ALWAYS_IGNORED = ['**/node_modules/**', '**/dist/**', '**/.git/**', '**/*.d.ts', '**/*.d.mts', '**/*.d.cts'];
const ALLOW = /umzug-zero-downtime:\s*allow\s+refs?\b/i;

type TsModule = typeof TS;
let tsLoading: Promise<TsModule> | null = null;
const dynamicImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<{ default?: unknown }>;

/** `typescript`, from the scanned project if it has it, else from ours; a clear error when neither does. */
export function loadTypeScript(cwd = process.cwd()): Promise<TsModule> {
  tsLoading ??= (async () => {
    // require() first, from the project, then from beside the running script (the `umzug` bin in node_modules):
    // typescript is CommonJS, and an ESM import of it has Node scan its 9 MB for named exports, 0.6 s more per command.
    for (const base of [path.join(cwd, 'package.json'), ...(process.argv[1] ? [process.argv[1]] : [])]) {
      try {
        return createRequire(base)('typescript') as TsModule;
      } catch {
        // try the next place
      }
    }
    try {
      const m = await dynamicImport('typescript');
      return (m.default ?? m) as TsModule;
    } catch (e) {
      tsLoading = null;
      throw new RefsScanError(
        `reading .ts/.js files for references needs the TypeScript compiler (only its parser is used): run \`npm install --save-dev typescript\`. .sql files need nothing more. (${(e as Error).message})`,
      );
    }
  })();
  return tsLoading;
}

/**
 * The source files under `src` (folders, files or globs, relative to `cwd`), without ALWAYS_IGNORED and `ignore`
 * (globs relative to `cwd`: the migrations folder, whose files legitimately name the old structure).
 */
export async function listSourceFiles(cwd: string, src: readonly string[], ignore: readonly string[] = []): Promise<string[]> {
  const patterns: string[] = [];
  for (const s of src.length > 0 ? src : ['.']) {
    const rel = path.isAbsolute(s) ? path.relative(cwd, s) || '.' : s;
    const posix = rel.split(path.sep).join('/').replace(/\/+$/, '');
    if (/[*?{}[\]!]/.test(posix)) patterns.push(posix);
    else {
      const full = path.resolve(cwd, posix);
      const st = await stat(full).catch(() => null);
      if (!st) throw new RefsScanError(`refs: ${s} does not exist (looked for ${full})`);
      patterns.push(st.isDirectory() ? `${posix === '.' ? '' : `${posix}/`}**/*.{${SOURCE_EXTENSIONS.join(',')}}` : posix);
    }
  }
  const files = await glob(patterns, { cwd, absolute: true, ignore: [...ALWAYS_IGNORED, ...ignore], dot: false });
  return [...new Set(files.map((f) => path.normalize(f)))].sort();
}

/** Findings in one file's text (its kind from its extension). */
export async function scanSource(file: string, text: string, options: RefsScanOptions, cwd = process.cwd()): Promise<RefFinding[]> {
  if (options.removed.length === 0) return [];
  await loadSqlParser();
  const name = path.relative(cwd, file).split(path.sep).join('/') || path.basename(file);
  const raw = file.endsWith('.sql') ? scanSqlFile(text, options.removed) : scanScript(await loadTypeScript(cwd), file, text, matcher(options));
  return finish(name, text, raw, options.removed);
}

/** Every file, read and scanned; `cache` (kept by the caller across scans) skips files unchanged since the last one. */
export async function scanFiles(files: readonly string[], options: RefsScanOptions, cwd = process.cwd(), cache?: ScanCache): Promise<RefsScanResult> {
  const findings: RefFinding[] = [];
  if (options.removed.length === 0) return { findings, filesScanned: 0 };
  const key = JSON.stringify([options.removed, options.fields ?? {}, options.defaultSchema ?? 'public']);
  for (const file of files) {
    const st = await stat(file).catch(() => null);
    if (!st?.isFile()) continue;
    const stamp = `${key}\u0000${st.mtimeMs}\u0000${st.size}`;
    const hit = cache?.get(file);
    if (hit && hit.stamp === stamp) {
      findings.push(...hit.findings);
      continue;
    }
    const found = await scanSource(file, await readFile(file, 'utf8'), options, cwd);
    cache?.set(file, { stamp, findings: found });
    findings.push(...found);
  }
  return { findings, filesScanned: files.length };
}

export type ScanCache = Map<string, { readonly stamp: string; readonly findings: readonly RefFinding[] }>;

interface RawFinding {
  readonly pos: number;
  readonly kind: RefKind;
  readonly removed: RemovedStructure;
}

function finish(file: string, text: string, raw: readonly RawFinding[], removed: readonly RemovedStructure[]): RefFinding[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') starts.push(i + 1);
  const lines = text.split('\n');
  const out = new Map<string, RefFinding>();
  for (const f of raw) {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= f.pos) lo = mid;
      else hi = mid - 1;
    }
    const lineText = lines[lo] ?? '';
    if (ALLOW.test(lineText) || (lo > 0 && ALLOW.test(lines[lo - 1] ?? ''))) continue;
    // The removed structure as the caller gave it (one object per structure, for grouping by identity).
    const r = removed.find((x) => x.schema === f.removed.schema && x.table === f.removed.table && x.column === f.removed.column) ?? f.removed;
    const finding: RefFinding = { file, line: lo + 1, column: f.pos - starts[lo]! + 1, text: lineText.trim(), kind: f.kind, removed: r };
    out.set(`${finding.line}:${finding.column}:${r.schema}.${r.table}.${r.column ?? ''}`, finding);
  }
  return [...out.values()].sort((a, b) => a.line - b.line || a.column - b.column);
}

// ---------------------------------------------------------------------------------------------------------------
// SQL

function scanSqlFile(text: string, removed: readonly RemovedStructure[]): RawFinding[] {
  const out: RawFinding[] = [];
  const take = (sql: string, base: number) => {
    for (const r of sqlRefs(sql, removed)) out.push({ pos: base + r.offset, kind: 'sql-file', removed: r.removed });
  };
  try {
    take(text, 0);
  } catch {
    // One bad statement (or a psql meta-command) must not hide the others: each statement on its own.
    for (const s of splitStatements(text)) {
      try {
        take(s.text, s.offset);
      } catch {
        /* not SQL PostgreSQL reads: skipped */
      }
    }
  }
  return out;
}

/** A file's statements, split at `;` outside quotes, dollar quotes and comments; psql's `\` lines are left out. */
function splitStatements(text: string): { text: string; offset: number }[] {
  const out: { text: string; offset: number }[] = [];
  let start = 0;
  let i = 0;
  const push = (end: number) => {
    const piece = text.slice(start, end);
    if (piece.trim()) out.push({ text: piece.replace(/^\s*\\[^\n]*$/gm, (m) => ' '.repeat(m.length)), offset: start });
    start = end + 1;
  };
  while (i < text.length) {
    const c = text[i]!;
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      i = end < 0 ? text.length : end + 1;
    } else if (c === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? text.length : end + 1;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 2;
    } else if (c === '$' && /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.test(text.slice(i, i + 64))) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 64))![0];
      const end = text.indexOf(tag, i + tag.length);
      i = end < 0 ? text.length : end + tag.length;
    } else if (c === ';') {
      push(i);
      i++;
    } else i++;
  }
  push(text.length);
  return out;
}

/** The beginning of a statement: what makes a string worth parsing as SQL. */
const SQL_START = /^\s*(?:(?:--[^\n]*\n|\/\*[\s\S]*?\*\/)\s*)*\(?\s*(?:select|insert|update|delete|with|merge|copy|alter|create|drop|truncate)\b/i;

/** Text being assembled for the parser, with the source position of each character. */
class Mapped {
  chars: string[] = [];
  pos: number[] = [];
  push(s: string, at: number): void {
    for (const ch of s) {
      for (let k = 0; k < ch.length; k++) {
        this.chars.push(ch[k]!);
        this.pos.push(at);
      }
    }
  }
  text(): string {
    return this.chars.join('');
  }
}

/** A literal's raw source text (between its delimiters) cooked as JavaScript does, each character mapped to its position. */
function cook(raw: string, base: number, into: Mapped): void {
  for (let i = 0; i < raw.length; ) {
    const c = raw[i]!;
    if (c !== '\\') {
      into.chars.push(c);
      into.pos.push(base + i);
      i++;
      continue;
    }
    const n = raw[i + 1] ?? '';
    const at = base + i;
    const simple: Record<string, string> = { n: '\n', r: '\r', t: '\t', b: '\b', f: '\f', v: '\v', '0': '\0' };
    if (n in simple) {
      into.push(simple[n]!, at);
      i += 2;
    } else if (n === '\r' || n === '\n' || n === '\u2028' || n === '\u2029') {
      i += n === '\r' && raw[i + 2] === '\n' ? 3 : 2;
    } else if (n === 'x') {
      into.push(String.fromCharCode(parseInt(raw.slice(i + 2, i + 4), 16) || 0), at);
      i += 4;
    } else if (n === 'u' && raw[i + 2] === '{') {
      const end = raw.indexOf('}', i);
      into.push(String.fromCodePoint(parseInt(raw.slice(i + 3, end), 16) || 0), at);
      i = end + 1;
    } else if (n === 'u') {
      into.push(String.fromCharCode(parseInt(raw.slice(i + 2, i + 6), 16) || 0), at);
      i += 6;
    } else {
      into.push(n, at);
      i += 2;
    }
  }
}

/** Knex's bindings as PostgreSQL placeholders: `??` an identifier, `?` a value; not inside quotes. */
function knexBindings(m: Mapped): Mapped {
  const out = new Mapped();
  let quote: string | null = null;
  let n = 0;
  for (let i = 0; i < m.chars.length; i++) {
    const c = m.chars[i]!;
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '?') {
      n++;
      if (m.chars[i + 1] === '?') {
        out.push(`${PLACEHOLDER_PREFIX}q${n}`, m.pos[i]!);
        i++;
      } else out.push(`$${n}`, m.pos[i]!);
      continue;
    }
    out.chars.push(c);
    out.pos.push(m.pos[i]!);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// TypeScript / JavaScript

interface Matcher {
  readonly removed: readonly RemovedStructure[];
  /** Property name → the removed columns an ORM maps to it. */
  readonly fields: ReadonlyMap<string, readonly RemovedStructure[]>;
}

function matcher(options: RefsScanOptions): Matcher {
  const schema = options.defaultSchema ?? 'public';
  const fields = new Map<string, RemovedStructure[]>();
  for (const [key, names] of Object.entries(options.fields ?? {})) {
    const parts = key.split('.');
    const column = parts.at(-1)!;
    const table = parts.at(-2);
    const s = parts.length > 2 ? parts.at(-3)! : schema;
    const r = options.removed.find((x) => x.column === column && x.table === table && x.schema === s);
    if (!r) continue;
    for (const n of names) fields.set(n, [...(fields.get(n) ?? []), r]);
  }
  return { removed: options.removed, fields };
}

/** Knex builder methods whose every string argument (and array element) is a column. */
const ALL_ARGS = new Set(['select', 'column', 'columns', 'pluck', 'first', 'distinct', 'distinctOn', 'groupBy', 'orderBy', 'returning', 'count', 'countDistinct', 'min', 'max', 'sum', 'sumDistinct', 'avg', 'avgDistinct']);
/** …whose first argument is a column (or an object of column → value). */
const FIRST_ARG = new Set([
  'where', 'andWhere', 'orWhere', 'whereNot', 'andWhereNot', 'orWhereNot', 'whereIn', 'whereNotIn', 'orWhereIn', 'orWhereNotIn',
  'whereNull', 'whereNotNull', 'orWhereNull', 'orWhereNotNull', 'whereBetween', 'whereNotBetween', 'orWhereBetween', 'orWhereNotBetween',
  'whereLike', 'whereILike', 'orWhereLike', 'orWhereILike', 'having', 'orHaving', 'havingIn', 'havingNotIn', 'havingNull', 'havingNotNull',
  'havingBetween', 'havingNotBetween', 'increment', 'decrement', 'onConflict', 'update',
]);
/** …whose object arguments' keys are columns. */
const OBJECT_KEYS = new Set(['insert', 'update', 'merge', 'upsert', 'where', 'andWhere', 'orWhere', 'whereNot', 'increment', 'decrement']);
/** …whose first argument is a table, the others columns. */
const JOINS = new Set(['join', 'innerJoin', 'leftJoin', 'leftOuterJoin', 'rightJoin', 'rightOuterJoin', 'fullOuterJoin', 'crossJoin']);
/** …whose first argument is the table. */
const TABLE_ARG = new Set(['from', 'into', 'table', 'update', 'insert', 'del', 'delete']);
const TABLE_SETTERS = new Set(['from', 'into', 'table']);
const BUILDER_BASE = /^(knex|db|trx|tx|transaction|qb|builder|query|queryBuilder|conn|connection)$|knex$/i;
const KNEX_METHODS = new Set([...ALL_ARGS, ...FIRST_ARG, ...OBJECT_KEYS, ...JOINS, ...TABLE_ARG, 'withSchema']);

/** `users`, `public.users`, `users as u`, `users u`. */
const TABLE_STRING = /^\s*(?:([\w$]+)\.)?([\w$]+)(?:\s+(?:as\s+)?([\w$]+))?\s*$/i;
/** `name`, `u.name`, `public.users.name`, `name as n`, `*`, `u.*`. */
const COLUMN_STRING = /^\s*(?:([\w$]+)\.)?(?:([\w$]+)\.)?([\w$]+|\*)(?:\s+as\s+[\w$]+)?\s*$/i;

interface ChainTable {
  readonly schema: string;
  readonly name: string;
  readonly alias: string;
}

function scanScript(ts: TsModule, file: string, text: string, m: Matcher): RawFinding[] {
  const ext = path.extname(file).toLowerCase();
  const kind = ext === '.tsx' ? ts.ScriptKind.TSX : ext === '.jsx' ? ts.ScriptKind.JSX : /\.[cm]?js$/.test(ext) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, kind);
  const out: RawFinding[] = [];
  /** Literals already read as part of a SQL text or a builder chain. */
  const consumed = new Set<TS.Node>();
  const chains = new Set<TS.Node>();
  const columns = m.removed.filter((r) => r.column !== undefined);
  const tables = m.removed.filter((r) => r.column === undefined);

  const isString = (n: TS.Node): n is TS.StringLiteral | TS.NoSubstitutionTemplateLiteral => ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n);

  /** A literal (or template) as SQL, if it is: its references, mapped to source positions. */
  const sqlLiteral = (node: TS.StringLiteral | TS.NoSubstitutionTemplateLiteral | TS.TemplateExpression): boolean => {
    const attempt = (placeholder: (i: number) => string): Mapped => {
      const mp = new Mapped();
      if (ts.isTemplateExpression(node)) {
        cook(node.head.rawText ?? node.head.text, node.head.getStart(sf) + 1, mp);
        node.templateSpans.forEach((span, i) => {
          mp.push(placeholder(i + 1), span.expression.getStart(sf));
          cook(span.literal.rawText ?? span.literal.text, span.literal.getStart(sf) + 1, mp);
        });
      } else {
        const start = node.getStart(sf) + 1;
        cook(sf.text.slice(start, node.getEnd() - 1), start, mp);
      }
      return mp;
    };
    const asValues = attempt((i) => `$${i}`);
    if (!SQL_START.test(asValues.text())) return false;
    const tries = [asValues, knexBindings(asValues)];
    if (ts.isTemplateExpression(node)) tries.push(attempt((i) => `${PLACEHOLDER_PREFIX}${i}`), knexBindings(attempt((i) => `${PLACEHOLDER_PREFIX}${i}`)));
    for (const t of tries) {
      let refs;
      try {
        refs = sqlRefs(t.text(), m.removed);
      } catch {
        continue;
      }
      for (const r of refs) out.push({ pos: t.pos[r.offset] ?? node.getStart(sf), kind: 'sql-string', removed: r.removed });
      return true;
    }
    return false;
  };

  const unwrap = (e: TS.Expression): TS.Expression => {
    let x = e;
    while (ts.isParenthesizedExpression(x) || ts.isNonNullExpression(x) || ts.isAwaitExpression(x) || ts.isAsExpression(x)) x = x.expression;
    return x;
  };

  /** The outermost call of the member-call chain `node` is part of. */
  const outermost = (call: TS.CallExpression): TS.CallExpression => {
    let top: TS.Node = call;
    for (;;) {
      const p = top.parent;
      if (p && ts.isPropertyAccessExpression(p) && p.expression === top && p.parent && ts.isCallExpression(p.parent) && p.parent.expression === p) top = p.parent;
      else if (p && (ts.isNonNullExpression(p) || ts.isParenthesizedExpression(p))) top = p;
      else break;
    }
    return ts.isCallExpression(top) ? top : call;
  };

  /** The name a chain starts from: `knex` in `knex.select(…)`, `db` in `this.db('users')`. */
  const baseName = (x: TS.Expression): string | null => {
    const y = unwrap(x);
    if (ts.isIdentifier(y)) return y.text;
    if (ts.isPropertyAccessExpression(y)) return y.name.text;
    if (ts.isCallExpression(y)) return baseName(y.expression);
    return null;
  };

  const knexChain = (top: TS.CallExpression): void => {
    // From the outermost call down to the root: [root call?, ...method calls] in source order.
    const segments: { name: string; call: TS.CallExpression }[] = [];
    let e: TS.Expression = top;
    let root: TS.CallExpression | null = null;
    for (;;) {
      e = unwrap(e);
      if (ts.isCallExpression(e)) {
        const callee = unwrap(e.expression);
        if (ts.isPropertyAccessExpression(callee)) {
          segments.unshift({ name: callee.name.text, call: e });
          e = callee.expression;
          continue;
        }
        root = e;
        break;
      }
      if (ts.isPropertyAccessExpression(e)) {
        e = e.expression;
        continue;
      }
      break;
    }
    if (!segments.some((s) => KNEX_METHODS.has(s.name))) return;
    // A builder, not any object with an `update` or `first` method (a hash, a list): a table given to it, two builder
    // methods, or a base named like a Knex instance or query.
    const base = baseName(e);
    const isBuilder =
      (root !== null && root.arguments.length === 1 && isString(root.arguments[0]!) && TABLE_STRING.test(root.arguments[0].text)) ||
      segments.some((s) => TABLE_SETTERS.has(s.name) || JOINS.has(s.name) || s.name === 'withSchema' || s.name === 'query') ||
      segments.filter((s) => KNEX_METHODS.has(s.name)).length >= 2 ||
      (base !== null && BUILDER_BASE.test(base));
    if (!isBuilder) return;
    const known: ChainTable[] = [];
    let schema = '';
    const tableArg = (a: TS.Expression | undefined, seg: TS.Node) => {
      if (!a || !isString(a)) return;
      const t = TABLE_STRING.exec(a.text);
      if (!t) return;
      consumed.add(a);
      known.push({ schema: t[1] ?? '', name: t[2]!, alias: t[3] ?? '' });
      for (const r of tables) if (r.table === t[2] && (!t[1] || t[1] === r.schema)) out.push({ pos: a.getStart(sf) + 1, kind: 'knex-builder', removed: r });
      void seg;
    };
    // The root `knex('users')`, `db('users as u')`, `trx('users')`: a call of a name with a table string.
    if (root && root.arguments.length === 1) tableArg(root.arguments[0], root);
    for (const s of segments) {
      if (s.name === 'withSchema' && s.call.arguments[0] && isString(s.call.arguments[0])) {
        schema = s.call.arguments[0].text;
        consumed.add(s.call.arguments[0]);
      }
      if (TABLE_SETTERS.has(s.name) || JOINS.has(s.name)) tableArg(s.call.arguments[0], s.call);
    }
    const resolved = known.map((t) => ({ ...t, schema: t.schema || schema }));
    const unknown = resolved.length === 0;
    const columnString = (a: TS.Node) => {
      if (!isString(a)) return;
      const c = COLUMN_STRING.exec(a.text);
      if (!c) return;
      consumed.add(a);
      const q1 = c[1];
      const q2 = c[2];
      const col = c[3]!;
      for (const r of columns) {
        if (col !== r.column && col !== '*') continue;
        let hit: boolean;
        if (q1 && q2) hit = q1 === r.schema && q2 === r.table;
        else if (q1) {
          const target = resolved.find((t) => (t.alias || t.name) === q1) ?? resolved.find((t) => t.name === q1);
          hit = target ? target.name === r.table && (!target.schema || target.schema === r.schema) : q1 === r.table || (unknown && col !== '*');
        } else hit = col === '*' ? resolved.some((t) => t.name === r.table) : unknown || resolved.some((t) => t.name === r.table && (!t.schema || t.schema === r.schema));
        if (hit) out.push({ pos: a.getStart(sf) + 1, kind: 'knex-builder', removed: r });
      }
    };
    const objectKeys = (o: TS.Node) => {
      if (ts.isArrayLiteralExpression(o)) return o.elements.forEach(objectKeys);
      if (!ts.isObjectLiteralExpression(o)) return;
      for (const p of o.properties) {
        const keyNode = ts.isPropertyAssignment(p) || ts.isShorthandPropertyAssignment(p) ? p.name : null;
        if (!keyNode) continue;
        const key = ts.isIdentifier(keyNode) || ts.isStringLiteral(keyNode) ? keyNode.text : null;
        if (key === null) continue;
        const fake = { text: key } as const;
        const c = COLUMN_STRING.exec(fake.text);
        if (!c || c[3] === '*') continue;
        for (const r of columns) {
          if (c[3] !== r.column) continue;
          const q = c[2] ?? c[1];
          const hit = q ? q === r.table || resolved.some((t) => t.alias === q && t.name === r.table) : unknown || resolved.some((t) => t.name === r.table);
          if (hit) out.push({ pos: keyNode.getStart(sf), kind: 'knex-builder', removed: r });
        }
      }
    };
    for (const s of segments) {
      const args = s.call.arguments;
      if (ALL_ARGS.has(s.name)) {
        for (const a of args) {
          if (ts.isArrayLiteralExpression(a)) a.elements.forEach(columnString);
          else if (ts.isObjectLiteralExpression(a)) {
            // select({ alias: 'name' })
            for (const p of a.properties) if (ts.isPropertyAssignment(p)) columnString(p.initializer);
          } else columnString(a);
        }
      }
      if (FIRST_ARG.has(s.name) && args[0] && !TABLE_SETTERS.has(s.name)) {
        if (ts.isArrayLiteralExpression(args[0])) args[0].elements.forEach(columnString);
        else columnString(args[0]);
      }
      if (OBJECT_KEYS.has(s.name)) for (const a of args) objectKeys(a);
      if (JOINS.has(s.name)) for (const a of args.slice(1)) columnString(a);
    }
  };

  const visit = (node: TS.Node): void => {
    if (ts.isCallExpression(node)) {
      const top = outermost(node);
      if (!chains.has(top)) {
        chains.add(top);
        knexChain(top);
      }
    }
    if ((isString(node) || ts.isTemplateExpression(node)) && !consumed.has(node)) {
      if (!sqlLiteral(node) && isString(node)) identifierString(node);
    }
    if (m.fields.size > 0) ormField(node);
    ts.forEachChild(node, visit);
  };

  const identifierString = (node: TS.StringLiteral | TS.NoSubstitutionTemplateLiteral) => {
    const s = node.text;
    for (const r of m.removed) {
      const names = r.column === undefined ? [r.table, `${r.schema}.${r.table}`] : [`${r.table}.${r.column}`, `${r.schema}.${r.table}.${r.column}`];
      if (names.includes(s)) out.push({ pos: node.getStart(sf) + 1, kind: 'identifier', removed: r });
    }
  };

  const ormField = (node: TS.Node) => {
    let nameNode: TS.Node | null = null;
    let name: string | null = null;
    if (ts.isPropertyAccessExpression(node)) nameNode = node.name;
    else if ((ts.isPropertyAssignment(node) || ts.isShorthandPropertyAssignment(node) || ts.isPropertyDeclaration(node) || ts.isPropertySignature(node) || ts.isMethodDeclaration(node)) && node.name) nameNode = node.name;
    else if (ts.isBindingElement(node)) nameNode = node.propertyName ?? node.name;
    else if (ts.isElementAccessExpression(node) && isString(node.argumentExpression)) nameNode = node.argumentExpression;
    if (!nameNode) return;
    if (ts.isIdentifier(nameNode) || ts.isPrivateIdentifier(nameNode) || isString(nameNode)) name = nameNode.text;
    const hits = name === null ? undefined : m.fields.get(name);
    for (const r of hits ?? []) out.push({ pos: nameNode.getStart(sf), kind: 'orm-field', removed: r });
  };

  visit(sf);
  return out;
}

/**
 * A tokenizer for the SQL that PostgreSQL's own printers produce (pg_get_indexdef, pg_get_constraintdef), and the
 * one rewrite the column changes need: a column reference replaced by another column.
 *
 * Why not text search: a column named `id` also occurs inside `'paid'`, `"user id"`, `valid_until`, a function
 * `id(…)` or a cast `::id`. Why not a full parser: no maintained JavaScript library deparses PostgreSQL expressions
 * without a native build, and the printers' output is regular: names are lower-case unless quoted, keywords are
 * upper-case, type names follow `::` or another lower-case word, functions are followed by `(`. Every rewritten
 * definition is then checked against the catalog (the columns the built object depends on, see
 * column-attachments.ts), so a misread token stops the migration instead of building a wrong object.
 */
export type TokenKind = 'word' | 'quoted' | 'string' | 'number' | 'op' | 'punct' | 'space';

export interface Token {
  readonly kind: TokenKind;
  readonly text: string;
}

const WORD_START = /[A-Za-z_\u0080-\uffff]/;
const WORD_PART = /[A-Za-z0-9_$\u0080-\uffff]/;
const OP_CHARS = '+-*/<>=~!@#%^&|`?:';

export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    const start = i;
    if (/\s/.test(c)) {
      while (i < n && /\s/.test(sql[i]!)) i++;
      out.push({ kind: 'space', text: sql.slice(start, i) });
    } else if (c === "'" || ((c === 'E' || c === 'e') && sql[i + 1] === "'")) {
      const escapes = c !== "'";
      i += escapes ? 2 : 1;
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i] === "'") {
          i++;
          break;
        } else i++;
      }
      out.push({ kind: 'string', text: sql.slice(start, i) });
    } else if (c === '"') {
      i++;
      while (i < n) {
        if (sql[i] === '"' && sql[i + 1] === '"') i += 2;
        else if (sql[i] === '"') {
          i++;
          break;
        } else i++;
      }
      out.push({ kind: 'quoted', text: sql.slice(start, i) });
    } else if (c === '$' && /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.test(sql.slice(i))) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i))![0];
      const end = sql.indexOf(tag, i + tag.length);
      i = end < 0 ? n : end + tag.length;
      out.push({ kind: 'string', text: sql.slice(start, i) });
    } else if (WORD_START.test(c)) {
      while (i < n && WORD_PART.test(sql[i]!)) i++;
      out.push({ kind: 'word', text: sql.slice(start, i) });
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(sql[i + 1] ?? ''))) {
      while (i < n && /[0-9.eE]/.test(sql[i]!)) i++;
      out.push({ kind: 'number', text: sql.slice(start, i) });
    } else if (OP_CHARS.includes(c)) {
      while (i < n && OP_CHARS.includes(sql[i]!)) i++;
      out.push({ kind: 'op', text: sql.slice(start, i) });
    } else {
      i++;
      out.push({ kind: 'punct', text: c });
    }
  }
  return out;
}

/** The name an identifier token stands for: a quoted one unquoted, a bare one as written (the printers fold nothing). */
export function tokenName(t: Token): string | null {
  if (t.kind === 'quoted') return t.text.slice(1, -1).replace(/""/g, '"');
  if (t.kind === 'word') return t.text;
  return null;
}

const isKeyword = (t: Token): boolean => t.kind === 'word' && /[A-Z]/.test(t.text) && t.text === t.text.toUpperCase();

function significant(tokens: readonly Token[], i: number, step: 1 | -1): Token | undefined {
  for (let j = i + step; j >= 0 && j < tokens.length; j += step) if (tokens[j]!.kind !== 'space') return tokens[j];
  return undefined;
}

/**
 * Whether token i is a reference to column `name`: an identifier with that name that is not a function (followed by
 * `(`), a qualifier or a field (next to `.`), a type (after `::` or another lower-case word, as in `time zone`), an
 * operator class (after a column), or a collation.
 */
export function isColumnRef(tokens: readonly Token[], i: number, name: string): boolean {
  const t = tokens[i]!;
  if (tokenName(t) !== name || isKeyword(t)) return false;
  const prev = significant(tokens, i, -1);
  const next = significant(tokens, i, 1);
  if (next && (next.text === '(' || next.text === '.')) return false;
  if (prev) {
    if (prev.text === '.' || prev.text === '::') return false;
    if (prev.kind === 'quoted' || (prev.kind === 'word' && !isKeyword(prev))) return false;
    if (prev.kind === 'word' && ['COLLATE', 'USING', 'TABLESPACE', 'INDEX', 'ON', 'ONLY', 'REFERENCES', 'CONSTRAINT'].includes(prev.text)) return false;
  }
  return true;
}

/** Indexes of the tokens in [from, to) that reference column `name`. */
export function columnRefs(tokens: readonly Token[], name: string, from = 0, to = tokens.length): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) if (isColumnRef(tokens, i, name)) out.push(i);
  return out;
}

/** The index just past the parenthesised group that opens at token `open`. */
export function groupEnd(tokens: readonly Token[], open: number): number {
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    if (tokens[i]!.text === '(') depth++;
    else if (tokens[i]!.text === ')' && --depth === 0) return i + 1;
  }
  return tokens.length;
}

export function nextSignificantIndex(tokens: readonly Token[], i: number): number {
  for (let j = i + 1; j < tokens.length; j++) if (tokens[j]!.kind !== 'space') return j;
  return tokens.length;
}

export function join(tokens: readonly Token[]): string {
  return tokens.map((t) => t.text).join('');
}

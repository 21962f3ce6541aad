import type { RemovedStructure } from '../changes/removed.js';
import { list, obj, parseSqlSync, str, type Json } from '../postgres/sql-ast.js';

/**
 * Where a SQL text (a string in the application's code, or a .sql file) mentions a removed table or column, read from
 * PostgreSQL's own parse tree: a column is a `ColumnRef` (or an INSERT / UPDATE target), a table a `RangeVar`, so
 * `name` inside `'paid by name'`, a comment, `full_name` or an alias `AS name` is never one.
 *
 * Scope is the statement: a bare column counts when the statement reads the removed column's table (any of its
 * FROM / JOIN / INSERT / UPDATE / DELETE relations), or when no table of it is known (a table name that was a `${…}`
 * substitution, see PLACEHOLDER_PREFIX, or no table at all, a fragment). `SELECT *` (or `t.*`) from the table, and an
 * INSERT into it without a column list, count for each of its removed columns: both break when a column goes.
 */

/** Identifier put where a template substitution stood when a value placeholder ($n) did not parse: an unknown table. */
export const PLACEHOLDER_PREFIX = '__zd_sub_';

export interface SqlRef {
  readonly removed: RemovedStructure;
  /** Offset in the parsed text (characters, not bytes). */
  readonly offset: number;
}

interface Rel {
  readonly schema: string;
  readonly name: string;
  readonly alias: string;
  readonly location: number;
}

interface Acc {
  readonly rels: Rel[];
  readonly cols: { readonly fields: readonly string[]; readonly location: number }[];
  /** INSERT / UPDATE / ON CONFLICT targets; column null: an INSERT without a column list. */
  readonly assigns: { readonly rel: Rel; readonly column: string | null; readonly location: number }[];
  readonly ctes: Set<string>;
}

const relOf = (v: unknown): Rel => {
  const r = obj(v);
  return { schema: str(r.schemaname), name: str(r.relname), alias: str(obj(r.alias).aliasname), location: Number(r.location ?? -1) };
};

function walk(v: unknown, acc: Acc): void {
  if (Array.isArray(v)) {
    for (const x of v) walk(x, acc);
    return;
  }
  if (!v || typeof v !== 'object') return;
  const o = v as Json;
  // A RangeVar: wrapped as { RangeVar: {...} } in FROM lists, bare as an INSERT / UPDATE / DELETE's `relation`.
  if (typeof o.relname === 'string') acc.rels.push(relOf(o));
  if (o.ColumnRef) {
    const c = obj(o.ColumnRef);
    acc.cols.push({ fields: list(c.fields).map((f) => (obj(f).A_Star ? '*' : str(obj(obj(f).String).sval))), location: Number(c.location ?? -1) });
  }
  if (o.CommonTableExpr) acc.ctes.add(str(obj(o.CommonTableExpr).ctename));
  const targets = (rel: Rel, xs: unknown, fallback: number) => {
    for (const x of list(xs)) {
      const t = obj(obj(x).ResTarget);
      if (str(t.name)) acc.assigns.push({ rel, column: str(t.name), location: Number(t.location ?? fallback) });
    }
  };
  if (o.InsertStmt) {
    const s = obj(o.InsertStmt);
    const rel = relOf(s.relation);
    if (list(s.cols).length === 0) acc.assigns.push({ rel, column: null, location: rel.location });
    targets(rel, s.cols, rel.location);
    const conflict = obj(s.onConflictClause);
    const at = Number(conflict.location ?? rel.location);
    for (const e of list(obj(conflict.infer).indexElems)) {
      const name = str(obj(obj(e).IndexElem).name);
      if (name) acc.assigns.push({ rel, column: name, location: at });
    }
    targets(rel, conflict.targetList, at);
  }
  if (o.UpdateStmt) {
    const s = obj(o.UpdateStmt);
    const rel = relOf(s.relation);
    targets(rel, s.targetList, rel.location);
  }
  for (const x of Object.values(o)) if (x && typeof x === 'object') walk(x, acc);
}

/** PostgreSQL's locations are byte offsets into the UTF-8 text; ours are string indexes. */
function charOffsets(text: string): (byte: number) => number {
  if (!/[^\x00-\x7f]/.test(text)) return (b) => b;
  const buf = Buffer.from(text, 'utf8');
  return (b) => buf.subarray(0, b).toString('utf8').length;
}

/** The references to `removed` in `sql`, one or more statements. Throws the parser's error when it is not SQL. */
export function sqlRefs(sql: string, removed: readonly RemovedStructure[]): SqlRef[] {
  const statements = parseSqlSync(sql);
  const toChar = charOffsets(sql);
  const out = new Map<string, SqlRef>();
  const add = (r: RemovedStructure, location: number, fallback: number) => {
    const offset = toChar(location >= 0 ? location : fallback);
    out.set(`${offset}\u0000${r.schema}.${r.table}.${r.column ?? ''}`, { removed: r, offset });
  };
  for (const st of statements) {
    const acc: Acc = { rels: [], cols: [], assigns: [], ctes: new Set() };
    walk(st.node, acc);
    // A CTE's name is not a table; a substitution's placeholder is a table we cannot know.
    const real = acc.rels.filter((r) => !(r.schema === '' && acc.ctes.has(r.name)) && !r.name.startsWith(PLACEHOLDER_PREFIX));
    const unknown = real.length === 0 || acc.rels.some((r) => r.name.startsWith(PLACEHOLDER_PREFIX));
    const byName = new Map<string, Rel>();
    for (const r of acc.rels) byName.set(r.alias || r.name, r);
    // The statement's start, for a node without a location of its own.
    const start = Buffer.byteLength(sql.slice(0, st.offset), 'utf8');
    for (const r of removed) {
      const matches = (rel: Rel) => rel.name === r.table && (rel.schema === '' ? !acc.ctes.has(rel.name) : rel.schema === r.schema);
      if (r.column === undefined) {
        for (const rel of real) if (matches(rel)) add(r, rel.location, start);
        continue;
      }
      const touches = real.some(matches);
      for (const c of acc.cols) {
        const last = c.fields.at(-1)!;
        if (last !== r.column && last !== '*') continue;
        const quals = c.fields.slice(0, -1);
        let hit = false;
        if (quals.length === 0) hit = last === '*' ? touches : touches || unknown;
        else if (quals.length === 1) {
          const target = byName.get(quals[0]!);
          if (target) hit = !target.name.startsWith(PLACEHOLDER_PREFIX) ? matches(target) : last === r.column;
          else hit = last === r.column && (quals[0] === r.table || unknown);
        } else hit = quals.at(-2) === r.schema && quals.at(-1) === r.table;
        if (hit) add(r, c.location, start);
      }
      for (const a of acc.assigns) if (matches(a.rel) && (a.column === null || a.column === r.column)) add(r, a.location, start);
    }
  }
  return [...out.values()].sort((a, b) => a.offset - b.offset);
}

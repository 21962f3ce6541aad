import { isOwnStatement } from './stat-statements.js';
import { list, obj, parseSqlSync, sqlParserReady, str } from './sql-ast.js';

/**
 * What a statement pg_stat_statements lists is, for the two readers that must agree on it: the contract's query
 * gate (ops/queries.ts: who still uses a removed column) and the monitor's relative triggers (monitor/relative.ts:
 * the application's top queries). Read by PostgreSQL's parser, so a comment, a string or a leading parenthesis cannot
 * make `BEGIN` look like a query or a query look like `SET`.
 *
 * - `data`: the application's reads and writes (SELECT, VALUES, TABLE, INSERT, UPDATE, DELETE, MERGE, COPY, DECLARE
 *   CURSOR, EXPLAIN of them; WITH … in front of any);
 * - `catalog`: reads of system catalogs only (pg_catalog, information_schema, `pg_*` views): an ORM's schema cache, a
 *   driver's type lookup, our own catalog snapshot. They never touch the application's tables, and their cost
 *   follows the catalog, not the application's load;
 * - `utility`: BEGIN, COMMIT, SET, SHOW, DDL, VACUUM, CALL, DO …;
 * - `ours`: the marker comment, a `_zd_` name (isOwnStatement), or a relation of the state schema;
 * - `hidden`: `<insufficient privilege>` (another role's statement, to a role without pg_read_all_stats);
 * - `unparsed`: text PostgreSQL's parser refuses.
 */
export type StatementKind = 'data' | 'catalog' | 'utility' | 'ours' | 'hidden' | 'unparsed';

export const HIDDEN_STATEMENT = '<insufficient privilege>';

const DATA_KINDS = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt', 'CopyStmt', 'DeclareCursorStmt', 'ExplainStmt']);
const CATALOG_SCHEMAS = new Set(['pg_catalog', 'information_schema']);

interface Relation {
  readonly schema: string;
  readonly name: string;
}

function relations(v: unknown, rels: Relation[], ctes: Set<string>): void {
  if (Array.isArray(v)) {
    for (const x of v) relations(x, rels, ctes);
    return;
  }
  if (!v || typeof v !== 'object') return;
  const o = v as { readonly [k: string]: unknown };
  // RangeVars are wrapped in FROM lists and bare as an INSERT / UPDATE / DELETE / COPY target: both carry relname.
  if (typeof o.relname === 'string') rels.push({ schema: str(o.schemaname), name: o.relname });
  if (o.CommonTableExpr) ctes.add(str(obj(o.CommonTableExpr).ctename));
  for (const x of Object.values(o)) relations(x, rels, ctes);
}

/**
 * The kind of a statement's text (normalized or not). `stateSchema`: the state schema's relations are ours. Needs
 * loadSqlParser() to have resolved.
 */
export function classifyStatement(query: string, opts: { readonly stateSchema?: string } = {}): StatementKind {
  if (query === HIDDEN_STATEMENT) return 'hidden';
  if (isOwnStatement(query)) return 'ours';
  if (!sqlParserReady()) throw new Error('classifyStatement needs PostgreSQL\'s parser: await loadSqlParser() first (lib/postgres/sql-ast.ts)');
  let stmts;
  try {
    stmts = parseSqlSync(query);
  } catch {
    return 'unparsed';
  }
  if (stmts.length === 0) return 'unparsed';
  if (!stmts.every((s) => DATA_KINDS.has(s.kind))) return 'utility';
  const rels: Relation[] = [];
  const ctes = new Set<string>();
  relations(stmts.map((s) => s.node), rels, ctes);
  const tables = rels.filter((r) => r.schema !== '' || !ctes.has(r.name));
  if (opts.stateSchema && tables.some((r) => r.schema === opts.stateSchema)) return 'ours';
  // A statement on no table at all (`SELECT 1`, `SELECT now()`) is the application's: a health check is still its own.
  // `pg_` names in any schema: PostgreSQL's views, and pg_stat_statements in the schema it was installed in (a
  // monitoring agent's reads).
  if (tables.length > 0 && tables.every((r) => r.name.startsWith('pg_') || CATALOG_SCHEMAS.has(r.schema))) return 'catalog';
  return 'data';
}

/** A statement of the application on its data: what the contract's query gate and the relative triggers look at. */
export function isApplicationDataStatement(query: string, opts: { readonly stateSchema?: string } = {}): boolean {
  return classifyStatement(query, opts) === 'data';
}

/**
 * A read of ours that has the shape of one the application may run (the monitor's canary: `SELECT * FROM t WHERE id
 * = $1`), given a pg_stat_statements entry of its own. A comment would not do it: pg_stat_statements ignores comments
 * when it groups statements, so the application's identical read would share the entry, and whichever ran first
 * gives the text, hiding the application's calls behind our marker. A CTE's name is part of the query id, and an
 * inlined single-use CTE (PostgreSQL 12+) is planned like the query it wraps. Only a plain SELECT is wrapped (a
 * locking clause would keep the CTE from being inlined, a write has no rows to read back); anything else, or text the
 * parser refuses, is returned as it is.
 */
export function ownEntrySql(sql: string, name: string): string {
  if (!/^_zd_[a-z0-9_]+$/.test(name)) throw new Error(`ownEntrySql: "${name}" is not a _zd_ name (lowercase letters, digits, _): isOwnStatement would not see it`);
  // Already an entry of ours (the probes batch-sql.ts builds come wrapped): wrapping again changes nothing but the text.
  if (isOwnStatement(sql) || !sqlParserReady()) return sql;
  let stmts;
  try {
    stmts = parseSqlSync(sql);
  } catch {
    return sql;
  }
  const sel = stmts.length === 1 && stmts[0]!.kind === 'SelectStmt' ? obj(stmts[0]!.node.SelectStmt) : null;
  if (!sel || list(sel.lockingClause).length > 0 || sel.intoClause) return sql;
  // On lines of their own: a trailing `-- comment` must not swallow the closing parenthesis.
  return `WITH ${name} AS (\n${stmts[0]!.text.replace(/;\s*$/, '')}\n) SELECT * FROM ${name}`;
}

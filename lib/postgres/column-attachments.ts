import type { Statement } from '../db/db.js';
import type { ColumnInfo, TableInfo } from './catalog.js';
import { ChangeInputError, ident, literal, objectName, qualified, tableLabel, type TableName, dollarQuote } from './identifiers.js';
import { recreateIndexConcurrently } from './index-sql.js';
import { columnRefs, groupEnd, join, nextSignificantIndex, tokenName, tokenize, type Token } from './sql-tokens.js';

/**
 * Everything attached to a column that a column swap (type change, rename) or a drop must carry over or restore:
 * indexes (plain, partial, expression, unique, primary key), CHECK and foreign-key constraints of the table, and
 * foreign keys of other tables that reference the column. Definitions are PostgreSQL's own (pg_get_indexdef,
 * pg_get_constraintdef, read into the catalog snapshot at first run); a column reference in them is replaced
 * token by token (see sql-tokens.ts) and every object built from a rewritten definition is compared with the
 * original through the catalog (checkTwinsStatement) before anything is dropped.
 * Default, NOT NULL, identity and owned sequences, collation, comment and column privileges are handled by the
 * statements further down, read from the catalog at run time.
 */
export interface AttachedIndex {
  readonly name: string;
  readonly definition: string;
  /** The primary key or unique constraint the index implements, if any. */
  readonly constraint: { readonly name: string; readonly kind: 'p' | 'u'; readonly deferrable: string } | null;
}

export interface AttachedConstraint {
  readonly name: string;
  /** 'c' CHECK, 'f' foreign key of this table. */
  readonly kind: 'c' | 'f';
  readonly definition: string;
  readonly validated: boolean;
}

export interface IncomingForeignKey {
  readonly name: string;
  readonly table: TableName;
  readonly definition: string;
  readonly validated: boolean;
}

export interface ColumnAttachments {
  readonly indexes: readonly AttachedIndex[];
  readonly constraints: readonly AttachedConstraint[];
  readonly incoming: readonly IncomingForeignKey[];
}


export const doBlock = (body: string): Statement => ({ text: `DO ${dollarQuote(body)}` });

const regclass = (t: TableName): string => `${literal(qualified(t))}::regclass`;

/** The part of an index definition after `USING am`, where the key list, INCLUDE and WHERE are. */
function indexBodyStart(tokens: readonly Token[]): number {
  const using = tokens.findIndex((t) => t.kind === 'word' && t.text === 'USING');
  if (using < 0) throw new Error('unexpected index definition from pg_get_indexdef (no USING)');
  return nextSignificantIndex(tokens, nextSignificantIndex(tokens, using));
}

function replaceRefs(tokens: Token[], from: string, to: string, start: number, end: number): number {
  const refs = columnRefs(tokens, from, start, end);
  for (const i of refs) tokens[i] = { kind: 'quoted', text: ident(to) };
  return refs.length;
}

/**
 * Positions of the references to `column` in an index definition: after `USING am` (key list, INCLUDE, WHERE), but
 * not in reloptions (`WITH (fillfactor='70')`) nor after TABLESPACE.
 */
function indexRefPositions(tokens: readonly Token[], column: string): number[] {
  const out: number[] = [];
  let i = indexBodyStart(tokens);
  while (i < tokens.length) {
    const t = tokens[i]!;
    if (t.kind === 'word' && t.text === 'WITH') {
      i = groupEnd(tokens, nextSignificantIndex(tokens, i));
      continue;
    }
    if (t.kind === 'word' && t.text === 'TABLESPACE') {
      i = nextSignificantIndex(tokens, nextSignificantIndex(tokens, i)) + 1;
      continue;
    }
    out.push(...columnRefs(tokens, column, i, i + 1));
    i++;
  }
  return out;
}

/** How many references to `column` the index definition holds (key, INCLUDE, expressions, predicate). */
export function indexReferences(definition: string, column: string): number {
  return indexRefPositions(tokenize(definition), column).length;
}

/** The index definition with `from` replaced by `to` and the index renamed, as CREATE INDEX CONCURRENTLY IF NOT EXISTS. */
export function rewriteIndexDefinition(definition: string, from: string | null, to: string, newName: string): string {
  const tokens = tokenize(definition);
  const indexKw = tokens.findIndex((t) => t.kind === 'word' && t.text === 'INDEX');
  const nameAt = nextSignificantIndex(tokens, indexKw);
  if (indexKw < 0 || nameAt >= tokens.length) throw new Error(`unexpected index definition from pg_get_indexdef: ${definition}`);
  if (from !== null) for (const i of indexRefPositions(tokens, from)) tokens[i] = { kind: 'quoted', text: ident(to) };
  tokens[nameAt] = { kind: 'quoted', text: ident(newName) };
  return recreateIndexConcurrently(join(tokens)).text;
}

function stripNotValid(definition: string): string {
  return definition.replace(/\s+NOT VALID$/, '');
}

/** A CHECK definition with every reference to `from` replaced. */
export function rewriteCheck(definition: string, from: string, to: string): string {
  const tokens = tokenize(stripNotValid(definition));
  replaceRefs(tokens, from, to, 0, tokens.length);
  return join(tokens);
}

/**
 * A foreign key of this table with its own column `from` replaced: in the column list, and in the column list of
 * ON DELETE SET NULL / SET DEFAULT (…), never in the referenced table's columns.
 */
export function rewriteOutgoingForeignKey(definition: string, from: string, to: string): string {
  const tokens = tokenize(stripNotValid(definition));
  const open = tokens.findIndex((t) => t.text === '(');
  replaceRefs(tokens, from, to, open, groupEnd(tokens, open));
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind === 'word' && (t.text === 'NULL' || t.text === 'DEFAULT')) {
      const next = nextSignificantIndex(tokens, i);
      if (tokens[next]?.text === '(') replaceRefs(tokens, from, to, next, groupEnd(tokens, next));
    }
  }
  return join(tokens);
}

/** A foreign key of another table with the referenced column `from` (of the table after REFERENCES) replaced. */
export function rewriteIncomingForeignKey(definition: string, from: string, to: string): string {
  const tokens = tokenize(stripNotValid(definition));
  const refs = tokens.findIndex((t) => t.kind === 'word' && t.text === 'REFERENCES');
  const open = tokens.findIndex((t, i) => i > refs && t.text === '(');
  if (refs < 0 || open < 0) throw new Error(`unexpected foreign key definition: ${definition}`);
  replaceRefs(tokens, from, to, open, groupEnd(tokens, open));
  return join(tokens);
}

/** The referencing columns of a foreign key definition. */
export function foreignKeyColumns(definition: string): string[] {
  const tokens = tokenize(definition);
  const open = tokens.findIndex((t) => t.text === '(');
  return tokens
    .slice(open, groupEnd(tokens, open))
    .map(tokenName)
    .filter((x): x is string => x !== null);
}

/**
 * What is attached to `column` in the snapshot; throws ChangeInputError naming what cannot be carried (exclusion
 * constraints, a generated column), having changed nothing.
 */
export function columnAttachments(info: TableInfo, col: ColumnInfo, what: string): ColumnAttachments {
  const t = info.table;
  const refused: string[] = [];
  if (col.generated) refused.push('its generated expression (a generated column cannot be written by a sync trigger)');
  const constraintsByName = new Map((info.tableConstraints ?? []).map((c) => [c.name, c]));
  const indexes: AttachedIndex[] = [];
  for (const ix of info.indexes ?? []) {
    if (indexReferences(ix.definition, col.name) === 0) continue;
    const con = ix.constraint ? constraintsByName.get(ix.constraint) : undefined;
    if (con && con.type !== 'p' && con.type !== 'u') {
      refused.push(`the exclusion constraint ${con.name}`);
      continue;
    }
    if (!ix.valid) refused.push(`the INVALID index ${ix.name} (a failed concurrent build: drop it first)`);
    const deferrable = con ? (/\s(DEFERRABLE(?: INITIALLY DEFERRED)?)$/.exec(con.definition)?.[1] ?? '') : '';
    indexes.push({ name: ix.name, definition: ix.definition, constraint: con ? { name: con.name, kind: con.type as 'p' | 'u', deferrable } : null });
  }
  const constraints: AttachedConstraint[] = [];
  for (const c of col.constraints) {
    const def = constraintsByName.get(c.name);
    if (c.type === 'p' || c.type === 'u') continue; // carried with their index
    if (c.type === 'x') continue; // refused above with its index
    if (c.type === 't') {
      refused.push(`the constraint trigger ${c.name}`);
      continue;
    }
    if (!def) {
      refused.push(`the constraint ${c.name} (not in the catalog snapshot)`);
      continue;
    }
    constraints.push({ name: c.name, kind: c.type === 'f' ? 'f' : 'c', definition: def.definition, validated: def.validated });
  }
  const incoming: IncomingForeignKey[] = (info.referencingForeignKeys ?? [])
    .filter((fk) => fk.referencedColumns.includes(col.name))
    .map((fk) => ({ name: fk.name, table: fk.table, definition: fk.definition, validated: fk.validated }));
  for (const fk of incoming) {
    if (fk.table.schema === t.schema && fk.table.name === t.name && foreignKeyColumns(fk.definition).includes(col.name)) {
      refused.push(`the foreign key ${fk.name}, which references ${col.name} from ${col.name} itself`);
    }
  }
  if (refused.length > 0) {
    throw new ChangeInputError(
      `${what} cannot carry ${refused.join(', ')} on ${tableLabel(t)}.${col.name}; they would be lost. Nothing was changed. ` +
        'Drop them first (sql(), in an earlier migration) and recreate them after the contract.',
    );
  }
  return { indexes, constraints, incoming };
}

/** Names of the objects built for a column: `prefix` tells twins (zd_tw) from restored objects (zd_rs) apart. */
export function twinName(prefix: string, table: TableName, original: string): string {
  return objectName(prefix, table.name, original);
}

/** ADD CONSTRAINT … NOT VALID: a brief lock, no scan. */
export function addConstraintNotValid(t: TableName, name: string, definition: string): Statement {
  return { text: `ALTER TABLE ${qualified(t)} ADD CONSTRAINT ${ident(name)} ${stripNotValid(definition)} NOT VALID` };
}

export function renameConstraint(t: TableName, from: string, to: string): Statement {
  return { text: `ALTER TABLE ${qualified(t)} RENAME CONSTRAINT ${ident(from)} TO ${ident(to)}` };
}

export function renameIndex(schema: string, from: string, to: string): Statement {
  return { text: `ALTER INDEX ${qualified({ schema, name: from })} RENAME TO ${ident(to)}` };
}

export function dropConstraint(t: TableName, name: string): Statement {
  return { text: `ALTER TABLE ${qualified(t)} DROP CONSTRAINT IF EXISTS ${ident(name)}` };
}

/** Promotes a unique index to the primary key or unique constraint it was built for (no scan; renames the index). */
export function constraintUsingIndex(t: TableName, ix: AttachedIndex, index: string): Statement {
  const c = ix.constraint!;
  return {
    text: `ALTER TABLE ${qualified(t)} ADD CONSTRAINT ${ident(c.name)} ${c.kind === 'p' ? 'PRIMARY KEY' : 'UNIQUE'} USING INDEX ${ident(index)}${c.deferrable ? ` ${c.deferrable}` : ''}`,
  };
}

const attnum = (t: TableName, column: string): string =>
  `(SELECT attnum FROM pg_attribute WHERE attrelid = ${regclass(t)} AND attname = ${literal(column)} AND NOT attisdropped)`;

/**
 * Fails (rolling back its step) unless each built object uses exactly the columns its original uses, with `from`
 * replaced by `to`: key columns in order for indexes (0 for an expression), and every column an expression or
 * predicate reads (pg_depend), or conkey/confkey for constraints. This is what makes the token rewrite safe.
 */
export function checkTwinsStatement(
  t: TableName,
  from: string,
  to: string,
  pairs: { readonly indexes: readonly (readonly [string, string])[]; readonly constraints: readonly (readonly [TableName, string, string])[] },
): Statement {
  const idx = (name: string) => literal(qualified({ schema: t.schema, name }));
  const checks: string[] = [];
  for (const [orig, twin] of pairs.indexes) {
    const mapped = (expr: string) => `CASE WHEN ${expr} = _zd_from THEN _zd_to ELSE ${expr} END`;
    // Columns an index uses: its key, and what its expressions and predicate read (recorded on the index, or on the
    // constraint for an index that implements one).
    const used = (name: string) => `(SELECT k FROM pg_index i, unnest(i.indkey::int2[]) AS u(k) WHERE i.indexrelid = ${idx(name)}::regclass AND k <> 0
        UNION SELECT d.refobjsubid FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = ${idx(name)}::regclass AND d.refobjid = ${regclass(t)} AND d.refobjsubid > 0
        UNION SELECT d.refobjsubid FROM pg_depend d JOIN pg_constraint c ON d.classid = 'pg_constraint'::regclass AND d.objid = c.oid
         WHERE c.conindid = ${idx(name)}::regclass AND c.conrelid = ${regclass(t)} AND d.refobjid = ${regclass(t)} AND d.refobjsubid > 0) AS _zd_used(x)`;
    checks.push(`
  IF (SELECT array_agg(${mapped('k')} ORDER BY o) FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS u(k, o) WHERE i.indexrelid = ${idx(orig)}::regclass)
     IS DISTINCT FROM (SELECT array_agg(k ORDER BY o) FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS u(k, o) WHERE i.indexrelid = ${idx(twin)}::regclass)
  OR (SELECT array_agg(DISTINCT ${mapped('x')}) FROM ${used(orig)}) IS DISTINCT FROM (SELECT array_agg(DISTINCT x) FROM ${used(twin)})
  OR (SELECT (indisunique, indpred IS NULL, indexprs IS NULL) FROM pg_index WHERE indexrelid = ${idx(orig)}::regclass)
     IS DISTINCT FROM (SELECT (indisunique, indpred IS NULL, indexprs IS NULL) FROM pg_index WHERE indexrelid = ${idx(twin)}::regclass) THEN
    RAISE EXCEPTION 'index % built for % does not use the same columns as % with % in place of %; nothing was dropped. Please report this definition: %',
      ${literal(twin)}, ${literal(tableLabel(t))}, ${literal(orig)}, ${literal(to)}, ${literal(from)}, pg_get_indexdef(${idx(orig)}::regclass);
  END IF;`);
  }
  for (const [table, orig, twin] of pairs.constraints) {
    const con = (name: string) => `(SELECT oid FROM pg_constraint WHERE conrelid = ${regclass(table)} AND conname = ${literal(name)})`;
    const local = table.schema === t.schema && table.name === t.name;
    const key = (col: 'conkey' | 'confkey', name: string, map: boolean) =>
      `(SELECT array_agg(${map ? 'CASE WHEN k = _zd_from THEN _zd_to ELSE k END' : 'k'} ORDER BY o) FROM pg_constraint c, unnest(c.${col}) WITH ORDINALITY AS u(k, o) WHERE c.oid = ${con(name)})`;
    checks.push(`
  IF ${key('conkey', orig, local)} IS DISTINCT FROM ${key('conkey', twin, false)}
  OR ${key('confkey', orig, true)} IS DISTINCT FROM ${key('confkey', twin, false)} THEN
    RAISE EXCEPTION 'constraint % built on % does not use the same columns as % with % in place of %; nothing was dropped',
      ${literal(twin)}, ${literal(tableLabel(table))}, ${literal(orig)}, ${literal(to)}, ${literal(from)};
  END IF;`);
  }
  if (checks.length === 0) return { text: 'SELECT 1' };
  return doBlock(`
DECLARE _zd_from int2 := ${attnum(t, from)}; _zd_to int2 := ${attnum(t, to)};
BEGIN${checks.join('')}
END`);
}

/**
 * Refuses, rolling back its step, when something depends on `column` that the change does not carry: a view, a
 * rule, a policy, a trigger (UPDATE OF / WHEN), a statistics object, another column's generated expression, a
 * publication's column list, an index or constraint not in `known` (made after the first run, say). Sequences
 * owned by the column are carried (`allowSequences`) until the step that moves them.
 */
export function refuseUncarriedDependents(
  t: TableName,
  column: string,
  known: { readonly indexes: readonly string[]; readonly constraints: readonly string[] },
  what: string,
  opts: { readonly allowSequences: boolean; readonly requirePlainTable: boolean },
): Statement {
  const arr = (xs: readonly string[]) => `ARRAY[${xs.map(literal).join(', ')}]::text[]`;
  return doBlock(`
DECLARE _zd_bad text;
BEGIN
  ${
    opts.requirePlainTable
      ? `IF (SELECT relkind FROM pg_class WHERE oid = ${regclass(t)}) <> 'r' THEN
    RAISE EXCEPTION '% works on plain tables only: % is partitioned, and its indexes cannot be built concurrently. Nothing was changed.', ${literal(what)}, ${literal(tableLabel(t))};
  END IF;`
      : ''
  }
  -- NOT NULL is carried by the change itself; PostgreSQL 18 (and PGlite) also records it as a constraint (contype n).
  SELECT string_agg(DISTINCT coalesce((SELECT 'view ' || r.ev_class::regclass::text FROM pg_rewrite r
                                         WHERE d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid AND r.rulename = '_RETURN'),
                                        pg_describe_object(d.classid, d.objid, d.objsubid)), ', ') INTO _zd_bad
    FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
   WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ${regclass(t)} AND a.attname = ${literal(column)} AND d.deptype IN ('n', 'a')
     AND NOT (d.classid = 'pg_class'::regclass AND d.objid IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = ${literal(t.schema)}::regnamespace
              AND c.relkind IN ('i', 'I') AND c.relname = ANY (${arr(known.indexes)})))
     AND NOT (d.classid = 'pg_constraint'::regclass AND d.objid IN (SELECT co.oid FROM pg_constraint co WHERE co.conname = ANY (${arr(known.constraints)})
              AND (co.conrelid = ${regclass(t)} OR co.confrelid = ${regclass(t)})))
     AND NOT (d.classid = 'pg_attrdef'::regclass AND d.objid IN (SELECT ad.oid FROM pg_attrdef ad WHERE ad.adrelid = ${regclass(t)} AND ad.adnum = a.attnum))
     AND NOT (d.classid = 'pg_constraint'::regclass AND d.objid IN (SELECT co.oid FROM pg_constraint co WHERE co.conrelid = ${regclass(t)} AND co.contype::text = 'n'))
     ${opts.allowSequences ? `AND NOT (d.classid = 'pg_class'::regclass AND d.objid IN (SELECT c.oid FROM pg_class c WHERE c.relkind = 'S'))` : ''};
  IF _zd_bad IS NOT NULL THEN
    RAISE EXCEPTION '% cannot carry what depends on %.%: %. They would be lost with the old column. Nothing was changed by this step; drop them first (and recreate them after the contract), or change the column with sql().',
      ${literal(what)}, ${literal(tableLabel(t))}, ${literal(column)}, _zd_bad;
  END IF;
END`);
}

/**
 * ADD COLUMN `to` with the collation of `like` when both types are collatable and `like`'s is not its type's
 * default: a renamed or retyped text column keeps sorting and comparing the same way.
 */
export function addColumnLike(t: TableName, to: string, type: string, like: string): Statement {
  return doBlock(`
DECLARE _zd_coll text;
BEGIN
  SELECT CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation
              AND (SELECT typcollation FROM pg_type WHERE oid = ${literal(type)}::regtype) <> 0
              THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END INTO _zd_coll
    FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
    LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
   WHERE a.attrelid = ${regclass(t)} AND a.attname = ${literal(like)} AND NOT a.attisdropped;
  EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s%s', ${literal(qualified(t))}, ${literal(to)}, ${literal(type)}, coalesce(' COLLATE ' || _zd_coll, ''));
END`);
}

/** The comment and the column privileges of `from`, given to `to` as well (a role that may write one may write the other). */
export function copyCommentAndPrivileges(t: TableName, from: string, to: string): Statement {
  return doBlock(`
DECLARE _zd_g record; _zd_c text;
BEGIN
  _zd_c := col_description(${regclass(t)}, ${attnum(t, from)});
  IF _zd_c IS NOT NULL THEN
    EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', ${literal(qualified(t))}, ${literal(to)}, _zd_c);
  END IF;
  FOR _zd_g IN
    SELECT x.privilege_type, x.is_grantable, CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee
      FROM pg_attribute a CROSS JOIN LATERAL aclexplode(a.attacl) x LEFT JOIN pg_roles r ON r.oid = x.grantee
     WHERE a.attrelid = ${regclass(t)} AND a.attname = ${literal(from)}
  LOOP
    EXECUTE format('GRANT %s (%I) ON %s TO %s%s', _zd_g.privilege_type, ${literal(to)}, ${literal(qualified(t))}, _zd_g.grantee,
                   CASE WHEN _zd_g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
  END LOOP;
END`);
}

/**
 * Moves an identity (with its sequence name, increment and position) and the sequences owned by `from` (serial) to
 * `to`, so dropping `from` drops no sequence and ids continue where they were. A sequence of an integer column
 * follows the new column's integer type (an int → bigint change must not leave a sequence that stops at 2^31).
 */
export function moveSequences(t: TableName, from: string, to: string): Statement {
  return doBlock(`
DECLARE _zd_kind "char"; _zd_seq text; _zd_last bigint; _zd_called boolean; _zd_inc bigint; _zd_s record; _zd_type text;
BEGIN
  SELECT attidentity INTO _zd_kind FROM pg_attribute WHERE attrelid = ${regclass(t)} AND attname = ${literal(from)};
  IF _zd_kind IN ('a', 'd') THEN
    _zd_seq := pg_get_serial_sequence(${literal(qualified(t))}, ${literal(from)});
    EXECUTE format('SELECT last_value, is_called FROM %s', _zd_seq) INTO _zd_last, _zd_called;
    SELECT seqincrement INTO _zd_inc FROM pg_sequence WHERE seqrelid = _zd_seq::regclass;
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP IDENTITY', ${literal(qualified(t))}, ${literal(from)});
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED %s AS IDENTITY (SEQUENCE NAME %s START WITH %s INCREMENT BY %s)',
                   ${literal(qualified(t))}, ${literal(to)}, CASE _zd_kind WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END, _zd_seq,
                   CASE WHEN _zd_called THEN _zd_last + _zd_inc ELSE _zd_last END, _zd_inc);
  END IF;
  SELECT format_type(atttypid, NULL) INTO _zd_type FROM pg_attribute WHERE attrelid = ${regclass(t)} AND attname = ${literal(to)};
  FOR _zd_s IN
    SELECT d.objid::regclass::text AS seq, format_type(s.seqtypid, NULL) AS seqtype
      FROM pg_depend d JOIN pg_class c ON c.oid = d.objid JOIN pg_sequence s ON s.seqrelid = c.oid
     WHERE d.classid = 'pg_class'::regclass AND d.refobjid = ${regclass(t)} AND d.refobjsubid = ${attnum(t, from)} AND d.deptype = 'a' AND c.relkind = 'S'
  LOOP
    EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', _zd_s.seq, ${literal(qualified(t))}, ${literal(to)});
    IF _zd_type IN ('smallint', 'integer', 'bigint') AND _zd_type <> _zd_s.seqtype THEN
      EXECUTE format('ALTER SEQUENCE %s AS %s', _zd_s.seq, _zd_type);
    END IF;
  END LOOP;
END`);
}

/**
 * Shortens this transaction's lock waits to half of deadlock_timeout (and never beyond the configured
 * lock_timeout): a step that locks two tables which application writers also lock in the other order (an INSERT
 * into orders checks users; a DELETE from users cascades into orders) then gives up and is retried before the
 * deadlock detector runs in a writer's session — the migration, not the application, takes the retry.
 */
export function yieldToWriters(): Statement {
  return {
    text: `SELECT set_config('lock_timeout', greatest(10, least(CASE WHEN current_setting('lock_timeout') IN ('0', '0ms') THEN 2147483647
                 ELSE (SELECT setting::int FROM pg_settings WHERE name = 'lock_timeout') END,
               (SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout') / 2))::text || 'ms', true)`,
  };
}

/** Brief ACCESS EXCLUSIVE locks, the table first and then the tables whose foreign keys the step rewrites. */
export function lockTables(tables: readonly TableName[]): Statement {
  const seen = new Set<string>();
  const list = tables.filter((x) => !seen.has(tableLabel(x)) && seen.add(tableLabel(x)));
  return { text: `LOCK TABLE ${list.map(qualified).join(', ')} IN ACCESS EXCLUSIVE MODE` };
}

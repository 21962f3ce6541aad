import type { Statement } from '../db/db.js';
import type { CopySpec, MirrorSpec } from './specs.js';
import type { KeyColumn } from './batch-sql.js';
import { ident, literal, qualified, type TableName, dollarQuote } from './identifiers.js';

/**
 * Triggers that keep two (or three) tables in step while old and new application versions both write, for
 * splitTable and mergeTables. Every direction propagates INSERT, UPDATE and DELETE. A transaction-local setting (the
 * "quiet flag") is on while a trigger writes the other side, so that side's trigger does not write back (no
 * ping-pong); unlike pg_trigger_depth() it does not also silence writes made by the application's own triggers.
 * Forward writes are upserts that carry the current row, so they always win over a backfill batch that read an older
 * snapshot (the backfill inserts with ON CONFLICT DO NOTHING).
 */

const list = (cols: readonly string[], prefix = ''): string => cols.map((c) => `${prefix}${ident(c)}`).join(', ');
const row = (cols: readonly string[], prefix = ''): string => `ROW(${list(cols, prefix)})`;
const keyEq = (key: readonly string[], left: string, right: string): string => `${row(key, left)} = ${row(key, right)}`;
/** An upsert's SET from the proposed row. */
const setExcluded = (cols: readonly string[]): string => cols.map((x) => `${ident(x)} = EXCLUDED.${ident(x)}`).join(', ');

function fnName(t: TableName, fn: string): string {
  return `${ident(t.schema)}.${ident(fn)}`;
}

function triggerFunction(schema: string, fn: string, body: string): Statement {
  return { text: `CREATE OR REPLACE FUNCTION ${ident(schema)}.${ident(fn)}() RETURNS trigger LANGUAGE plpgsql AS ${dollarQuote(body)}` };
}

function guarded(flag: string, when: 'before' | 'after', body: string): string {
  const pass = when === 'before' ? `IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;\n  RETURN NEW;` : 'RETURN NULL;';
  const f = literal(flag);
  return `
BEGIN
  IF current_setting(${f}, true) = 'on' THEN
    ${pass}
  END IF;
  PERFORM set_config(${f}, 'on', true);
${body}
  PERFORM set_config(${f}, '', true);
  ${pass}
END`;
}

export interface TriggerNames {
  readonly fn: string;
  readonly trigger: string;
}

function createTrigger(t: TableName, names: TriggerNames, when: 'BEFORE' | 'AFTER'): Statement[] {
  return [
    { text: `DROP TRIGGER IF EXISTS ${ident(names.trigger)} ON ${qualified(t)}` },
    { text: `CREATE TRIGGER ${ident(names.trigger)} ${when} INSERT OR UPDATE OR DELETE ON ${qualified(t)} FOR EACH ROW EXECUTE FUNCTION ${fnName(t, names.fn)}()` },
  ];
}

export function dropSyncTrigger(t: TableName, names: TriggerNames): Statement[] {
  return [{ text: `DROP TRIGGER IF EXISTS ${ident(names.trigger)} ON ${qualified(t)}` }, { text: `DROP FUNCTION IF EXISTS ${fnName(t, names.fn)}()` }];
}

export interface SplitSync {
  readonly from: TableName;
  readonly to: TableName;
  readonly key: readonly string[];
  readonly columns: readonly string[];
  readonly flag: string;
  readonly forward: TriggerNames;
  readonly back: TriggerNames;
}

/**
 * `from` → `to`: AFTER trigger, upsert of the moved columns (skipped when `to` already holds them, which also spares
 * the row lock), delete on delete. `to` → `from`: BEFORE trigger writing the moved columns back; deleting a `to` row
 * clears them (a missing `to` row and all-NULL moved columns mean the same).
 */
export function splitSyncTriggers(s: SplitSync): Statement[] {
  const { from, to, key, columns: c } = s;
  const forward = guarded(
    s.flag,
    'after',
    `  IF TG_OP = 'DELETE' THEN
    DELETE FROM ${qualified(to)} WHERE ${keyEq(key, '', 'OLD.')};
  ELSE
    IF TG_OP = 'UPDATE' AND ${row(key, 'OLD.')} IS DISTINCT FROM ${row(key, 'NEW.')} THEN
      DELETE FROM ${qualified(to)} WHERE ${keyEq(key, '', 'OLD.')};
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ${qualified(to)} _zd_t WHERE ${keyEq(key, '_zd_t.', 'NEW.')} AND ${row(c, '_zd_t.')} IS NOT DISTINCT FROM ${row(c, 'NEW.')}) THEN
      INSERT INTO ${qualified(to)} (${list(key)}, ${list(c)}) VALUES (${list(key, 'NEW.')}, ${list(c, 'NEW.')})
        ON CONFLICT (${list(key)}) DO UPDATE SET ${c.map((x) => `${ident(x)} = EXCLUDED.${ident(x)}`).join(', ')};
    END IF;
  END IF;`,
  );
  const back = guarded(
    s.flag,
    'before',
    `  IF TG_OP = 'DELETE' THEN
    UPDATE ${qualified(from)} SET ${c.map((x) => `${ident(x)} = NULL`).join(', ')} WHERE ${keyEq(key, '', 'OLD.')};
  ELSE
    UPDATE ${qualified(from)} SET ${c.map((x) => `${ident(x)} = NEW.${ident(x)}`).join(', ')}
     WHERE ${keyEq(key, '', 'NEW.')} AND ${row(c)} IS DISTINCT FROM ${row(c, 'NEW.')};
  END IF;`,
  );
  return [
    triggerFunction(from.schema, s.forward.fn, forward),
    triggerFunction(to.schema, s.back.fn, back),
    ...createTrigger(from, s.forward, 'AFTER'),
    ...createTrigger(to, s.back, 'BEFORE'),
  ];
}

export interface MergeSync {
  /** The table whose rows decide which rows exist (1 : 1 with `into`). */
  readonly a: TableName;
  /** The table joined 1 : 0..1 on the key. */
  readonly b: TableName;
  readonly into: TableName;
  readonly key: readonly string[];
  readonly aColumns: readonly string[];
  readonly bColumns: readonly string[];
  readonly flag: string;
  readonly fromA: TriggerNames;
  readonly fromB: TriggerNames;
  readonly back: TriggerNames;
}

/**
 * a → into and b → into: AFTER triggers upserting their own columns (never the other table's, so writers of a and b
 * do not overwrite each other); a delete of `a` deletes the row, a delete of `b` clears b's columns, through an upsert
 * so that it waits for a backfill batch that is inserting the same row. into → a, b: a BEFORE trigger.
 */
export function mergeSyncTriggers(m: MergeSync, parts: 'both' | 'to-into' | 'from-into' = 'both'): Statement[] {
  const { a, b, into, key, aColumns: ac, bColumns: bc } = m;
  const fromA = guarded(
    m.flag,
    'after',
    `  IF TG_OP = 'DELETE' THEN
    DELETE FROM ${qualified(into)} WHERE ${keyEq(key, '', 'OLD.')};
  ELSE
    IF TG_OP = 'UPDATE' AND ${row(key, 'OLD.')} IS DISTINCT FROM ${row(key, 'NEW.')} THEN
      DELETE FROM ${qualified(into)} WHERE ${keyEq(key, '', 'OLD.')};
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ${qualified(into)} _zd_i WHERE ${keyEq(key, '_zd_i.', 'NEW.')} AND ${row(ac, '_zd_i.')} IS NOT DISTINCT FROM ${row(ac, 'NEW.')}) THEN
      INSERT INTO ${qualified(into)} (${list(key)}, ${list(ac)}, ${list(bc)})
        SELECT ${list(key, 'NEW.')}, ${list(ac, 'NEW.')}, ${list(bc, '_zd_j.')} FROM (SELECT 1) _zd_one LEFT JOIN ${qualified(b)} _zd_j ON ${keyEq(key, '_zd_j.', 'NEW.')}
        ON CONFLICT (${list(key)}) DO UPDATE SET ${setExcluded(ac)};
    END IF;
  END IF;`,
  );
  const fromB = guarded(
    m.flag,
    'after',
    `  IF TG_OP = 'DELETE' OR ${row(key, 'OLD.')} IS DISTINCT FROM ${row(key, 'NEW.')} THEN
    INSERT INTO ${qualified(into)} (${list(key)}, ${list(ac)}, ${list(bc)})
      SELECT ${list(key, '_zd_s.')}, ${list(ac, '_zd_s.')}, ${bc.map(() => 'NULL').join(', ')} FROM ${qualified(a)} _zd_s WHERE ${keyEq(key, '_zd_s.', 'OLD.')}
      ON CONFLICT (${list(key)}) DO UPDATE SET ${setExcluded(bc)};
  END IF;
  IF TG_OP <> 'DELETE' AND NOT EXISTS (SELECT 1 FROM ${qualified(into)} _zd_i WHERE ${keyEq(key, '_zd_i.', 'NEW.')} AND ${row(bc, '_zd_i.')} IS NOT DISTINCT FROM ${row(bc, 'NEW.')}) THEN
    INSERT INTO ${qualified(into)} (${list(key)}, ${list(ac)}, ${list(bc)})
      SELECT ${list(key, '_zd_s.')}, ${list(ac, '_zd_s.')}, ${list(bc, 'NEW.')} FROM ${qualified(a)} _zd_s WHERE ${keyEq(key, '_zd_s.', 'NEW.')}
      ON CONFLICT (${list(key)}) DO UPDATE SET ${setExcluded(bc)};
  END IF;`,
  );
  const back = guarded(
    m.flag,
    'before',
    `  IF TG_OP = 'DELETE' THEN
    DELETE FROM ${qualified(b)} WHERE ${keyEq(key, '', 'OLD.')};
    DELETE FROM ${qualified(a)} WHERE ${keyEq(key, '', 'OLD.')};
  ELSE
    IF TG_OP = 'UPDATE' AND ${row(key, 'OLD.')} IS DISTINCT FROM ${row(key, 'NEW.')} THEN
      RAISE EXCEPTION 'mergeTables: the key of % cannot change while % and % are kept in sync; change it in %', ${literal(qualified(into))}, ${literal(qualified(a))}, ${literal(qualified(b))}, ${literal(qualified(a))};
    END IF;
    INSERT INTO ${qualified(a)} AS _zd_t (${list(key)}, ${list(ac)}) VALUES (${list(key, 'NEW.')}, ${list(ac, 'NEW.')})
      ON CONFLICT (${list(key)}) DO UPDATE SET ${setExcluded(ac)} WHERE ${row(ac, '_zd_t.')} IS DISTINCT FROM ${row(ac, 'EXCLUDED.')};
    IF NOT (${row(bc, 'NEW.')} IS NULL) THEN
      INSERT INTO ${qualified(b)} AS _zd_t (${list(key)}, ${list(bc)}) VALUES (${list(key, 'NEW.')}, ${list(bc, 'NEW.')})
        ON CONFLICT (${list(key)}) DO UPDATE SET ${setExcluded(bc)} WHERE ${row(bc, '_zd_t.')} IS DISTINCT FROM ${row(bc, 'EXCLUDED.')};
    ELSE
      UPDATE ${qualified(b)} SET ${bc.map((x) => `${ident(x)} = NULL`).join(', ')} WHERE ${keyEq(key, '', 'NEW.')} AND NOT (${row(bc)} IS NULL);
    END IF;
  END IF;`,
  );
  const toInto = [
    triggerFunction(a.schema, m.fromA.fn, fromA),
    triggerFunction(b.schema, m.fromB.fn, fromB),
    ...createTrigger(a, m.fromA, 'AFTER'),
    ...createTrigger(b, m.fromB, 'AFTER'),
  ];
  const fromInto = [triggerFunction(into.schema, m.back.fn, back), ...createTrigger(into, m.back, 'BEFORE')];
  return parts === 'both' ? [...toInto, ...fromInto] : parts === 'to-into' ? toInto : fromInto;
}

/**
 * One batch of a mirror backfill over the key range (from, to] of the walked table: each target's rows in the range
 * become the walked rows (for a `sparse` target, a missing row only when it has a value), and its rows whose key the
 * walked table no longer has are deleted. Deletes go last target first and upserts first target first, so a target
 * referencing an earlier one by foreign key stays valid. A batch compares before it writes: only walked rows whose
 * target row is missing or different are locked and upserted. An undo mostly finds the rows equal, and an upsert
 * of every row would lock (and so write) every walked and every target row: 4× the forward copy's time at 1M rows
 * with the pacer on, where the compare-first form is read-mostly. A row equal at the snapshot needs no lock: a
 * writer changing it later changes the target through its trigger. Each join repeats the range on its inner
 * table: without it the planner's merge anti-join reads that table's key index from its start, every batch (at 1M
 * rows, 227 ms for a 15 000-key range instead of 12 ms: the undo grew with the square of the table). Parameters: the `from` key when hasFrom, then the `to` key when hasTo.
 */
export function mirrorRangeSqls(source: TableName, keys: readonly KeyColumn[], targets: readonly MirrorSpec[], hasFrom: boolean, hasTo: boolean): string[] {
  const order = keys.map((k) => `_zd_s.${ident(k.name)}`).join(', ');
  const deletes = targets.map(
    (m) => `DELETE FROM ${qualified(m.into)} _zd_t WHERE ${rangePredicate(keys, '_zd_t', hasFrom, hasTo)}
  AND NOT EXISTS (SELECT 1 FROM ${qualified(source)} _zd_s WHERE ${rangePredicate(keys, '_zd_s', hasFrom, hasTo)} AND ${keyEq(m.key, '_zd_s.', '_zd_t.')})`,
  );
  const upserts = targets.map((m) => {
    // The target's row in the range, joined: missing (its key NULL) or different means write; a sparse target gets
    // no row for a walked row without values.
    const missing = `_zd_e.${ident(m.key[0]!)} IS NULL`;
    const write = `CASE WHEN ${missing} THEN ${m.sparse ? `NOT (${row(m.columns, '_zd_s.')} IS NULL)` : 'true'} ELSE ${row(m.columns, '_zd_e.')} IS DISTINCT FROM ${row(m.columns, '_zd_s.')} END`;
    return `INSERT INTO ${qualified(m.into)} AS _zd_t (${list(m.key)}, ${list(m.columns)})
SELECT ${list(m.key, '_zd_s.')}, ${list(m.columns, '_zd_s.')} FROM ${qualified(source)} _zd_s
  LEFT JOIN ${qualified(m.into)} _zd_e ON ${keyEq(m.key, '_zd_e.', '_zd_s.')} AND ${rangePredicate(keys, '_zd_e', hasFrom, hasTo)}
 WHERE ${rangePredicate(keys, '_zd_s', hasFrom, hasTo)} AND ${write}
 ORDER BY ${order} FOR SHARE OF _zd_s
ON CONFLICT (${list(m.key)}) DO UPDATE SET ${setExcluded(m.columns)} WHERE ${row(m.columns, '_zd_t.')} IS DISTINCT FROM ${row(m.columns, 'EXCLUDED.')}`;
  });
  return [...deletes.reverse(), ...upserts];
}

function rangePredicate(keys: readonly KeyColumn[], alias: string, hasFrom: boolean, hasTo: boolean): string {
  const cols = `ROW(${keys.map((k) => `${alias}.${ident(k.name)}`).join(', ')})`;
  const vals = (first: number) => `ROW(${keys.map((k, i) => `CAST($${first + i} AS ${k.type})`).join(', ')})`;
  const conds: string[] = [];
  if (hasFrom) conds.push(`${cols} > ${vals(1)}`);
  if (hasTo) conds.push(`${cols} <= ${vals(1 + (hasFrom ? keys.length : 0))}`);
  return conds.length ? conds.join(' AND ') : 'true';
}

/**
 * One copy batch over the key range (from, to] of the walked table. The source rows are locked FOR SHARE, not just
 * KEY SHARE: a new-version writer that deletes the target row first updates the source row (its BEFORE trigger), and
 * with a weaker lock the batch could wait out that delete and then insert the values of its older snapshot. Parameters: the `from` key when hasFrom, then the
 * `to` key when hasTo. Its row count is the number of rows written.
 */
export function copyRangeSql(source: TableName, keys: readonly KeyColumn[], copy: CopySpec, hasFrom: boolean, hasTo: boolean): string {
  const range = rangePredicate(keys, '_zd_s', hasFrom, hasTo);
  const order = keys.map((k) => `_zd_s.${ident(k.name)}`).join(', ');
  // The joined table gets the range too when it is keyed like the walk: otherwise the planner hashes or merges the
  // whole of it into every batch (a 500k-row seq scan per 15 000-row batch, the forward copy growing with the square).
  const joinRange = copy.key.length === keys.length && copy.key.every((k, i) => k === keys[i]!.name) ? ` AND ${rangePredicate(keys, '_zd_j', hasFrom, hasTo)}` : '';
  const join = copy.join ? ` LEFT JOIN ${qualified(copy.join)} _zd_j ON ${keyEq(copy.key, '_zd_j.', '_zd_s.')}${joinRange}` : '';
  const targets = copy.columns.map((c) => c.column);
  if (copy.mode === 'insert' || copy.mode === 'upsert') {
    const intoKey = copy.intoKey ?? copy.key;
    // upsert (repair): a row already there is rewritten only where it differs, so rows that agree are not locked twice.
    const conflict = copy.mode === 'upsert' && targets.length > 0 ? `DO UPDATE SET ${setExcluded(targets)} WHERE ${row(targets, '_zd_t.')} IS DISTINCT FROM ${row(targets, 'EXCLUDED.')}` : 'DO NOTHING';
    return `INSERT INTO ${qualified(copy.into)} AS _zd_t (${[list(intoKey), ...(targets.length ? [list(targets)] : [])].join(', ')})
SELECT ${[list(copy.key, '_zd_s.'), ...copy.columns.map((c) => `(${c.expression})`)].join(', ')}
  FROM ${qualified(source)} _zd_s${join} WHERE ${range} ORDER BY ${order} FOR SHARE OF _zd_s
ON CONFLICT (${list(intoKey)}) ${conflict}`;
  }
  if (copy.intoKey) throw new Error('copyRangeSql: intoKey is only supported by insert copies');
  const aliases = copy.columns.map((_c, i) => `_zd_c${i}`);
  return `UPDATE ${qualified(copy.into)} _zd_t SET ${targets.map((t, i) => `${ident(t)} = _zd_src.${aliases[i]}`).join(', ')}
  FROM (SELECT ${list(copy.key, '_zd_s.')}, ${copy.columns.map((c, i) => `(${c.expression}) AS ${aliases[i]}`).join(', ')}
          FROM ${qualified(source)} _zd_s${join} WHERE ${range} ORDER BY ${order} FOR SHARE OF _zd_s) _zd_src
 WHERE ${keyEq(copy.key, '_zd_t.', '_zd_src.')} AND ${row(targets, '_zd_t.')} IS DISTINCT FROM ROW(${aliases.map((a) => `_zd_src.${a}`).join(', ')})`;
}

/**
 * Hands the sequence behind `from`'s key default (serial/bigserial) to `to`'s key column, so the sequence stays in
 * place when `from` is archived and the merged table keeps drawing keys from it. A no-op when the column owns no
 * sequence. Identity sequences cannot change owner; those are left alone.
 */
export function moveSerialOwnership(from: TableName, to: TableName, column: string): Statement {
  const body = `
DECLARE _zd_seq text := pg_get_serial_sequence(${literal(qualified(from))}, ${literal(column)});
BEGIN
  IF _zd_seq IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = ${literal(qualified(from))}::regclass AND attname = ${literal(column)} AND attidentity <> '') THEN
    EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', _zd_seq, ${literal(qualified(to))}, ${literal(column)});
  END IF;
END`;
  return { text: `DO ${dollarQuote(body)}` };
}

/**
 * Locks for a step that changes several synced tables at once. Waiting for one table while holding another can close
 * a cycle with the writers (a writer of `first` holds it and its trigger waits for a table we hold), which only
 * lock_timeout would end, on every attempt. So only the first, busiest table is waited for (within lock_timeout);
 * once it is held, its writers and their triggers are stopped, and the others are taken NOWAIT: if one is busy the
 * step fails at once with 55P03, releases everything and is retried after a backoff.
 */
export function lockInOrder(first: TableName, rest: readonly TableName[]): Statement[] {
  return [
    { text: `LOCK TABLE ${qualified(first)} IN ACCESS EXCLUSIVE MODE` },
    ...(rest.length > 0 ? [{ text: `LOCK TABLE ${rest.map(qualified).join(', ')} IN ACCESS EXCLUSIVE MODE NOWAIT` }] : []),
  ];
}

import type { Statement } from '../db/db.js';
import { ident, literal, qualified, type TableName } from './identifiers.js';

/**
 * Rows a sync trigger could not convert while old and new application versions run (the old version writes 'xyz'
 * into a text column on its way to integer). The trigger records them here instead of failing the application's
 * write; the backfill leaves them alone; verify reports them and the contract gate stays closed until they are fixed
 * (a row that converts now loses its record at the next verify).
 */
export const CONVERSION_ERRORS = 'conversion_errors';

export function conversionErrorsTable(stateSchema: string): string {
  return `${ident(stateSchema)}.${ident(CONVERSION_ERRORS)}`;
}

export function createConversionErrorsTable(stateSchema: string): string {
  return `CREATE TABLE IF NOT EXISTS ${conversionErrorsTable(stateSchema)} (
    table_schema text NOT NULL, table_name text NOT NULL, target text NOT NULL, row_key jsonb NOT NULL,
    sqlstate text, error text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (table_schema, table_name, target, row_key))`;
}

/** The key as verify reports it: a JSON array of the key columns as text. */
function keyJson(keys: readonly string[], rowRef: string): string {
  return `jsonb_build_array(${keys.map((k) => `${rowRef}${ident(k)}::text`).join(', ')})`;
}

/**
 * The PL/pgSQL statement of a trigger's EXCEPTION handler: records the row under NEW's key with the error. Values are
 * literals: a trigger body is DDL, where PostgreSQL accepts no parameters.
 */
export function recordConversionError(stateSchema: string, t: TableName, target: string, keys: readonly string[]): string {
  return `INSERT INTO ${conversionErrorsTable(stateSchema)} (table_schema, table_name, target, row_key, sqlstate, error)
      VALUES (${literal(t.schema)}, ${literal(t.name)}, ${literal(target)}, ${keyJson(keys, 'NEW.')}, SQLSTATE, SQLERRM)
      ON CONFLICT (table_schema, table_name, target, row_key) DO UPDATE SET sqlstate = EXCLUDED.sqlstate, error = EXCLUDED.error, recorded_at = EXCLUDED.recorded_at;`;
}

/**
 * Whether the current row of `t` (an unaliased reference, as in the backfill's UPDATE and verify's SELECT) is
 * recorded: an index probe per row into a table that is empty unless something went wrong.
 */
export function isRecorded(stateSchema: string, t: TableName, target: string, keys: readonly string[]): string {
  return `EXISTS (SELECT 1 FROM ${conversionErrorsTable(stateSchema)} _zd_e WHERE _zd_e.table_schema = ${literal(t.schema)} AND _zd_e.table_name = ${literal(t.name)}
    AND _zd_e.target = ${literal(target)} AND _zd_e.row_key = ${keyJson(keys, `${qualified(t)}.`)})`;
}

/**
 * The backfill's and verify's expression for a guarded conversion: a recorded row keeps the value it has (NULL, or
 * a value the application has written since), so the backfill never evaluates the conversion that failed on it.
 */
export function guardedExpression(expression: string, stateSchema: string, t: TableName, target: string, keys: readonly string[]): string {
  // A recorded row's target is NULL until it is fixed, so the probe runs only for NULL targets (AND evaluates left
  // to right): verify then costs next to nothing more on the rows that converted.
  const d = `${qualified(t)}.${ident(target)}`;
  return `CASE WHEN ${d} IS NULL AND ${isRecorded(stateSchema, t, target, keys)} THEN ${d} ELSE (${expression}) END`;
}

/**
 * The backfill's conversion of one value: the author's expression, or NULL once the failure is recorded. The backfill
 * cannot rely on isRecorded alone: a row the application changes while a batch waits for its lock is evaluated again
 * on its new version (EvalPlanQual) against the batch's older snapshot, which does not see the record the
 * application's trigger made. Called with the row's key, so it records what it could not convert itself.
 */
export function createTryFunction(
  stateSchema: string,
  t: TableName,
  fn: string,
  c: { readonly param: string | null; readonly paramType: string; readonly resultType: string; readonly expression: string; readonly target: string },
): Statement {
  // param null: the argument is the whole row (deriveColumn's `up` reads several columns).
  const row = c.param === null ? '(SELECT (_zd_v).*)' : `(SELECT _zd_v AS ${ident(c.param)})`;
  const body = `
BEGIN
  RETURN (SELECT CAST((${c.expression}) AS ${c.resultType}) FROM ${row} AS _zd_row);
EXCEPTION WHEN OTHERS THEN
  INSERT INTO ${conversionErrorsTable(stateSchema)} (table_schema, table_name, target, row_key, sqlstate, error)
    VALUES (${literal(t.schema)}, ${literal(t.name)}, ${literal(c.target)}, _zd_key, SQLSTATE, SQLERRM)
    ON CONFLICT (table_schema, table_name, target, row_key) DO UPDATE SET sqlstate = EXCLUDED.sqlstate, error = EXCLUDED.error, recorded_at = EXCLUDED.recorded_at;
  RETURN NULL;
END`;
  let tag = 'zd';
  for (let i = 0; body.includes(`$${tag}$`); i++) tag = `zd${i}`;
  return {
    text: `CREATE OR REPLACE FUNCTION ${ident(t.schema)}.${ident(fn)}(_zd_v ${c.paramType}, _zd_key jsonb) RETURNS ${c.resultType} LANGUAGE plpgsql VOLATILE AS $${tag}$${body}$${tag}$`,
  };
}

export function dropTryFunction(t: TableName, fn: string, paramType: string): Statement {
  return { text: `DROP FUNCTION IF EXISTS ${ident(t.schema)}.${ident(fn)}(${paramType}, jsonb)` };
}

/** A call of the try function on the current row of `t` (unaliased, as in the backfill's UPDATE); param null: the whole row. */
export function tryCall(t: TableName, fn: string, param: string | null, keys: readonly string[]): string {
  const arg = param === null ? `${qualified(t)}.*` : `${qualified(t)}.${ident(param)}`;
  return `${ident(t.schema)}.${ident(fn)}(${arg}, ${keyJson(keys, `${qualified(t)}.`)})`;
}

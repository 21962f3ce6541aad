import type { PreflightCheck } from './specs.js';
import type { KeyColumn } from './batch-sql.js';
import { ident, qualified, dollarQuote } from './identifiers.js';

/**
 * The heap pages [from, to) of a table, or [from, end) when `to` is null, as a TID range scan qualification
 * (PostgreSQL 14+). `from` and `to` are SQL: a parameter ($1) or a page number written into a DO block.
 */
function pageRange(from: string, to: string | null): string {
  const lo = `ctid >= format('(%s,0)', ${from}::bigint)::tid`;
  return to === null ? lo : `${lo} AND ctid < format('(%s,0)', ${to}::bigint)::tid`;
}

function where(check: PreflightCheck, range: string): string {
  return `WHERE ${range}${check.where ? ` AND (${check.where})` : ''}`;
}

/**
 * Evaluates the check's expression on every row of a page range (`count(expr)` has to evaluate it per row): one
 * statement, its own short snapshot. Parameters: the first page, then the end page unless `open`.
 */
export function preflightRangeSql(check: PreflightCheck, open: boolean): string {
  return `SELECT count((${check.expression})) FROM ${qualified(check.table)} ${where(check, pageRange('$1', open ? null : '$2'))}`;
}

/**
 * The same page range row by row, each evaluation in its own exception block (a subtransaction each, so several
 * times slower: only for a range whose statement failed): counts the failing rows and keeps up to `samples` keys
 * and errors in the transaction-local setting `zd.preflight`. A DO block takes no parameters, so the pages are
 * numbers written into it.
 */
export function preflightRowsSql(check: PreflightCheck, keys: readonly KeyColumn[], fromPage: number, toPage: number | null, samples: number): string {
  const t = qualified(check.table);
  const keyExpr = keys.length > 0 ? `jsonb_build_array(${keys.map((k) => `${ident(k.name)}::text`).join(', ')})` : 'to_jsonb(ctid::text)';
  const range = pageRange(String(Math.trunc(fromPage)), toPage === null ? null : String(Math.trunc(toPage)));
  const body = `
DECLARE _zd_r record; _zd_n bigint := 0; _zd_s jsonb := '[]'::jsonb;
BEGIN
  FOR _zd_r IN SELECT ctid AS _zd_ctid, ${keyExpr} AS _zd_key FROM ${t} ${where(check, range)} LOOP
    BEGIN
      PERFORM count((${check.expression})) FROM ${t} WHERE ctid = _zd_r._zd_ctid;
    EXCEPTION WHEN OTHERS THEN
      _zd_n := _zd_n + 1;
      IF _zd_n <= ${Math.trunc(samples)} THEN _zd_s := _zd_s || jsonb_build_array(jsonb_build_object('key', _zd_r._zd_key, 'error', SQLERRM)); END IF;
    END;
  END LOOP;
  PERFORM set_config('zd.preflight', jsonb_build_object('n', _zd_n, 'samples', _zd_s)::text, true);
END`;
  return `DO ${dollarQuote(body)}`;
}

/** The table's size in pages now (not the catalog's estimate): rows written later are the sync trigger's business. $1 = the table. */
export const currentPagesSql = `SELECT (pg_relation_size($1::regclass) / current_setting('block_size')::int)::bigint AS pages`;

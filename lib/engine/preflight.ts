import type { ConversionLogSpec, PreflightCheck } from '../migration.js';
import type { KeyColumn } from '../postgres/batch-sql.js';
import { conversionErrorsTable } from '../postgres/conversion-errors.js';
import { ChangeInputError, dollarQuote, ident, literal, qualified, tableLabel } from '../postgres/identifiers.js';
import { currentPagesSql, preflightRangeSql, preflightRowsSql } from '../postgres/preflight-sql.js';
import { readPageRanges } from '../postgres/activity-sql.js';
import { isConnectionLost, sqlState, type Db } from '../db/db.js';
import type { ZeroDowntimeErrorCode } from '../db/errors.js';

export interface PreflightResult {
  readonly failing: number;
  /** Up to 5 rows: the key (JSON array of text, or the ctid) and the error. */
  readonly samples: readonly { readonly key: unknown; readonly error: string }[];
}

/** Refusal of a change whose expression fails on existing rows; nothing was installed. */
export class PreflightFailedError extends ChangeInputError {
  override readonly code: ZeroDowntimeErrorCode = 'preflight-failed';
  override name = 'PreflightFailedError';
  constructor(
    message: string,
    readonly result: PreflightResult,
  ) {
    super(message);
  }
}

const SAMPLES = 5;
/** 4096 pages = 32 MB a statement: a few hundred milliseconds of reading, so no snapshot is held for long. */
const CHUNK_PAGES = 4096;

export interface PreflightOptions {
  /** Pages per statement (tests use a few). */
  readonly chunkPages?: number;
  /** Called after each page range. */
  readonly onChunk?: (fromPage: number, toPage: number | null) => void;
}

/**
 * Evaluates the check's expression on every row, in page ranges of its own statement each (a TID range scan), so a
 * 100M-row table is read without one snapshot held for the whole scan (the vacuum horizon stays free). The common
 * case, no failing row, is one sequential read of the table. A range whose statement fails is walked again row by
 * row to count the failing rows and keep a few keys, and the scan goes on, so the refusal counts every failing row.
 * The last range is open-ended: rows written meanwhile past the end are read too, when they land there.
 */
export async function runPreflight(db: Db, check: PreflightCheck, keys: readonly KeyColumn[], opts: PreflightOptions = {}): Promise<PreflightResult> {
  const chunk = Math.max(1, Math.trunc(opts.chunkPages ?? CHUNK_PAGES));
  const pages = Number((await db.query<{ pages: string }>(currentPagesSql, [qualified(check.table)])).rows[0]?.pages ?? 0);
  let failing = 0;
  const samples: { key: unknown; error: string }[] = [];
  // On an idle server a second connection reads every other range, on the other core.
  await readPageRanges(db, pages, chunk, true, async (from, to) => {
    try {
      await db.query(preflightRangeSql(check, to === null), to === null ? [from] : [from, to]);
    } catch (err) {
      if (isConnectionLost(err) || !sqlState(err)) throw err;
      const out = await db.transaction(async (c) => {
        await c.query(preflightRowsSql(check, keys, from, to, SAMPLES));
        const r = await c.query<{ v: string }>(`SELECT current_setting('zd.preflight') AS v`);
        return JSON.parse(r.rows[0]!.v) as { n: number; samples: { key: unknown; error: string }[] };
      });
      // The statement failed for another reason than a row (a typo in the expression fails on every row, and says so).
      if (out.n === 0) throw err;
      failing += Number(out.n);
      samples.push(...out.samples.slice(0, SAMPLES - samples.length));
    }
    opts.onChunk?.(from, to);
  });
  return { failing, samples };
}

export function preflightMessage(prefix: string, check: PreflightCheck, r: PreflightResult): string {
  const sample = r.samples.map((s) => `${JSON.stringify(s.key)}: ${s.error}`).join('; ');
  return (
    `${prefix}: ${r.failing} row(s) of ${tableLabel(check.table)} cannot be converted by ${check.what} (sample keys and errors: ${sample}). ` +
    `Nothing was changed in the database (this was checked before anything was installed); ${check.fix}.`
  );
}

export interface ConversionErrors {
  readonly count: number;
  readonly sampleKeys: readonly (readonly string[])[];
  readonly firstError: string | null;
}

/**
 * Drops the records of rows that are gone or that convert now (the application or a person fixed them), then counts
 * the others. Each recorded row is evaluated in its own exception block, by its key through the primary key index:
 * there are few of them, or the gate is closed anyway.
 */
export async function settleConversionErrors(db: Db, stateSchema: string, log: ConversionLogSpec, keys: readonly KeyColumn[]): Promise<ConversionErrors> {
  const errs = conversionErrorsTable(stateSchema);
  const match = `_zd_e.table_schema = ${literal(log.table.schema)} AND _zd_e.table_name = ${literal(log.table.name)} AND _zd_e.target = ${literal(log.target)}`;
  const byKey = keys.map((k, i) => `${ident(k.name)} = CAST(_zd_r.row_key ->> ${i} AS ${k.type})`).join(' AND ');
  const body = `
DECLARE _zd_r record; _zd_ok boolean;
BEGIN
  FOR _zd_r IN SELECT _zd_e.row_key FROM ${errs} _zd_e WHERE ${match} LOOP
    BEGIN
      SELECT ${ident(log.target)} IS NOT DISTINCT FROM (${log.expression}) INTO _zd_ok FROM ${qualified(log.table)} WHERE ${byKey};
      IF NOT FOUND OR _zd_ok THEN
        DELETE FROM ${errs} _zd_e WHERE ${match} AND _zd_e.row_key = _zd_r.row_key;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      NULL; -- still failing: the record stays
    END;
  END LOOP;
END`;
  await db.write(`DO ${dollarQuote(body)}`);
  const r = await db.query<{ n: number; samples: string[][] | null; first: string | null }>(
    `SELECT (SELECT count(*) FROM ${errs} _zd_e WHERE ${match})::int AS n,
            (SELECT jsonb_agg(row_key) FROM (SELECT _zd_e.row_key FROM ${errs} _zd_e WHERE ${match} ORDER BY _zd_e.recorded_at LIMIT ${SAMPLES}) s) AS samples,
            (SELECT _zd_e.error FROM ${errs} _zd_e WHERE ${match} ORDER BY _zd_e.recorded_at LIMIT 1) AS first`,
  );
  const x = r.rows[0]!;
  return { count: x.n, sampleKeys: x.samples ?? [], firstError: x.first };
}

/** Counts the recorded rows without settling them (for the gate, which must not write). */
export async function countConversionErrors(db: Db, stateSchema: string, log: ConversionLogSpec): Promise<number> {
  const r = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${conversionErrorsTable(stateSchema)} WHERE table_schema = $1 AND table_name = $2 AND target = $3`,
    [log.table.schema, log.table.name, log.target],
  );
  return r.rows[0]?.n ?? 0;
}

/** Forgets the records of a change whose expand is undone: its column is gone, and a later expand starts afresh. */
export async function forgetConversionErrors(db: Db, stateSchema: string, log: ConversionLogSpec): Promise<void> {
  await db.write(`DELETE FROM ${conversionErrorsTable(stateSchema)} WHERE table_schema = $1 AND table_name = $2 AND target = $3`, [
    log.table.schema,
    log.table.name,
    log.target,
  ]);
}

/** Transient SQLSTATEs: the same command run again may well succeed, so a failure with one is never undone. */
const TRANSIENT = new Set(['55P03', '40P01', '40001', '57014', '55006']);

/**
 * Whether an expand's failure is a real one (a step, backfill or preflight that failed on the data or the schema),
 * which the engine undoes, rather than an interruption (SIGINT, a lost connection or lock, a lock or statement timeout)
 * after which running again resumes. Only errors carrying a SQLSTATE count: anything else keeps today's "run again".
 */
export function isUndoableFailure(err: unknown): boolean {
  const seen = new Set<unknown>();
  let found = false;
  for (let e: unknown = err; e && typeof e === 'object' && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const name = (e as { name?: unknown }).name;
    if (typeof name === 'string' && /Interrupted|Lock|VerificationFailed/i.test(name)) return false;
    if (isConnectionLost(e)) return false;
    const code = sqlState(e) ?? (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
      if (TRANSIENT.has(code) || /^(08|53|57|58)/.test(code)) return false;
      found = true;
    }
  }
  return found;
}

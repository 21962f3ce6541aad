import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Knex } from 'knex';
import { createKnex } from '../db/knex-factory.js';
import { importModule } from '../engine/import-module.js';
import { plainExports } from '../engine/plain-migration.js';

/** One statement a migration would send, with where in the migration it comes from. */
export interface CapturedStatement {
  readonly sql: string;
  /** The values Knex bound to its $n parameters (a builder call's), when there are any. */
  readonly values?: readonly unknown[];
  readonly file: string;
  /** The line of the migration file that sent it (the call site), or of the statement in a .sql file; 0 when unknown. */
  readonly line: number;
  /** Sent inside an explicit transaction block (BEGIN … COMMIT: a Knex transaction, or the migration's own). */
  readonly inTransaction: boolean;
}

export interface CaptureResult {
  readonly statements: readonly CapturedStatement[];
  /** The migration threw while it ran against the recorder (it may read data to decide what to do): what it sent before. */
  readonly error?: string;
}

/**
 * Runs a plain migration's `up` against a Knex instance that records every statement instead of sending it: no
 * database, no connection. Builder calls and `knex.raw` alike are captured as Knex compiles them for PostgreSQL.
 * Every query answers with no rows, so a migration that reads data to decide what to do (`hasTable`, a `select`)
 * takes its "nothing there" branch, and statements it would send only on the other branch are not seen.
 */
export async function captureMigration(file: string, style: 'knex' | 'umzug' = 'umzug'): Promise<CaptureResult> {
  const statements: CapturedStatement[] = [];
  let depth = 0;
  const where = new Error();
  const record = (sql: string, values?: readonly unknown[]) => {
    const text = sql.trim().replace(/;$/, '');
    // Transaction statements are kept (rules look at them), and mark what runs inside.
    if (/^(COMMIT|ROLLBACK)\b/i.test(text) && !/^ROLLBACK TO\b/i.test(text)) depth = Math.max(0, depth - 1);
    // Deep enough to reach the migration's own (async) frame below Knex's runner.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 200;
    Error.captureStackTrace(where);
    Error.stackTraceLimit = limit;
    statements.push({ sql: text, ...(values && values.length > 0 ? { values } : {}), file, line: callSite(where.stack ?? '', file), inTransaction: depth > 0 });
    if (/^BEGIN\b/i.test(text)) depth++;
  };
  const fakeConnection = {
    query(config: { text: string; values?: unknown[] } | string, cb: (err: unknown, res: unknown) => void) {
      const text = typeof config === 'string' ? config : config.text;
      record(text, typeof config === 'string' ? undefined : config.values);
      cb(null, { rows: [], rowCount: 0, command: text.trim().split(/\s+/)[0]!.toUpperCase(), fields: [] });
    },
    on() {},
    once() {},
    removeListener() {},
    removeAllListeners() {},
    end() {},
  };
  const knex: Knex = createKnex({ client: 'pg', connection: { host: 'recorder.invalid' }, pool: { min: 0, max: 1 } });
  const client = knex.client as unknown as { acquireConnection(): Promise<unknown>; releaseConnection(c: unknown): Promise<void> };
  client.acquireConnection = async () => fakeConnection;
  client.releaseConnection = async () => {};
  try {
    const mod = await importModule(pathToFileURL(file).href);
    const holder = plainExports(mod);
    const up = holder.up as ((arg: unknown) => Promise<unknown>) | undefined;
    if (typeof up !== 'function') return { statements, error: 'exports no up function' };
    const call = (as: 'knex' | 'umzug') => up.call(holder, as === 'knex' ? knex : { name: path.basename(file), path: file, context: { knex } });
    try {
      await call(style);
    } catch (e) {
      // Written for the other calling style (Knex's `up(knex)`, Umzug's `up({ context })`): it failed before it
      // sent anything, so it is run once more the other way.
      if (statements.length > 0 || !(e instanceof TypeError)) throw e;
      await call(style === 'knex' ? 'umzug' : 'knex');
    }
    return { statements };
  } catch (e) {
    return { statements, error: (e as Error).message };
  } finally {
    await knex.destroy().catch(() => undefined);
  }
}

/** The first stack frame in `file` (V8 keeps the migration's awaiting frame as an `async` frame). */
function callSite(stack: string, file: string): number {
  for (const line of stack.split('\n')) {
    const m = /\((?:file:\/\/)?(.*?):(\d+):\d+\)$|at (?:async )?(?:file:\/\/)?(\/.*?):(\d+):\d+$/.exec(line.trim());
    const f = m?.[1] ?? m?.[3];
    if (f && path.resolve(decodeURIComponent(f)) === path.resolve(file)) return Number(m?.[2] ?? m?.[4]);
  }
  return 0;
}

/** A .sql migration file's statements, each with its line. */
export function sqlFileStatements(file: string, sql: string, parse: (sql: string) => readonly { text: string; offset: number }[]): CapturedStatement[] {
  let depth = 0;
  const out: CapturedStatement[] = [];
  for (const s of parse(sql)) {
    const line = sql.slice(0, s.offset).split('\n').length;
    if (/^(COMMIT|ROLLBACK|END)\b/i.test(s.text) && !/^ROLLBACK TO\b/i.test(s.text)) depth = Math.max(0, depth - 1);
    out.push({ sql: s.text, file, line, inTransaction: depth > 0 });
    if (/^BEGIN\b|^START TRANSACTION\b/i.test(s.text)) depth++;
  }
  return out;
}

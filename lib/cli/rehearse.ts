import { CommandLineAction, type CommandLineFlagParameter } from '@rushstack/ts-command-line';
import type { UmzugCLI } from 'umzug';
import type { Connection } from '../engine/db.js';
import { dataChecksums, diffChecksums, diffSnapshots, schemaSnapshot, type SchemaSnapshot, type TableChecksum } from '../postgres/snapshot.js';
import type { ZeroDowntimeUmzug } from '../zero-downtime.js';

export type RehearsalStage = 'snapshot' | 'up' | 'down' | 'compare' | 'up-again' | 'compare-again';

export interface RehearsalReport {
  readonly ok: boolean;
  /** Phases the first `up` applied (expands, every pending contract whatever its gate, plain migrations). */
  readonly applied: readonly string[];
  readonly reverted: readonly string[];
  readonly reapplied: readonly string[];
  readonly stages: readonly { readonly stage: RehearsalStage; readonly ms: number }[];
  /** Schema after `down` against before `up`: `- key: before`, `+ key: after`, `~ key: before → after`. */
  readonly schemaDiff: readonly string[];
  /** Row counts and checksums per table after `down` against before `up`. */
  readonly dataDiff: readonly string[];
  /** Schema after the second `up` against after the first: up must give the same result twice. */
  readonly reapplyDiff: readonly string[];
  /** The stage that threw, and its message; the database is left as that stage left it. */
  readonly failed?: { readonly stage: RehearsalStage; readonly message: string };
}

interface Picture {
  readonly schemas: readonly string[];
  readonly schema: SchemaSnapshot;
  readonly data: Record<string, TableChecksum>;
}

/** Every schema of the application: all but PostgreSQL's own and the state schema (whose bookkeeping changes by design). */
async function userSchemas(conn: Connection, stateSchema: string): Promise<string[]> {
  const r = await conn.query<{ nspname: string }>(
    `SELECT nspname FROM pg_namespace WHERE nspname <> ALL($1) AND nspname NOT LIKE 'pg\\_%' ORDER BY 1`,
    [['information_schema', stateSchema]],
  );
  return r.rows.map((x) => x.nspname);
}

async function picture(umzug: ZeroDowntimeUmzug, withData: boolean, alsoSchemas: readonly string[] = []): Promise<Picture> {
  return umzug.db.withConnection(async (conn) => {
    const schemas = [...new Set([...(await userSchemas(conn, umzug.config.stateSchema)), ...alsoSchemas])].sort();
    const schema = await schemaSnapshot(conn, schemas);
    // A schema is an object too: one left behind (or dropped) by a migration is a difference even when empty.
    const present = await userSchemas(conn, umzug.config.stateSchema);
    const objects = { ...schema.objects, ...Object.fromEntries(present.map((s) => [`schema ${s}`, 'exists'])) };
    return { schemas, schema: { objects }, data: withData ? await dataChecksums(conn, present) : {} };
  });
}

/**
 * For staging: up all the way (expand, backfill, verify, and every pending contract, gates bypassed), down all the
 * way back to where it started, and compare the schema and the data with what they were; then up again and compare
 * with the first up. Any difference means a down (usually a hand-written one) does not undo its up.
 */
export async function rehearse(umzug: ZeroDowntimeUmzug, log: (line: string) => void = () => {}): Promise<RehearsalReport> {
  const stages: { stage: RehearsalStage; ms: number }[] = [];
  let stage: RehearsalStage = 'snapshot';
  let applied: string[] = [];
  let reverted: string[] = [];
  let reapplied: string[] = [];
  let schemaDiff: string[] = [];
  let dataDiff: string[] = [];
  let reapplyDiff: string[] = [];
  const timed = async <T>(s: RehearsalStage, fn: () => Promise<T>): Promise<T> => {
    stage = s;
    const t = Date.now();
    const r = await fn();
    stages.push({ stage: s, ms: Date.now() - t });
    return r;
  };
  try {
    const before = await timed('snapshot', () => picture(umzug, true));
    log(`snapshot: ${Object.keys(before.schema.objects).length} schema objects, ${Object.keys(before.data).length} tables checksummed (${before.schemas.join(', ')})`);
    applied = (await timed('up', () => umzug.up({ bypassContractGates: true }))).map((m) => m.name);
    if (applied.length === 0) {
      log('nothing pending: nothing to rehearse');
      return { ok: true, applied, reverted, reapplied, stages, schemaDiff, dataDiff, reapplyDiff };
    }
    log(`up: applied ${applied.length} phases (${applied.join(', ')})`);
    const afterUp = await picture(umzug, false, before.schemas);
    reverted = (await timed('down', () => umzug.down({ to: applied[0]! }))).map((m) => m.name);
    log(`down: reverted ${reverted.length} phases`);
    const afterDown = await timed('compare', () => picture(umzug, true, afterUp.schemas));
    schemaDiff = diffSnapshots(before.schema, afterDown.schema);
    dataDiff = diffChecksums(before.data, afterDown.data);
    log(schemaDiff.length + dataDiff.length === 0 ? 'compare: schema and data are exactly as before' : `compare: ${schemaDiff.length} schema and ${dataDiff.length} data differences`);
    reapplied = (await timed('up-again', () => umzug.up({ bypassContractGates: true }))).map((m) => m.name);
    log(`up again: applied ${reapplied.length} phases`);
    const again = await timed('compare-again', () => picture(umzug, false, afterUp.schemas));
    reapplyDiff = diffSnapshots(afterUp.schema, again.schema);
    const ok = schemaDiff.length === 0 && dataDiff.length === 0 && reapplyDiff.length === 0 && reapplied.length === applied.length;
    return { ok, applied, reverted, reapplied, stages, schemaDiff, dataDiff, reapplyDiff };
  } catch (err) {
    return { ok: false, applied, reverted, reapplied, stages, schemaDiff, dataDiff, reapplyDiff, failed: { stage, message: (err as Error).message } };
  }
}

export function formatRehearsal(r: RehearsalReport): string {
  const out: string[] = [];
  if (r.failed) {
    out.push(`✗ rehearsal stopped at "${r.failed.stage}": ${r.failed.message}`);
    out.push(`  The database is left as that stage left it (applied: ${r.applied.length}, reverted: ${r.reverted.length}, applied again: ${r.reapplied.length}).`);
  }
  if (r.schemaDiff.length > 0) {
    out.push('✗ down did not restore the schema (- before up, + after down, ~ changed):');
    out.push(...r.schemaDiff.map((l) => `    ${l}`));
  }
  if (r.dataDiff.length > 0) {
    out.push('✗ down did not restore the data (rows and checksum per table, before → after):');
    out.push(...r.dataDiff.map((l) => `    ${l}`));
  }
  if (r.reapplyDiff.length > 0) {
    out.push('✗ up after down gave another schema than the first up (- first up, + second up):');
    out.push(...r.reapplyDiff.map((l) => `    ${l}`));
  }
  if (!r.failed && r.reapplied.length !== r.applied.length) out.push(`✗ the second up applied ${r.reapplied.length} phases, the first ${r.applied.length}`);
  if (r.ok) {
    out.push(
      r.applied.length === 0
        ? '✓ nothing pending: nothing to rehearse'
        : `✓ rehearsal passed: ${r.applied.length} phases up, down to the start with schema and data exactly as before, and up again to the same schema`,
    );
  }
  return out.join('\n');
}

export class RehearsalFailedError extends Error {
  override name = 'RehearsalFailedError';
}

class RehearseAction extends CommandLineAction {
  private readonly json: CommandLineFlagParameter;
  constructor(private readonly umzug: ZeroDowntimeUmzug) {
    super({
      actionName: 'rehearse',
      summary: 'For staging: up to the end (contract gates bypassed), down to the start, compare schema and data checksums, up again',
      documentation:
        'Snapshots the schema (catalog definitions: columns, constraints, indexes, triggers, functions, views, sequences) and a checksum of ' +
        'every table, runs every pending phase including contracts whose gate is closed, reverts them all, and compares. A difference ' +
        '(typically a hand-written down that forgets something) is printed as a diff and the command exits with 1. Never run it in production: ' +
        'it runs contracts early and reverts them. Leaves the database with everything applied.',
    });
    this.json = this.defineFlagParameter({ parameterLongName: '--json', description: 'print the report as JSON' });
  }
  protected override async onExecute(): Promise<void> {
    const json = this.json.value;
    const report = await rehearse(this.umzug, json ? undefined : (l) => process.stdout.write(`${l}\n`));
    process.stdout.write((json ? JSON.stringify(report, null, 2) : formatRehearsal(report)) + '\n');
    if (!report.ok) {
      throw new RehearsalFailedError(
        report.failed
          ? `rehearsal failed at "${report.failed.stage}"; see above.`
          : 'rehearsal found differences: a down does not undo its up (see the diff above). Fix that migration\'s down, then `umzug down` the phases rehearse left applied if you want to rehearse again.',
      );
    }
  }
}

export function addRehearseAction(cli: UmzugCLI, umzug: ZeroDowntimeUmzug): void {
  cli.addAction(new RehearseAction(umzug));
}

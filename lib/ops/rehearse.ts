import type { Connection } from '../db/db.js';
import { dataChecksums, diffChecksums, diffSnapshots, schemaSnapshot, type SchemaSnapshot, type TableChecksum } from '../postgres/snapshot.js';
import type { Project } from './project.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';

export type RehearsalStage = 'snapshot' | 'up' | 'down' | 'compare' | 'up-again' | 'compare-again' | 'return';

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
  /** The stage that threw, and its message. */
  readonly failed?: { readonly stage: RehearsalStage; readonly message: string };
  /**
   * Where the rehearsal left the database. `all-applied` after a pass (as `umzug up` would); `start` after a failure
   * or a difference: every phase it applied was reverted again, so the same phases are pending as before (what a
   * lossy down left behind is in the diffs); `partial` only when a down itself failed: `leftApplied` lists the phases
   * still applied and `toStart` the command that reverts them.
   */
  readonly endedAt: 'all-applied' | 'start' | 'partial';
  /** Phases this rehearsal applied that are still applied at its end. */
  readonly leftApplied: readonly string[];
  /** The command that returns to the start, when the rehearsal could not. */
  readonly toStart?: string;
  /**
   * The phase that was running when an `up` failed. It is not applied, so the return to the start does not revert
   * it; steps it finished before failing stay recorded in the state schema, and `umzug up` resumes from them.
   */
  readonly failedPhase?: string;
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

async function picture(umzug: Project, withData: boolean, alsoSchemas: readonly string[] = []): Promise<Picture> {
  return umzug.db.withConnection(async (conn) => {
    const schemas = [...new Set([...(await userSchemas(conn, umzug.config.stateSchema)), ...alsoSchemas])].sort();
    const schema = await schemaSnapshot(conn, schemas);
    // A schema is an object too: one left behind (or dropped) by a migration is a difference even when empty.
    const present = await userSchemas(conn, umzug.config.stateSchema);
    const objects = { ...schema.objects, ...Object.fromEntries(present.map((s) => [`schema ${s}`, 'exists'])) };
    const data = withData ? await dataChecksums(conn, present) : {};
    // A Knex project's migrations table is history, like the state schema: `up` writes it by design.
    const history = knexHistoryRelations(umzug.config.knexHistory, umzug.config.schema);
    // Object keys are `<kind> <schema>.<name>[.<part>]`, checksum keys `<schema>.<name>`.
    const mine = (key: string) => {
      const name = key.slice(key.indexOf(' ') + 1);
      return history.some((h) => name === h || name.startsWith(`${h}.`));
    };
    return {
      schemas,
      schema: { objects: Object.fromEntries(Object.entries(objects).filter(([k]) => !mine(k))) },
      data: Object.fromEntries(Object.entries(data).filter(([k]) => !mine(k))),
    };
  });
}

/**
 * For staging: up all the way (expand, backfill, verify, and every pending contract, gates bypassed), down all the
 * way back to where it started, and compare the schema and the data with what they were; then up again and compare
 * with the first up. Any difference means a down (usually a hand-written one) does not undo its up.
 *
 * A pass leaves everything applied. A failure or a difference stops there and reverts what the rehearsal applied, so
 * the database ends with the same phases pending as at the start: someone who rehearses again, or fixes a down and
 * retries, starts from a known place rather than between phases. Only a down that fails itself can stop that return;
 * the report then lists what is still applied and the command to revert it.
 */
export async function rehearse(umzug: Project, log: (line: string) => void = () => {}): Promise<RehearsalReport> {
  const stages: { stage: RehearsalStage; ms: number }[] = [];
  let stage: RehearsalStage = 'snapshot';
  const applied: string[] = [];
  const reverted: string[] = [];
  const reapplied: string[] = [];
  let schemaDiff: string[] = [];
  let dataDiff: string[] = [];
  let reapplyDiff: string[] = [];
  // Phases applied by this rehearsal and not reverted since, in the order applied: Umzug's events name each phase as
  // it completes, so a stage that throws halfway still leaves an exact account of what it did.
  const live: string[] = [];
  let running: string | undefined;
  const onMigrating = ({ name }: { name: string }) => {
    running = name;
  };
  const onMigrated = ({ name }: { name: string }) => {
    running = undefined;
    live.push(name);
    (stage === 'up-again' ? reapplied : applied).push(name);
  };
  const onReverted = ({ name }: { name: string }) => {
    const i = live.lastIndexOf(name);
    if (i >= 0) live.splice(i, 1);
    if (stage === 'down') reverted.push(name);
  };
  const timed = async <T>(s: RehearsalStage, fn: () => Promise<T>): Promise<T> => {
    stage = s;
    const t = Date.now();
    const r = await fn();
    stages.push({ stage: s, ms: Date.now() - t });
    return r;
  };
  const report = (failed?: { stage: RehearsalStage; message: string }): RehearsalReport => {
    const differs = schemaDiff.length > 0 || dataDiff.length > 0 || reapplyDiff.length > 0;
    const ok = !failed && !differs && reapplied.length === applied.length;
    const endedAt = ok ? 'all-applied' : live.length === 0 ? 'start' : 'partial';
    return {
      ok,
      applied,
      reverted,
      reapplied,
      stages,
      schemaDiff,
      dataDiff,
      reapplyDiff,
      ...(failed ? { failed } : {}),
      endedAt,
      leftApplied: [...live],
      ...(endedAt === 'partial' ? { toStart: `umzug down --to ${live[0]}` } : {}),
      ...(failed && running !== undefined && (failed.stage === 'up' || failed.stage === 'up-again') ? { failedPhase: running } : {}),
    };
  };
  /** Back to the start after a failure or a difference; a down that throws here is reported, not rethrown. */
  const returnToStart = async (): Promise<{ stage: RehearsalStage; message: string } | undefined> => {
    if (live.length === 0) return undefined;
    log(`returning to the start: reverting ${live.length} phases this rehearsal applied`);
    try {
      await timed('return', () => umzug.down({ to: live[0]! }));
      return undefined;
    } catch (err) {
      return { stage: 'return', message: (err as Error).message };
    }
  };
  umzug.on('migrating', onMigrating);
  umzug.on('migrated', onMigrated);
  umzug.on('reverted', onReverted);
  try {
    let before: Picture;
    let afterUp: Picture;
    try {
      before = await timed('snapshot', () => picture(umzug, true));
      log(`snapshot: ${Object.keys(before.schema.objects).length} schema objects, ${Object.keys(before.data).length} tables checksummed (${before.schemas.join(', ')})`);
      await timed('up', () => umzug.up({ bypassContractGates: true }));
      if (applied.length === 0) {
        log('nothing pending: nothing to rehearse');
        return report();
      }
      log(`up: applied ${applied.length} phases (${applied.join(', ')})`);
      afterUp = await picture(umzug, false, before.schemas);
      await timed('down', () => umzug.down({ to: applied[0]! }));
      log(`down: reverted ${reverted.length} phases`);
      const afterDown = await timed('compare', () => picture(umzug, true, afterUp.schemas));
      schemaDiff = diffSnapshots(before.schema, afterDown.schema);
      dataDiff = diffChecksums(before.data, afterDown.data);
    } catch (err) {
      const failed = { stage, message: (err as Error).message };
      const stuck = await returnToStart();
      return report(stuck ? { stage: failed.stage, message: `${failed.message}; then reverting to the start failed: ${stuck.message}` } : failed);
    }
    if (schemaDiff.length + dataDiff.length > 0) {
      // The downs have all run: the phases are pending as before, and what they left behind is the diff itself. An up
      // again would only fail on that residue (a table that already exists) and stop between phases.
      log(`compare: ${schemaDiff.length} schema and ${dataDiff.length} data differences; stopping here, with the phases pending as at the start`);
      return report();
    }
    log('compare: schema and data are exactly as before');
    try {
      await timed('up-again', () => umzug.up({ bypassContractGates: true }));
      log(`up again: applied ${reapplied.length} phases`);
      const again = await timed('compare-again', () => picture(umzug, false, afterUp.schemas));
      reapplyDiff = diffSnapshots(afterUp.schema, again.schema);
    } catch (err) {
      const failed = { stage, message: (err as Error).message };
      const stuck = await returnToStart();
      return report(stuck ? { stage: failed.stage, message: `${failed.message}; then reverting to the start failed: ${stuck.message}` } : failed);
    }
    if (reapplyDiff.length > 0 || reapplied.length !== applied.length) {
      const stuck = await returnToStart();
      return report(stuck);
    }
    return report();
  } finally {
    umzug.off('migrating', onMigrating);
    umzug.off('migrated', onMigrated);
    umzug.off('reverted', onReverted);
  }
}

export function formatRehearsal(r: RehearsalReport): string {
  const out: string[] = [];
  if (r.failed) out.push(`✗ rehearsal stopped at "${r.failed.stage}": ${r.failed.message}`);
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
  if (!r.failed && r.reapplyDiff.length === 0 && r.schemaDiff.length + r.dataDiff.length === 0 && r.reapplied.length !== r.applied.length) {
    out.push(`✗ the second up applied ${r.reapplied.length} phases, the first ${r.applied.length}`);
  }
  if (r.ok) {
    out.push(
      r.applied.length === 0
        ? '✓ nothing pending: nothing to rehearse'
        : `✓ rehearsal passed: ${r.applied.length} phases up, down to the start with schema and data exactly as before, and up again to the same schema`,
    );
  } else if (r.endedAt === 'start') {
    out.push(
      `  The database is back at the start: the ${r.applied.length} phases this rehearsal applied were reverted and are pending again` +
        (r.schemaDiff.length + r.dataDiff.length > 0 ? '; what their downs left behind is listed above and is still there.' : '.'),
    );
  }
  if (r.failedPhase) {
    out.push(`  ${r.failedPhase} failed and is not applied; steps it finished before failing stay recorded, and \`umzug up\` resumes from them once the cause is fixed.`);
  }
  if (r.endedAt === 'partial') {
    out.push(`  The database is NOT back at the start: ${r.leftApplied.length} phases this rehearsal applied are still applied (${r.leftApplied.join(', ')}).`);
    out.push(`  To return to the start, fix the failing down and run: ${r.toStart}`);
  }
  return out.join('\n');
}

export class RehearsalFailedError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'rehearsal-failed';
  override name = 'RehearsalFailedError';
}

/** `schema.name` of a Knex history's tables, their sequences and indexes, as the schema snapshot keys them. */
function knexHistoryRelations(h: Project['config']['knexHistory'], defaultSchema: string): string[] {
  if (!h) return [];
  const schema = h.schema ?? defaultSchema;
  const lock = `${h.table}_lock`;
  return [h.table, `${h.table}_pkey`, `${h.table}_id_seq`, lock, `${lock}_pkey`, `${lock}_index_seq`].map((n) => `${schema}.${n}`);
}

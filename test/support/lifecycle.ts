// One lifecycle harness for the integration tier (as pgroll's tests drive every operation through one): a change runs
// expand → contract → undo contract → undo expand → expand → contract while the application's old and new versions
// write, each only while a real deployment would run it, and an invariant is checked the whole time.
import { expect } from 'chai';
import type pg from 'pg';
import type { Knex } from 'knex';
import { zeroDowntime, type Db } from '../../lib/index.js';
import { diffSnapshots, schemaSnapshot, type SchemaSnapshot } from '../../lib/postgres/snapshot.js';
import { startChecker, startLoop, type LoopWriter } from './column-writers.js';
import { openTestDatabase, silentLogger } from './pg.js';
import { tempProject } from './project.js';
import { expectCleanRun } from './writers.js';

/** One statement (or a few) the application runs per loop turn; `i` counts the turns, `maxId` is the largest id seen. */
export type AppStep = (c: pg.Client, i: number, maxId: number) => Promise<void>;

/** An application step that retries a deadlock (40P01) as applications do, ending the failed transaction first. */
export const retryDeadlock = (step: AppStep): AppStep => async (c, i, maxId) => {
  for (;;) {
    try {
      return await step(c, i, maxId);
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      if ((e as { code?: string }).code !== '40P01') throw e;
    }
  }
};

export interface LifecycleCase {
  /** SQL that makes the tables and rows the change works on (a fresh database of the case's own). */
  readonly setup: string;
  /** The body of `changes: [ … ]`, in the migration file (imports come from the package root). */
  readonly changes: string;
  /** The constructors `changes` calls. */
  readonly uses: readonly string[];
  /** What the running (old) version writes: from the start until the contract, and again after the contract is undone. */
  readonly oldApp?: AppStep;
  /** What the new version writes: from the end of the expand until the expand is undone. */
  readonly newApp?: AppStep;
  /** SQL returning one row per violation (its text in column `problem`), checked every 25 ms throughout. */
  readonly invariant?: string;
  /** Errors of the invariant query to ignore (a relation renamed between two statements of its own). */
  readonly invariantMayFail?: RegExp;
  /** The table whose largest `id` the writers aim at (default: none; maxId stays at `rows`). */
  readonly idOf?: string;
  /** Rows the setup made (the writers' first maxId). */
  readonly rows?: number;
  /** Checks after each phase, on the database as it is then. */
  readonly afterExpand?: (knex: Knex) => Promise<void>;
  readonly afterContract?: (knex: Knex) => Promise<void>;
  readonly afterUndo?: (knex: Knex) => Promise<void>;
}

export interface LifecycleReport {
  readonly phases: readonly string[];
  readonly ops: number;
  readonly checks: number;
}

/** The schemas a case touches: public and the state schema (archives, flags and progress live there). */
async function schemaOf(db: Db): Promise<SchemaSnapshot> {
  return db.withConnection((c) => schemaSnapshot(c, ['public']));
}

/**
 * Runs the case in a database named after it. Asserts: no writer saw an error, the invariant held at every check,
 * undoing both phases gives back the schema it started from exactly, and running both again gives the contracted
 * schema exactly. Returns what ran, for the caller's own checks.
 */
export async function runLifecycle(name: string, c: LifecycleCase): Promise<LifecycleReport> {
  const { url, knex, db } = await openTestDatabase(`lc_${name}`);
  const phases: string[] = [];
  const olds: LoopWriter[] = [];
  const news: LoopWriter[] = [];
  let maxId = c.rows ?? 1000;
  let stopped = false;
  try {
    await knex.raw(c.setup);
    const project = tempProject(`lc-${name}`);
    project.write('001.change.ts', `import { defineMigration, ${c.uses.join(', ')} } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [\n${c.changes}\n] });\n`);
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    const before = await schemaOf(db);
    // The invariant holds where a running version relies on both structures: during and after an expand, and once a
    // contract is undone. It is not checked while a phase takes one side away or puts it back (a contract, an undo):
    // the version that used that side is not running then (a merged table's sources, say, go stale between the drop
    // of their triggers and their archiving, and an undo refills them in batches before any old version returns).
    let checking = true;
    let phase = 'before expand';
    const checker = startChecker(
      async () => {
        if (!checking) return null;
        // The engine's Db, not knex.raw: the invariants use jsonb's `?`, which knex.raw would take for a binding.
        if (c.idOf) maxId = Number((await db.query<{ m: number | null }>(`SELECT max(id) AS m FROM ${c.idOf}`).catch(() => ({ rows: [] }))).rows[0]?.m ?? maxId);
        if (!c.invariant) return null;
        return (await db.query<{ problem: string }>(c.invariant)).rows.map((r) => `${phase}: ${r.problem}`);
      },
      c.invariantMayFail,
      { aborted: () => stopped },
    );
    const start = async (label: string, step: AppStep | undefined, into: LoopWriter[]) => {
      if (step) into.push(await startLoop(url, label, (client, i) => step(client, i, maxId)));
    };
    const stopAll = async (ws: LoopWriter[]) => {
      await Promise.all(ws.map((w) => w.stop()));
    };
    const run = async (what: 'up' | 'down', check: boolean) => {
      phase = `during ${what} #${phases.length + 1}`;
      checking = check;
      const r = what === 'up' ? await umzug.up() : await umzug.down();
      phases.push(...r.map((m) => `${what} ${m.name.split(':')[1]}`));
      phase = `after ${phases[phases.length - 1]}`;
      checking = true;
    };
    const all: LoopWriter[] = [];
    try {
      await start('old', c.oldApp, olds);
      await run('up', true); // expand
      // A change that verifies must have read the rows it verified (a verify that read none once passed for one that found none wrong).
      const verified = await db.query<{ n: string | null }>(`SELECT min(verified_rows)::text AS n FROM zero_downtime.changes WHERE verified_at IS NOT NULL`).catch(() => ({ rows: [] }));
      const least = verified.rows[0]?.n;
      if (least != null && (c.rows ?? 0) > 0) expect(Number(least), 'rows the expand verified').to.be.greaterThan(0);
      await c.afterExpand?.(knex);
      await start('new', c.newApp, news);
      await new Promise((r) => setTimeout(r, 150)); // both versions write at once for a moment
      await stopAll(olds); // the old version is retired: the contract may run
      all.push(...olds.splice(0));
      await run('up', false); // contract
      const contracted = await schemaOf(db);
      await c.afterContract?.(knex);
      await run('down', false); // undo the contract: the old version may come back
      await start('old-again', c.oldApp, olds);
      await new Promise((r) => setTimeout(r, 150));
      await stopAll(news); // the new version is gone before its structure is
      all.push(...news.splice(0));
      await run('down', false); // undo the expand
      await c.afterUndo?.(knex);
      await stopAll(olds);
      all.push(...olds.splice(0));
      const reverted = await schemaOf(db);
      expect(diffSnapshots(before, reverted), 'schema after undoing both phases').to.deep.equal([]);
      await run('up', true);
      await run('up', false);
      expect(diffSnapshots(contracted, await schemaOf(db)), 'schema after expand and contract again').to.deep.equal([]);
    } finally {
      await stopAll([...olds, ...news]);
      all.push(...olds, ...news);
      stopped = true;
    }
    const result = await checker.stop();
    expectCleanRun(all, result);
    expect(phases).to.deep.equal(['up expand', 'up contract', 'down contract', 'down expand', 'up expand', 'up contract']);
    await umzug.close();
    return { phases, ops: all.reduce((n, w) => n + w.ops(), 0), checks: result.checks };
  } finally {
    await knex.destroy();
  }
}

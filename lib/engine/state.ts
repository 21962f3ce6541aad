import type { Connection, Db } from '../db/db.js';
import { ident } from '../postgres/identifiers.js';
import { relationExists, type CatalogSnapshot } from '../postgres/catalog.js';
import { STATE_LAYOUT_VERSION, upgradeStateLayout } from './state-layout.js';
import { createKnexHistorySql, knexName, knexTable, mergedHistorySql, recordKnexMigrationSql, removeKnexMigrationSql, type KnexHistoryTable } from '../postgres/knex-history.js';

/** repair: the expand's backfill run again by `verify --repair`, writing only the rows that differ. */
export type PhaseName = 'expand' | 'contract' | 'undoExpand' | 'undoContract' | 'repair';

export interface ChangeState {
  readonly migration: string;
  readonly changeIndex: number;
  readonly kind: string;
  readonly summary: string;
  readonly snapshot: CatalogSnapshot;
  readonly expandStartedAt: Date;
  readonly expandFinishedAt: Date | null;
  readonly contractFinishedAt: Date | null;
  readonly verifiedRows: number | null;
  readonly verifyMismatches: number | null;
  readonly verifiedAt: Date | null;
}

export interface BackfillState {
  readonly lastKey: string[] | null;
  readonly rowsDone: number;
  readonly rowsUpdated: number;
  readonly batches: number;
  readonly done: boolean;
  readonly totalEstimate: number | null;
  readonly updatedAt: Date | null;
}

/** The advisory lock that serializes creating and upgrading the state schema. */
const STATE_LOCK_KEY = 0x7a64_0001;

/**
 * All bookkeeping lives in the target database, under one schema, so any machine can resume, verify or contract.
 * Table and schema names go through ident(); every value is a parameter.
 */
export class StateStore {
  readonly s: string;
  constructor(
    private readonly db: Db,
    readonly schema: string,
    /** A Knex project's own history, read and kept beside ours, so `knex migrate:*` and `umzug` agree at every point. */
    private readonly knexHistory: KnexHistoryTable | null = null,
  ) {
    this.s = ident(schema);
  }

  table(name: 'migrations' | 'changes' | 'steps' | 'backfills'): string {
    return `${this.s}.${ident(name)}`;
  }

  private ensured = false;

  /**
   * Whether the state tables exist, for reads: a read on a database this tool never ran on finds nothing rather
   * than creating the schema (`pending`, `status`, `plan` change nothing). Checked until they exist, then never again.
   */
  async readable(): Promise<boolean> {
    if (this.ensured || this.exists) return true;
    this.exists = await relationExists(this.db, this.table('migrations'));
    return this.exists;
  }

  private exists = false;

  /**
   * Creates the state schema once, or brings an older layout up to this release's (state-layout.ts); a
   * transaction-level advisory lock keeps two first runs from racing on it.
   */
  async ensure(): Promise<void> {
    if (this.ensured) return;
    await this.db.transaction(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [STATE_LOCK_KEY]);
      await upgradeStateLayout(c, this.schema);
    });
    this.ensured = true;
  }

  // ---- Umzug storage -------------------------------------------------------------------------------------------

  async executedNames(): Promise<string[]> {
    const ours = await this.readable();
    const knex = await this.knexReadable();
    if (!ours && !knex) return [];
    const sql = !knex
      ? `SELECT name FROM ${this.table('migrations')} ORDER BY seq`
      : !ours
        ? `SELECT name FROM ${knexTable(this.knexHistory!)} ORDER BY id`
        : mergedHistorySql(this.table('migrations'), this.knexHistory!);
    const r = await this.db.query<{ name: string }>(sql);
    return r.rows.map((x) => x.name);
  }

  async logMigration(name: string): Promise<void> {
    await this.ensure();
    await this.db.write(`INSERT INTO ${this.table('migrations')} (name, layout_version) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, [name, STATE_LAYOUT_VERSION]);
    const file = this.knexHistory ? knexName(name) : null;
    if (!file) return;
    if (!(await this.knexReadable())) {
      for (const text of createKnexHistorySql(this.knexHistory!)) await this.db.write(text);
      this.knexExists = true;
    }
    // One batch per command, as `knex migrate:latest` writes: `knex migrate:rollback` then undoes this whole run.
    const r = await this.db.write<{ batch: number }>(recordKnexMigrationSql(this.knexHistory!), [file, this.knexBatch]);
    this.knexBatch ??= r.rows[0]?.batch ?? null;
  }

  private knexExists = false;
  private knexBatch: number | null = null;

  private async knexReadable(): Promise<boolean> {
    if (!this.knexHistory) return false;
    if (this.knexExists) return true;
    this.knexExists = await relationExists(this.db, knexTable(this.knexHistory));
    return this.knexExists;
  }

  async unlogMigration(name: string): Promise<void> {
    await this.ensure();
    await this.db.write(`DELETE FROM ${this.table('migrations')} WHERE name = $1`, [name]);
    const file = this.knexHistory ? knexName(name) : null;
    if (file && (await this.knexReadable())) await this.db.write(removeKnexMigrationSql(this.knexHistory!), [file]);
  }

  /** Migrations with recorded changes that are not logged as executed: expands that failed or were stopped midway. */
  async halfAppliedExpands(): Promise<string[]> {
    if (!(await this.readable())) return [];
    const r = await this.db.query<{ migration: string }>(
      `SELECT c.migration FROM ${this.table('changes')} c
        WHERE NOT EXISTS (SELECT 1 FROM ${this.table('migrations')} m WHERE m.name = c.migration)
        GROUP BY c.migration ORDER BY min(c.expand_started_at), c.migration`,
    );
    return r.rows.map((x) => x.migration);
  }

  async executedAt(name: string): Promise<Date | null> {
    if (!(await this.readable())) return null;
    const r = await this.db.query<{ executed_at: Date }>(`SELECT executed_at FROM ${this.table('migrations')} WHERE name = $1`, [name]);
    return r.rows[0]?.executed_at ?? null;
  }

  // ---- change state ---------------------------------------------------------------------------------------------

  async getChange(migration: string, changeIndex: number): Promise<ChangeState | null> {
    if (!(await this.readable())) return null;
    const r = await this.db.query<Record<string, unknown>>(
      `SELECT * FROM ${this.table('changes')} WHERE migration = $1 AND change_index = $2`,
      [migration, changeIndex],
    );
    const x = r.rows[0];
    if (!x) return null;
    return {
      migration,
      changeIndex,
      kind: String(x.kind),
      summary: String(x.summary),
      snapshot: x.snapshot as CatalogSnapshot,
      expandStartedAt: x.expand_started_at as Date,
      expandFinishedAt: (x.expand_finished_at as Date | null) ?? null,
      contractFinishedAt: (x.contract_finished_at as Date | null) ?? null,
      verifiedRows: x.verified_rows == null ? null : Number(x.verified_rows),
      verifyMismatches: x.verify_mismatches == null ? null : Number(x.verify_mismatches),
      verifiedAt: (x.verified_at as Date | null) ?? null,
    };
  }

  async startChange(migration: string, changeIndex: number, kind: string, summary: string, snapshot: CatalogSnapshot): Promise<void> {
    await this.db.write(
      `INSERT INTO ${this.table('changes')} (migration, change_index, kind, summary, snapshot) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (migration, change_index) DO NOTHING`,
      [migration, changeIndex, kind, summary, JSON.stringify(snapshot)],
    );
  }

  async markChange(
    migration: string,
    changeIndex: number,
    field: 'expand_finished_at' | 'contract_finished_at',
    value: 'now' | null,
  ): Promise<void> {
    await this.db.write(
      `UPDATE ${this.table('changes')} SET ${ident(field)} = ${value === 'now' ? 'now()' : 'NULL'} WHERE migration = $1 AND change_index = $2`,
      [migration, changeIndex],
    );
  }

  async recordVerify(migration: string, changeIndex: number, rows: number, mismatches: number, samples: unknown[]): Promise<void> {
    await this.db.write(
      `UPDATE ${this.table('changes')} SET verified_rows = $3, verify_mismatches = $4, verify_samples = $5, verified_at = now()
        WHERE migration = $1 AND change_index = $2`,
      [migration, changeIndex, rows, mismatches, JSON.stringify(samples)],
    );
  }

  /** Forgets a change entirely: used once its expand has been undone, so a later `up` starts from scratch. */
  async forgetChange(migration: string, changeIndex: number): Promise<void> {
    await this.db.transaction(async (c) => {
      for (const t of ['steps', 'backfills', 'changes'] as const) {
        await c.query(`DELETE FROM ${this.table(t)} WHERE migration = $1 AND change_index = $2`, [migration, changeIndex]);
      }
    });
  }

  /** Clears the records of phases, so that they can run again (contract after its undo, and the reverse). */
  async clearPhases(migration: string, changeIndex: number, phases: readonly PhaseName[]): Promise<void> {
    await this.db.transaction(async (c) => {
      for (const t of ['steps', 'backfills'] as const) {
        await c.query(`DELETE FROM ${this.table(t)} WHERE migration = $1 AND change_index = $2 AND phase = ANY($3::text[])`, [
          migration,
          changeIndex,
          phases as unknown as string[],
        ]);
      }
    });
  }

  // ---- steps ----------------------------------------------------------------------------------------------------

  async doneSteps(migration: string, changeIndex: number, phase: PhaseName): Promise<Set<string>> {
    if (!(await this.readable())) return new Set();
    const r = await this.db.query<{ step_id: string }>(
      `SELECT step_id FROM ${this.table('steps')} WHERE migration = $1 AND change_index = $2 AND phase = $3`,
      [migration, changeIndex, phase],
    );
    return new Set(r.rows.map((x) => x.step_id));
  }

  async recordStep(conn: Connection, migration: string, changeIndex: number, phase: PhaseName, stepId: string, description: string): Promise<void> {
    await conn.query(
      `INSERT INTO ${this.table('steps')} (migration, change_index, phase, step_id, description) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT DO NOTHING`,
      [migration, changeIndex, phase, stepId, description],
    );
  }

  // ---- backfill progress ----------------------------------------------------------------------------------------

  async getBackfill(migration: string, changeIndex: number, phase: PhaseName): Promise<BackfillState | null> {
    if (!(await this.readable())) return null;
    const r = await this.db.query<Record<string, unknown>>(
      `SELECT * FROM ${this.table('backfills')} WHERE migration = $1 AND change_index = $2 AND phase = $3`,
      [migration, changeIndex, phase],
    );
    const x = r.rows[0];
    if (!x) return null;
    return {
      lastKey: (x.last_key as string[] | null) ?? null,
      rowsDone: Number(x.rows_done),
      rowsUpdated: Number(x.rows_updated),
      batches: Number(x.batches),
      done: Boolean(x.done),
      totalEstimate: x.total_estimate == null ? null : Number(x.total_estimate),
      updatedAt: (x.updated_at as Date | null) ?? null,
    };
  }

  async startBackfill(migration: string, changeIndex: number, phase: PhaseName, totalEstimate: number): Promise<void> {
    await this.db.write(
      `INSERT INTO ${this.table('backfills')} (migration, change_index, phase, total_estimate) VALUES ($1, $2, $3, $4)
       ON CONFLICT (migration, change_index, phase) DO NOTHING`,
      [migration, changeIndex, phase, totalEstimate],
    );
  }

  /** Runs inside the batch's transaction: the batch and its progress commit together or not at all. */
  async advanceBackfill(
    conn: Connection,
    key: { migration: string; changeIndex: number; phase: PhaseName },
    lastKey: string[] | null,
    scanned: number,
    updated: number,
    done: boolean,
    expectedLastKey: string[] | null,
  ): Promise<boolean> {
    const r = await conn.query(
      `UPDATE ${this.table('backfills')} SET last_key = COALESCE($4::jsonb, last_key), rows_done = rows_done + $5,
              rows_updated = rows_updated + $6, batches = batches + 1, done = $7, updated_at = now()
        WHERE migration = $1 AND change_index = $2 AND phase = $3 AND last_key IS NOT DISTINCT FROM $8::jsonb`,
      [
        key.migration,
        key.changeIndex,
        key.phase,
        lastKey ? JSON.stringify(lastKey) : null,
        scanned,
        updated,
        done,
        expectedLastKey ? JSON.stringify(expectedLastKey) : null,
      ],
    );
    return r.rowCount === 1;
  }
}

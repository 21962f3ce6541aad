import type { Connection } from '../db/db.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { createConversionErrorsTable } from '../postgres/conversion-errors.js';
import { ident } from '../postgres/identifiers.js';
import { leaseTableSql } from './lease.js';

/**
 * The state schema's layout, versioned. Each upgrade brings a schema from the version before it to its own, in one
 * transaction with the version row, so a failed upgrade leaves the layout and the version as they were. A database
 * holds the versions applied in `schema_version`; a layout newer than this code knows is refused before anything is
 * written, so an older release never writes into tables it does not understand. Upgrades only add: a release
 * that needs a column renamed adds the new one and keeps the old until a later major version.
 */
export interface StateLayoutUpgrade {
  readonly version: number;
  readonly description: string;
  readonly statements: (schema: string) => readonly string[];
}

const t = (schema: string, name: string) => `${ident(schema)}.${ident(name)}`;

/** Version 1: the tables of 0.1.0, the first release (the layout before versions were recorded). */
const LAYOUT_1: StateLayoutUpgrade = {
  version: 1,
  description: 'migrations, changes, steps, backfills, leases, conversion_errors (the layout of 0.1.0)',
  statements: (s) => [
    `CREATE TABLE IF NOT EXISTS ${t(s, 'migrations')} (
        seq bigserial NOT NULL, name text PRIMARY KEY, executed_at timestamptz NOT NULL DEFAULT now())`,
    `CREATE TABLE IF NOT EXISTS ${t(s, 'changes')} (
        migration text NOT NULL, change_index int NOT NULL, kind text NOT NULL, summary text NOT NULL,
        snapshot jsonb NOT NULL, expand_started_at timestamptz NOT NULL DEFAULT now(), expand_finished_at timestamptz,
        contract_finished_at timestamptz, verified_rows bigint, verify_mismatches bigint, verified_at timestamptz,
        verify_samples jsonb, PRIMARY KEY (migration, change_index))`,
    `CREATE TABLE IF NOT EXISTS ${t(s, 'steps')} (
        migration text NOT NULL, change_index int NOT NULL, phase text NOT NULL, step_id text NOT NULL,
        description text NOT NULL, finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (migration, change_index, phase, step_id))`,
    `CREATE TABLE IF NOT EXISTS ${t(s, 'backfills')} (
        migration text NOT NULL, change_index int NOT NULL, phase text NOT NULL, last_key jsonb,
        rows_done bigint NOT NULL DEFAULT 0, rows_updated bigint NOT NULL DEFAULT 0, batches int NOT NULL DEFAULT 0,
        total_estimate bigint, done boolean NOT NULL DEFAULT false, started_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (migration, change_index, phase))`,
    leaseTableSql(s),
    createConversionErrorsTable(s),
  ],
};

/**
 * Version 2: when each phase was recorded by which release, so a support question ("which version ran this
 * expand?") has an answer, and `status` can tell a phase recorded before versions were.
 */
const LAYOUT_2: StateLayoutUpgrade = {
  version: 2,
  description: 'migrations.layout_version: the state layout version in force when each phase was recorded',
  statements: (s) => [`ALTER TABLE ${t(s, 'migrations')} ADD COLUMN IF NOT EXISTS layout_version int`],
};

/**
 * Version 3: who still runs statements on what a pending contract removes, from pg_stat_statements
 * (lib/ops/queries.ts, contract.requireNoQueries). pg_stat_statements keeps cumulative counters and no timestamps,
 * so "since the cutover" and "last seen" are differences against snapshots kept here: `query_baselines` one row per
 * expand (when its baseline of every statement's calls was taken, and pg_stat_statements' stats_reset then),
 * `query_calls` one row per statement of the baseline (its calls then), and per statement found using the removed
 * structure since (the calls at its latest observation, when they last moved, its text and role).
 */
const LAYOUT_3: StateLayoutUpgrade = {
  version: 3,
  description: 'query_baselines, query_calls: pg_stat_statements snapshots for contract.requireNoQueries',
  statements: (s) => [
    `CREATE TABLE IF NOT EXISTS ${t(s, 'query_baselines')} (
        migration text PRIMARY KEY, taken_at timestamptz NOT NULL, stats_reset timestamptz, cutover text NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS ${t(s, 'query_calls')} (
        migration text NOT NULL, dbid oid NOT NULL, userid oid NOT NULL, queryid bigint NOT NULL,
        baseline_calls bigint NOT NULL DEFAULT 0, seen_calls bigint NOT NULL DEFAULT 0, uses_removed boolean NOT NULL DEFAULT false,
        first_seen_at timestamptz, last_seen_at timestamptz, query text, role text,
        PRIMARY KEY (migration, dbid, userid, queryid))`,
  ],
};

/**
 * Version 4: the backfills' chunk table (lib/backfill/chunks.ts) joins the layout, with `leaf`: the partition whose
 * heap pages a chunk covers when a partitioned table is walked leaf by leaf. An older release would read such a
 * chunk's page numbers as key values, so it is refused here instead. The table was created outside the layout
 * before (same columns but `leaf`).
 */
const LAYOUT_4: StateLayoutUpgrade = {
  version: 4,
  description: 'backfill_chunks, with leaf: the partition a chunk of a leaf-by-leaf backfill walks',
  statements: (s) => [
    `CREATE TABLE IF NOT EXISTS ${t(s, 'backfill_chunks')} (
        migration text NOT NULL, change_index int NOT NULL, phase text NOT NULL, generation timestamptz NOT NULL,
        chunk_no int NOT NULL, lo jsonb, hi jsonb, last_key jsonb, final boolean NOT NULL DEFAULT false, end_key jsonb,
        rows_done bigint NOT NULL DEFAULT 0, rows_updated bigint NOT NULL DEFAULT 0, batches int NOT NULL DEFAULT 0,
        done boolean NOT NULL DEFAULT false, owner int, claimed_at timestamptz, updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (migration, change_index, phase, generation, chunk_no))`,
    `ALTER TABLE ${t(s, 'backfill_chunks')} ADD COLUMN IF NOT EXISTS leaf oid`,
  ],
};

export const STATE_LAYOUT: readonly StateLayoutUpgrade[] = [LAYOUT_1, LAYOUT_2, LAYOUT_3, LAYOUT_4];

/** The layout version this code writes. */
export const STATE_LAYOUT_VERSION = STATE_LAYOUT[STATE_LAYOUT.length - 1]!.version;

export class StateLayoutError extends ZeroDowntimeError {
  override name = 'StateLayoutError';
  readonly code: ZeroDowntimeErrorCode = 'state-layout';
}

/**
 * Brings the state schema to the newest layout of `upgrades`, on a connection inside a transaction that holds the
 * state's advisory lock (so two first runs do not race). Returns the version it found and the one it left.
 */
export async function upgradeStateLayout(c: Connection, schema: string, upgrades: readonly StateLayoutUpgrade[] = STATE_LAYOUT): Promise<{ from: number; to: number }> {
  const versions = t(schema, 'schema_version');
  await c.query(`CREATE SCHEMA IF NOT EXISTS ${ident(schema)}`);
  await c.query(`CREATE TABLE IF NOT EXISTS ${versions} (
      version int PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  const r = await c.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${versions}`);
  const from = r.rows[0]?.v ?? 0;
  const newest = upgrades[upgrades.length - 1]?.version ?? 0;
  if (from > newest) {
    throw new StateLayoutError(
      `The state schema ${schema} is at layout version ${from}, newer than this release of umzug-zero-downtime knows (${newest}): a newer release ran here. ` +
        `Nothing was changed. Run the newer release (upgrade umzug-zero-downtime in this project, or use the version your deploy pipeline uses).`,
    );
  }
  for (const u of upgrades) {
    if (u.version <= from) continue;
    for (const text of u.statements(schema)) await c.query(text);
    await c.query(`INSERT INTO ${versions} (version, description) VALUES ($1, $2)`, [u.version, u.description]);
  }
  return { from, to: Math.max(from, newest) };
}

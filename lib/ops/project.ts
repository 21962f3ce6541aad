import type { MigrateDownOptions, MigrateUpOptions, MigrationMeta, Umzug } from 'umzug';
import type { ResolvedConfig } from '../config.js';
import type { Db, PoolingMode } from '../db/db.js';
import type { Engine, GateStatus } from '../runner.js';
import type { FlagStore } from '../flags/store.js';
import type { Change } from '../migration.js';
import type { Monitor } from '../monitor/monitor.js';

export type MigrationPhase = 'expand' | 'contract' | 'plain';

/** One entry of the list Umzug sees: a typed file gives two (expand and contract), a plain one gives one. */
export interface MigrationEntry {
  readonly name: string;
  readonly file: string;
  readonly phase: MigrationPhase;
  readonly changes: readonly Change[];
  /** The file is a draft (see MigrationDefinition.draft): `up` refuses to run it. */
  readonly draft?: string;
}

export type ZeroDowntimeUpOptions = MigrateUpOptions & {
  /**
   * Run every pending contract in this `up`, right after the expands, whatever its gate says (safety window, read
   * flag, separate deploy). For rehearsals on staging only: in production the gate is what keeps the old version working.
   */
  readonly bypassContractGates?: boolean;
};

export interface GatedContract {
  readonly name: string;
  readonly gate: GateStatus;
}

type MigrationEvent = 'migrating' | 'migrated' | 'reverted';

/**
 * What the operations (status, verify, backfill, plan, rehearse, purge, report, create) need of a configured
 * project, and all they may touch: `ZeroDowntimeUmzug` implements it, and a test or another host can too.
 */
export interface Project {
  readonly config: ResolvedConfig;
  readonly db: Db;
  readonly engine: Engine;
  readonly flags: FlagStore;
  readonly monitor: Monitor;
  /** The list Umzug sees, in execution order. */
  entries(): Promise<MigrationEntry[]>;
  /** Whether a contract entry may run now, and why not. */
  gate(entry: MigrationEntry): Promise<GateStatus>;
  /** How the server sessions behind the pool behave (configured, or detected once). */
  pooling(): Promise<PoolingMode>;
  /** Runs `fn` as the named command: Umzug's command events, and the migration lock for commands that change things. */
  asCommand<T>(command: string, fn: () => Promise<T>): Promise<T>;
  up(options?: ZeroDowntimeUpOptions): Promise<MigrationMeta[]>;
  down(options?: MigrateDownOptions): Promise<MigrationMeta[]>;
  create(options: Parameters<Umzug['create']>[0]): Promise<void>;
  on(event: MigrationEvent, listener: (e: { readonly name: string }) => void): unknown;
  off(event: MigrationEvent, listener: (e: { readonly name: string }) => void): unknown;
}

/** The command line's view of the project: also the Umzug instance its built-in actions (up, down, create) run on. */
export interface CliProject extends Project {
  /** Umzug's options: the command line silences their logger while it prints JSON. */
  readonly options: { readonly logger?: unknown };
  /** The contracts the last `up` left waiting at their gates. */
  readonly lastGated: readonly GatedContract[];
}

// umzug-zero-downtime: typed phased migrations for Umzug and Knex. The rest is under subpaths: /flags,
// /openfeature, /mongo, /monitor, /ops.
export { defineMigration, isDefinedMigration } from './migration.js';
export type {
  Change,
  ChangeDescription,
  DefinedMigration,
  MigrationDefinition,
  PhasePlan,
  Precondition,
  ResolveContext,
  Step,
  BackfillSpec,
  VerifySpec,
  Statement,
} from './migration.js';
export { addColumn, type AddColumnOptions } from './changes/add-column.js';
export { renameColumn, type RenameColumnOptions } from './changes/rename-column.js';
export { changeColumnType, transitionColumnName, type ChangeColumnTypeOptions } from './changes/change-column-type.js';
export { deriveColumn, type DeriveColumnOptions } from './changes/derive-column.js';
export { setNotNull, type SetNotNullOptions } from './changes/set-not-null.js';
export { dropColumn, type DropColumnOptions } from './changes/drop-column.js';
export { addIndex, type AddIndexOptions } from './changes/add-index.js';
export { dropIndex, type DropIndexOptions } from './changes/drop-index.js';
export { addForeignKey, type AddForeignKeyOptions } from './changes/add-foreign-key.js';
export { addCheck, type AddCheckOptions } from './changes/add-check.js';
export { addUnique, type AddUniqueOptions } from './changes/add-unique.js';
export { sql, type SqlOptions } from './changes/sql.js';
export { renameTable, type RenameTableOptions } from './changes/rename-table.js';
export { createTable, type CreateTableOptions } from './changes/create-table.js';
export { dropTable, type DropTableOptions } from './changes/drop-table.js';
export { splitTable, type SplitTableOptions } from './changes/split-table.js';
export { mergeTables, type MergeTablesOptions } from './changes/merge-tables.js';
export { mongoToPostgres, type MongoToPostgresOptions } from './changes/mongo-to-postgres.js';
export type { MongoColumnOptions, MongoVerifyOptions, MongoMove, MongoDocument } from './mongo/move.js';
export type { MongoColumnType, MongoKeyType } from './mongo/column-types.js';
export type { MongoConnectionConfig } from './mongo/connection.js';
export type { TaskContext, TaskRunner, TaskProgress } from './runner.js';
export type { TaskSpec } from './migration.js';
import { provideCli } from './zero-downtime.js';
export { zeroDowntime, ZeroDowntimeUmzug, type ZeroDowntimeContext } from './zero-downtime.js';

// umzug.runAsCLI(): the command line, loaded when a command runs (zero-downtime.ts sits below cli/ and never imports it).
provideCli(() => import('./cli/cli.js'));
export type { MigrationEntry, GatedContract, Project, ZeroDowntimeUpOptions } from './ops/project.js';
export type { ZeroDowntimeConfig, ZeroDowntimeLogger, Duration } from './config.js';
export { ConfigError } from './config.js';
export { ChangeInputError, type TableInput, type TableName } from './postgres/identifiers.js';
export { Engine, ExpandUndoneError, type EngineEvent, type EngineOptions, type GateStatus, type Mover, type MoverRunOptions, type MoverVerification, type CopyStatus, type SourceCounts } from './runner.js';
export { PreflightFailedError } from './engine/preflight.js';
export { StepFailedError, type LockSafetyOptions } from './engine/executor.js';
export { MigrationLockTimeoutError } from './engine/migration-lock.js';
export { LeaseLostError } from './engine/lease.js';
export type { PoolingMode } from './db/db.js';
export { BackfillInterrupted, type BackfillProgress } from './backfill/keyset.js';
export type { BackfillOptions, CanarySettings } from './backfill/keyset.js';
export type { BackfillTuning } from './config/backfill.js';
export type { HealthCheck, ThrottleEvent } from './backfill/throttle.js';
export type { WalkKey } from './backfill/walk-key.js';
export type { VerifyResult } from './verify/consistency.js';
export { CONFIG_SCHEMA } from './config/schema.js';
export { Db } from './db/db.js';
export { ZeroDowntimeError, VerificationFailedError, type ZeroDowntimeErrorCode } from './db/errors.js';
export { StateLayoutError, STATE_LAYOUT_VERSION } from './engine/state-layout.js';
export { zeroDowntimeMigrations, type ZeroDowntimeMigrationsOptions, type ZeroDowntimeMigrationSource, type ZeroDowntimeKnexMigration, type ZeroDowntimeKnexMigrationModule } from './knex-migration-source.js';
// Thrown by `up`/`down` when a rollback threshold trips; the monitor itself is in umzug-zero-downtime/monitor.
export { ThresholdBreachedError } from './monitor/monitor.js';
export type { Monitor, MonitorEvent } from './monitor/monitor.js';
export type { StatusReport } from './ops/status.js';

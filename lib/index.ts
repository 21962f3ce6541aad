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
export { purgeArchives, type PurgeReport, type PurgedArchive } from './ops/purge.js';
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
export type { MongoConnectionConfig } from './mongo/driver.js';
export { MongoDualWriter, firstVersion, type DualWriterOptions, type DualWriteResult, type OutboxEntry } from './mongo/dual-writer.js';
export { DualWriteMetrics } from './mongo/metrics.js';
export { ReadRouter, type ReadRouterOptions } from './mongo/read-router.js';
export { ReverseDualWriter, reverseSync, type ReverseSyncResult, type ReverseWrite, type ReverseWriteResult } from './mongo/reverse.js';
export { validateMove, type MoveValidation, type Mismatch, type MismatchKind, type ValidateOptions } from './mongo/validate.js';
export { runMongoBackfill, MongoBackfillInterrupted, type MongoBackfillProgress, type MongoBackfillRun } from './mongo/backfill.js';
export { PostgresSink } from './mongo/sink.js';
export type { TaskContext, TaskRunner, TaskProgress } from './engine/runner.js';
export type { TaskSpec } from './migration.js';
export { zeroDowntime, ZeroDowntimeUmzug, type ZeroDowntimeContext } from './zero-downtime.js';
export type { MigrationEntry, GatedContract, Project, ZeroDowntimeUpOptions } from './ops/project.js';
export type { ZeroDowntimeConfig, ZeroDowntimeLogger, Duration } from './config.js';
export { ConfigError } from './config.js';
export { ChangeInputError, type TableInput, type TableName } from './postgres/identifiers.js';
export { Engine, ExpandUndoneError, type EngineEvent, type EngineOptions, type GateStatus, type Mover, type MoverRunOptions, type MoverVerification, type CopyStatus, type SourceCounts } from './engine/runner.js';
export { PreflightFailedError } from './engine/preflight.js';
export { StepFailedError, type LockSafetyOptions } from './engine/executor.js';
export { MigrationLockTimeoutError } from './engine/migration-lock.js';
export { LeaseLostError } from './engine/lease.js';
export type { PoolingMode } from './db/db.js';
export { BackfillInterrupted, type BackfillProgress } from './backfill/keyset.js';
export type { BackfillOptions, CanarySettings } from './backfill/keyset.js';
export type { BackfillTuning } from './backfill/options.js';
export type { HealthCheck, ThrottleEvent } from './backfill/throttle.js';
export type { WalkKey } from './backfill/walk-key.js';
export { runBackfills, pendingBackfills, type RunBackfillsOptions, type PendingBackfill } from './ops/backfill.js';
export type { VerifyResult } from './verify/consistency.js';
export type { StatusReport, MigrationStatus, ChangeStatus } from './ops/status.js';
export { createFromTemplate, loadTemplates, templateParams, renderTemplate, TemplateError, type CreateFromTemplateOptions, type TemplateSchema } from './ops/create.js';
export { buildPlan, formatPlan, type PlanReport, type PlannedPhase, type PlannedChange, type PlannedStep, type PlannedStatement } from './ops/plan.js';
export { verifyInFlight, type VerifyReport, type VerifiedChange } from './ops/verify.js';
export { rehearse, formatRehearsal, RehearsalFailedError, type RehearsalReport } from './ops/rehearse.js';
export { CONFIG_SCHEMA } from './config-schema.js';
export { Db } from './db/db.js';
export { ZeroDowntimeError, VerificationFailedError, type ZeroDowntimeErrorCode } from './db/errors.js';
export { flags, FlagClient, type Flag, type FlagClientOptions, type FlagQueryable } from './flags/client.js';
export { FlagStore, type FlagRecord, type FlagChange } from './flags/store.js';
export { bucketOf, inRollout } from './flags/hash.js';
export { ZeroDowntimeFlagProvider } from './flags/openfeature.js';
export { withReadFlag } from './flags/read-flag.js';
export { Monitor, ThresholdBreachedError, type MonitorEvent, type MonitorSettings, type OpenBreach } from './monitor/monitor.js';
export { MonitorMetrics } from './monitor/metrics.js';
export type { ThresholdsConfig, ThresholdName, Finding } from './monitor/thresholds.js';
export type { MonitorConfig } from './monitor/config.js';
export type { BreachRecord, MonitorSample, BreachAction } from './monitor/store.js';
export type { MonitorStatusReport } from './monitor/status.js';
export { renderHtml, type ReportData } from './monitor/report.js';

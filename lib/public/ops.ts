// umzug-zero-downtime/ops: the operations behind the commands (status, verify, backfill, plan, rehearse, purge,
// create), as functions of a configured project, for pipelines that call them from code.
export { purgeArchives, type PurgeReport, type PurgedArchive } from '../ops/purge.js';
export { runBackfills, pendingBackfills, type RunBackfillsOptions, type PendingBackfill } from '../ops/backfill.js';
export type { StatusReport, MigrationStatus, ChangeStatus } from '../ops/status.js';
export { createFromTemplate, loadTemplates, templateParams, renderTemplate, TemplateError, type CreateFromTemplateOptions, type TemplateSchema } from '../ops/create.js';
export { buildPlan, formatPlan, type PlanReport, type PlannedPhase, type PlannedChange, type PlannedStep, type PlannedStatement } from '../ops/plan.js';
export { verifyInFlight, repairMismatches, type VerifyReport, type VerifiedChange, type RepairedChange } from '../ops/verify.js';
export { adoptHistory, type AdoptReport, type AdoptSource } from '../ops/adopt.js';
export { rehearse, formatRehearsal, RehearsalFailedError, type RehearsalReport } from '../ops/rehearse.js';
export { findReferences, pendingRemovals, formatRefs, RefsFoundError, type RefsReport, type RefsFinding, type ContractRemoval, type RemovedStructure, type RefFinding, type RefKind } from '../ops/refs.js';
export { scanSource, scanFiles, listSourceFiles, RefsScanError, type RefsScanOptions, type RefsScanResult } from '../refs/scan.js';

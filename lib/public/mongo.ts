// umzug-zero-downtime/mongo: the application side of a MongoDB → PostgreSQL move (dual-writers, read router,
// reverse sync, validation; needs the mongodb driver).
export { MongoDualWriter, firstVersion, type DualWriterOptions, type DualWriteResult, type OutboxEntry } from '../mongo/dual-writer.js';
export { DualWriteMetrics } from '../mongo/metrics.js';
export { ReadRouter, type ReadRouterOptions } from '../mongo/read-router.js';
export { ReverseDualWriter, reverseSync, type ReverseSyncResult, type ReverseWrite, type ReverseWriteResult } from '../mongo/reverse.js';
export { validateMove, type MoveValidation, type Mismatch, type MismatchKind, type ValidateOptions } from '../mongo/validate.js';
export { runMongoBackfill, MongoBackfillInterrupted, type MongoBackfillProgress, type MongoBackfillRun } from '../mongo/backfill.js';
export { PostgresSink } from '../mongo/sink.js';

/**
 * What every error this package raises on purpose has in common: a stable `code` a pipeline can branch on (the
 * message is for people and may change). Codes are kebab-case and never reused for another meaning.
 */
export type ZeroDowntimeErrorCode =
  | 'config'
  | 'change-input'
  | 'preflight-failed'
  | 'step-failed'
  | 'expand-undone'
  | 'verification-failed'
  | 'migration-lock-timeout'
  | 'lease-busy'
  | 'lease-lost'
  | 'pooling'
  | 'backfill-interrupted'
  | 'threshold-breached'
  | 'rehearsal-failed'
  | 'template'
  | 'metrics-server'
  | 'mongo-map'
  | 'state-layout'
  | 'lint-failed'
  | 'refs-scan'
  | 'refs-found';

export abstract class ZeroDowntimeError extends Error {
  abstract readonly code: ZeroDowntimeErrorCode;
}

/**
 * Old and new structure (or MongoDB and PostgreSQL) disagree on some rows: raised by an expand's verification, by
 * `umzug verify`, and by a Mongo move's validation. `result` is the report of whichever check found it.
 */
export class VerificationFailedError<R = unknown> extends ZeroDowntimeError {
  override name = 'VerificationFailedError';
  readonly code: ZeroDowntimeErrorCode = 'verification-failed';
  constructor(
    message: string,
    readonly result: R,
  ) {
    super(message);
  }
}

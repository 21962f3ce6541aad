/**
 * How long a worker rests after a batch so that the canary's p99 stays within budget: a duty cycle, not a stop-and-go.
 *
 * The canary files its probes as busy (during a batch or its wake) or idle. If a share `sBusy` of the busy probes and
 * `sIdle` of the idle ones are over the budget, and the backfill is busy a fraction f of the time, then about
 * f·sBusy + (1 − f)·sIdle of all probes are over it; the p99 stays within budget while that is under 1 %. The room
 * the application leaves is 1 % − sIdle (never negative: the budget is at least the idle probes' own p99); the pacer
 * gives the backfill half of it (ROOM_SHARE) and solves for f, so noise in the estimates does not take the p99 over. On a server with cores to spare the batches do not slow the
 * probes (sBusy ≈ sIdle), f is 1 and the backfill runs flat out; on a busy one it runs exactly as often as the
 * application can take. Long batches with long rests hurt less than short ones with short rests at the same duty:
 * the scheduler lets a waking reader preempt a long-running backend, but a backend that itself wakes every few
 * milliseconds competes with the reader on equal terms (measured with raw batch loops, see bench/README.md).
 */

/** Share of all probes that may be over budget: the p99 promise; the throttle holds the backfill above it. */
export const TAIL_SHARE = 0.01;
/** The part of the room between the idle probes' share and TAIL_SHARE that the pacer lets the backfill take. */
export const ROOM_SHARE = 0.5;
/**
 * Before this many busy probes the pacer keeps START_FRACTION, and it raises the duty only after this many fresh ones.
 * The first look costs about MIN_BUSY_PROBES × sBusy slow probes, spread over the time START_FRACTION takes to
 * collect them: with 40 probes at 25 %, a 10 s window of the 10M bench was at 2.1× its p99; 15 probes at 10 % keep
 * the look to a handful of slow probes, and a harmless backfill still reaches full speed within seconds.
 */
export const MIN_BUSY_PROBES = 15;
export const START_FRACTION = 0.1;
/** The pacer never plans a duty below this; below it the throttle's hold on the tail share takes over. */
export const MIN_FRACTION = 0.01;

export interface PaceEstimate {
  /** Share of busy probes over budget, and how many busy probes it is taken over. */
  readonly sBusy: number | null;
  readonly busyProbes: number;
  /** Share of idle probes over budget. */
  readonly sIdle: number | null;
}

/** The fraction of the time the backfill may be busy (a batch running, or its wake). */
export function busyFraction(e: PaceEstimate): number {
  if (e.sBusy === null || e.busyProbes < MIN_BUSY_PROBES) return START_FRACTION;
  const idle = Math.min(e.sIdle ?? 0, TAIL_SHARE);
  const target = idle + (TAIL_SHARE - idle) * ROOM_SHARE;
  if (e.sBusy <= target) return 1;
  return Math.min(1, Math.max(MIN_FRACTION, (target - idle) / (e.sBusy - idle)));
}

/**
 * The rest after a batch of `batchMs` for one of `workers` workers, so that all of them together are busy about
 * `fraction` of the time. Each batch makes the next `wakeMs` busy too.
 */
export function restAfter(batchMs: number, fraction: number, workers: number, wakeMs: number): number {
  if (fraction >= 1) return 0;
  return Math.max(0, ((batchMs + wakeMs) * Math.max(1, workers)) / fraction - batchMs);
}

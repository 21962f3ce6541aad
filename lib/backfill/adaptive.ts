/**
 * Steers the batch size toward a target batch duration: a fixed size is either too slow on a quiet table or too
 * long a lock on a busy one, and the right size changes as the table's rows and the load change. Each step moves at
 * most ×2 or ÷2: a full step while the ideal is 4× or more away (a start at 1000 rows reaches 50 000 in six batches
 * instead of ten), half-way toward it nearer the target, so one odd batch (a checkpoint, a cold page) does not swing it.
 */
export class BatchSizer {
  private current: number;
  constructor(
    initial: number,
    readonly min: number,
    readonly max: number,
    readonly targetMs: number,
    readonly adaptive = true,
  ) {
    this.current = clamp(Math.round(initial), min, max);
  }

  private speed: number | null = null;

  get size(): number {
    return this.current;
  }

  /** Rows per millisecond of the recent batches of 100 rows or more (a moving average), or null before one. */
  get rowsPerMs(): number | null {
    return this.speed;
  }

  /**
   * A batch of `rows` rows took `ms` milliseconds. Partial batches (end of a chunk) say little of the size to aim at
   * and are ignored for it; every batch of some size counts for the speed.
   */
  observe(rows: number, ms: number): void {
    if (rows >= 100 && ms > 0) this.speed = this.speed === null ? rows / ms : this.speed * 0.7 + (rows / ms) * 0.3;
    if (!this.adaptive || rows < this.current * 0.9 || rows <= 0) return;
    const ideal = (this.targetMs / Math.max(ms, 1)) * rows;
    const bounded = clamp(ideal, this.current / 2, this.current * 2);
    const far = ideal >= this.current * 4 || ideal <= this.current / 4;
    this.current = clamp(Math.round(far ? bounded : (this.current + bounded) / 2), this.min, this.max);
  }

  /** The batch ran past its statement timeout: split it. Returns false when it cannot get any smaller. */
  split(): boolean {
    if (this.current <= this.min) return false;
    this.current = Math.max(this.min, Math.floor(this.current / 2));
    return true;
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

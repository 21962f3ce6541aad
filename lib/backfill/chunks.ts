import { sqlState, type Connection, type Db } from '../db/db.js';
import type { PhaseName, StateStore } from '../engine/state.js';
import { ident } from '../postgres/identifiers.js';
import { leaseAliveSql, leaseTable } from '../engine/lease.js';
import { workerLeaseName } from './lease.js';

export interface BackfillKey {
  readonly migration: string;
  readonly changeIndex: number;
  readonly phase: PhaseName;
}

/**
 * A slice of the key space: keys after `lo` (exclusive; null = from the start) up to `hi` (inclusive; null = to the
 * end). For ctid walks, heap pages [lo, hi), of `leaf` (an oid) when a partitioned table is walked leaf by leaf.
 * `lastKey` is how far its batches have committed.
 */
export interface Chunk {
  readonly chunkNo: number;
  readonly leaf: number | null;
  readonly lo: string[] | null;
  readonly hi: string[] | null;
  readonly lastKey: string[] | null;
  readonly final: boolean;
  readonly endKey: string[] | null;
}

interface ChunkRow {
  chunk_no: number;
  leaf: string | null;
  lo: string[] | null;
  hi: string[] | null;
  last_key: string[] | null;
  final: boolean;
  end_key: string[] | null;
}

/** Where a chunk planned after `after` starts and ends (see makePlanner). */
export interface PlannedChunk {
  readonly leaf?: number;
  readonly lo: string[] | null;
  readonly hi: string[] | null;
  readonly final: boolean;
  readonly endKey: string[] | null;
}
export type Bound = (c: Connection, after: Chunk | null) => Promise<PlannedChunk>;

const toChunk = (r: ChunkRow): Chunk => ({ chunkNo: r.chunk_no, leaf: r.leaf === null ? null : Number(r.leaf), lo: r.lo, hi: r.hi, lastKey: r.last_key, final: r.final, endKey: r.end_key });
const json = (v: unknown) => (v == null ? null : JSON.stringify(v));

/**
 * The work list of parallel backfills, in the state schema. Chunks are planned lazily, one at a time, by whichever
 * worker runs out of work (so planning never walks the whole table up front), and claimed with FOR UPDATE SKIP
 * LOCKED, so any number of processes on any number of machines share one backfill without waiting on each other.
 * Rows carry the `generation` (the start time of the backfill's progress row): chunks left by an earlier run of an
 * undone expand are never mistaken for this run's.
 */
export class ChunkStore {
  readonly t: string;
  readonly backfills: string;
  private readonly leases: string;
  constructor(
    private readonly db: Db,
    state: StateStore,
    readonly key: BackfillKey,
    readonly generation: string,
  ) {
    this.t = `${ident(state.schema)}.${ident('backfill_chunks')}`;
    this.backfills = state.table('backfills');
    this.leases = leaseTable(state.schema);
  }

  private params(): [string, number, string, string] {
    return [this.key.migration, this.key.changeIndex, this.key.phase, this.generation];
  }

  /**
   * How far each leaf partition's pages are planned, and where its walk ends (the pages it had when its first chunk
   * was planned), for a backfill walked leaf by leaf.
   */
  async plannedLeaves(c: Connection): Promise<Map<number, { planned: number; end: number }>> {
    const r = await c.query<{ leaf: string; planned: string; end: string }>(
      `SELECT leaf::int8 AS leaf, max((hi->>0)::int8) AS planned, max((end_key->>0)::int8) AS end FROM ${this.t}
        WHERE migration = $1 AND change_index = $2 AND phase = $3 AND generation = $4 AND leaf IS NOT NULL GROUP BY leaf`,
      this.params(),
    );
    return new Map(r.rows.map((x) => [Number(x.leaf), { planned: Number(x.planned), end: Number(x.end) }]));
  }

  /**
   * Takes the first unfinished chunk nobody alive holds. An owner is alive while its worker lease is (lib/backfill/lease.ts):
   * on a direct connection a killed process's chunks are free the moment its session ends.
   */
  async claim(c: Connection, owner: number): Promise<Chunk | null> {
    const r = await c.query<ChunkRow>(
      `UPDATE ${this.t} AS ch SET owner = $5, claimed_at = now()
        WHERE (migration, change_index, phase, generation, chunk_no) = (
          SELECT migration, change_index, phase, generation, chunk_no FROM ${this.t} x
           WHERE x.migration = $1 AND x.change_index = $2 AND x.phase = $3 AND x.generation = $4 AND NOT x.done
             AND (x.owner IS NULL OR NOT EXISTS (
                  SELECT 1 FROM ${this.leases} w WHERE w.name = ${workerLeaseName('x.owner')} AND ${leaseAliveSql('w')}))
           ORDER BY x.chunk_no LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING ch.chunk_no, ch.leaf, ch.lo, ch.hi, ch.last_key, ch.final, ch.end_key`,
      [...this.params(), owner],
    );
    return r.rows[0] ? toChunk(r.rows[0]) : null;
  }

  /**
   * Claims a chunk, planning the next one when none is free. Planners queue on the progress row's lock, so two never
   * plan the same range. `bound(lo, last)` returns the next chunk's upper end and whether it is the last chunk.
   * Returns 'none-free' when every chunk is planned and the unfinished ones are held by live workers, 'all-done' when
   * nothing is left at all.
   */
  async claimOrPlan(owner: number, bound: Bound): Promise<Chunk | 'none-free' | 'all-done'> {
    const quick = await this.db.transaction((c) => this.claim(c, owner));
    if (quick) return quick;
    return this.db.transaction(async (c) => {
      await this.lockPlanners(c);
      const again = await this.claim(c, owner);
      if (again) return again;
      const prev = await this.last(c);
      if (prev?.final) {
        const open = await c.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${this.t} WHERE migration = $1 AND change_index = $2 AND phase = $3 AND generation = $4 AND NOT done`,
          this.params(),
        );
        return open.rows[0]!.n === 0 ? 'all-done' : 'none-free';
      }
      if (!prev) {
        // chunks of an earlier generation (an expand undone and run again) are of no use any more
        await c.query(`DELETE FROM ${this.t} WHERE migration = $1 AND change_index = $2 AND phase = $3 AND generation <> $4`, this.params());
      }
      return this.insert(c, prev, await bound(c, prev), owner);
    });
  }

  /**
   * Plans the chunk after the last one while the workers still walk theirs, so the next worker to run out claims it
   * at once instead of waiting in line for its bound: an index walk of chunkRows keys (heap checks included where
   * pages are not all-visible) that took a sixth of the backfill's time at 10M rows when paid between chunks. The
   * walk runs without the planners' lock, which the batches' progress updates also wait for; the chunk is inserted
   * only if nobody planned one meanwhile, and unowned, so whichever worker is free first takes it. Does nothing while
   * a free chunk is waiting, before the first chunk (claimOrPlan plans that one) and after the last.
   */
  async planAhead(bound: Bound): Promise<boolean> {
    const look = await this.db.withConnection(async (c) => {
      const prev = await this.last(c);
      if (!prev || prev.final) return null;
      const free = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${this.t} WHERE migration = $1 AND change_index = $2 AND phase = $3 AND generation = $4 AND NOT done AND owner IS NULL`,
        this.params(),
      );
      return free.rows[0]!.n > 0 ? null : { prev, next: await bound(c, prev) };
    });
    if (!look) return false;
    const { prev, next } = look;
    return this.db.transaction(async (c) => {
      await this.lockPlanners(c);
      const now = await this.last(c);
      if (now?.chunkNo !== prev.chunkNo) return false;
      await this.insert(c, prev, next, null);
      return true;
    });
  }

  private async lockPlanners(c: Connection): Promise<void> {
    await c.query(`SELECT 1 FROM ${this.backfills} WHERE migration = $1 AND change_index = $2 AND phase = $3 FOR UPDATE`, this.params().slice(0, 3));
  }

  private async last(c: Connection): Promise<Chunk | null> {
    const r = await c.query<ChunkRow>(
      `SELECT chunk_no, leaf, lo, hi, last_key, final, end_key FROM ${this.t}
        WHERE migration = $1 AND change_index = $2 AND phase = $3 AND generation = $4 ORDER BY chunk_no DESC LIMIT 1`,
      this.params(),
    );
    return r.rows[0] ? toChunk(r.rows[0]) : null;
  }

  private async insert(c: Connection, prev: Chunk | null, next: PlannedChunk, owner: number | null): Promise<Chunk> {
    const ins = await c.query<ChunkRow>(
      `INSERT INTO ${this.t} (migration, change_index, phase, generation, chunk_no, lo, hi, final, end_key, owner, claimed_at, leaf)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $10::int IS NULL THEN NULL ELSE now() END, $11)
       RETURNING chunk_no, leaf, lo, hi, last_key, final, end_key`,
      [...this.params(), (prev?.chunkNo ?? -1) + 1, json(next.lo), json(next.hi), next.final, json(next.endKey), owner, next.leaf ?? null],
    );
    return toChunk(ins.rows[0]!);
  }

  /**
   * Inside the batch's transaction: records the batch on its chunk, if the chunk is still ours and still where we
   * left it, and on the backfill's progress row. Returns the backfill's totals, or null when the chunk was taken
   * over (the caller must roll back: someone else owns these rows now).
   */
  async advance(
    c: Connection,
    chunkNo: number,
    owner: number,
    from: string[] | null,
    to: string[] | null,
    scanned: number,
    updated: number,
    done: boolean,
  ): Promise<{ rowsDone: number; rowsUpdated: number; batches: number } | null> {
    const moved = await c.query(
      `UPDATE ${this.t} SET last_key = COALESCE($8::jsonb, last_key), rows_done = rows_done + $9, rows_updated = rows_updated + $10,
              batches = batches + 1, done = $11, updated_at = now()
        WHERE migration = $1 AND change_index = $2 AND phase = $3 AND generation = $4 AND chunk_no = $5 AND owner = $6
          AND last_key IS NOT DISTINCT FROM $7::jsonb AND NOT done`,
      [...this.params(), chunkNo, owner, json(from), json(to), scanned, updated, done],
    );
    if (moved.rowCount !== 1) return null;
    const totals = await c.query<{ rows_done: string; rows_updated: string; batches: number }>(
      `UPDATE ${this.backfills} SET rows_done = rows_done + $4, rows_updated = rows_updated + $5, batches = batches + 1,
              last_key = COALESCE($6::jsonb, last_key), updated_at = now()
        WHERE migration = $1 AND change_index = $2 AND phase = $3 RETURNING rows_done, rows_updated, batches`,
      [this.key.migration, this.key.changeIndex, this.key.phase, scanned, updated, json(to)],
    );
    const t = totals.rows[0]!;
    return { rowsDone: Number(t.rows_done), rowsUpdated: Number(t.rows_updated), batches: Number(t.batches) };
  }

  async read(chunkNo: number): Promise<{ lastKey: string[] | null; owner: number | null; done: boolean } | null> {
    const r = await this.db.query<{ last_key: string[] | null; owner: number | null; done: boolean }>(
      `SELECT last_key, owner, done FROM ${this.t} WHERE migration = $1 AND change_index = $2 AND phase = $3 AND generation = $4 AND chunk_no = $5`,
      [...this.params(), chunkNo],
    );
    const x = r.rows[0];
    return x ? { lastKey: x.last_key, owner: x.owner, done: x.done } : null;
  }

  /**
   * Gives a chunk back (SIGINT, an error): another worker, or the next run, continues it from its last key. Not fenced:
   * a run that lost the migration lock must still let go of its chunks.
   */
  async release(chunkNo: number, owner: number): Promise<void> {
    await this.db.query(
      `UPDATE ${this.t} SET owner = NULL WHERE migration = $1 AND change_index = $2 AND phase = $3 AND generation = $4 AND chunk_no = $5 AND owner = $6`,
      [...this.params(), chunkNo, owner],
    );
  }

  /** Marks the whole backfill done; the caller has seen every chunk planned and done. */
  async finish(): Promise<void> {
    await this.db.write(`UPDATE ${this.backfills} SET done = true, updated_at = now() WHERE migration = $1 AND change_index = $2 AND phase = $3`, [
      this.key.migration,
      this.key.changeIndex,
      this.key.phase,
    ]);
  }
}

/** How far a leaf-by-leaf backfill has walked one partition. */
export interface PartitionProgress {
  /** The partition's qualified name now, or `oid N` once it is gone (detached and dropped). */
  readonly partition: string;
  readonly rowsDone: number;
  /** A walk by heap pages: the pages walked, of the partition's pages when its walk was planned (rows written later
   * are the sync trigger's). null for a walk by the key. */
  readonly pagesDone: number | null;
  readonly pages: number | null;
  readonly done: boolean;
}

/**
 * Per partition, the progress of the current run of a backfill walked leaf by leaf (`umzug status`); empty for a
 * backfill walked by key or for a state schema from before chunks recorded their leaf.
 */
export async function partitionProgress(db: Db, state: StateStore, key: BackfillKey): Promise<PartitionProgress[]> {
  const lo = `(ch.lo->>0)::int8`;
  try {
    // Page chunks have an end page; a chunk walked by the key has none, and its keys are no page numbers.
    const r = await db.query<{ partition: string; rows_done: string; pages_done: string | null; pages: string | null; done: boolean }>(
      `SELECT coalesce(format('%I.%I', n.nspname, c.relname), 'oid ' || ch.leaf) AS partition, sum(ch.rows_done)::int8 AS rows_done,
              sum(CASE WHEN ch.end_key IS NULL THEN NULL WHEN ch.done THEN (ch.hi->>0)::int8 - ${lo} ELSE coalesce((ch.last_key->>0)::int8, ${lo}) - ${lo} END)::int8 AS pages_done,
              max((ch.end_key->>0)::int8) AS pages,
              bool_and(ch.done) AND (bool_and(ch.end_key IS NULL) OR max((ch.hi->>0)::int8) >= max((ch.end_key->>0)::int8)) AS done
         FROM ${ident(state.schema)}.${ident('backfill_chunks')} ch
         JOIN ${state.table('backfills')} b ON (b.migration, b.change_index, b.phase) = (ch.migration, ch.change_index, ch.phase) AND b.started_at = ch.generation
         LEFT JOIN pg_class c ON c.oid = ch.leaf LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ch.migration = $1 AND ch.change_index = $2 AND ch.phase = $3 AND ch.leaf IS NOT NULL
        GROUP BY ch.leaf, n.nspname, c.relname ORDER BY ch.leaf`,
      [key.migration, key.changeIndex, key.phase],
    );
    const n = (v: string | null) => (v === null ? null : Number(v));
    return r.rows.map((x) => ({ partition: x.partition, rowsDone: Number(x.rows_done), pagesDone: n(x.pages_done), pages: n(x.pages), done: x.done }));
  } catch (e) {
    if (['42P01', '42703', '3F000'].includes(sqlState(e) ?? '')) return [];
    throw e;
  }
}

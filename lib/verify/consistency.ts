import type { Db } from '../db/db.js';
import type { VerifySpec } from '../migration.js';
import { verifyChunkSql, verifyPagesSql, type KeyColumn } from '../postgres/batch-sql.js';
import { qualified } from '../postgres/identifiers.js';
import { readPageRanges } from '../postgres/activity-sql.js';

export interface VerifyResult {
  readonly rowsChecked: number;
  readonly mismatches: number;
  /** Up to 10 keys (as text) of rows that disagree. */
  readonly sampleKeys: readonly (readonly string[])[];
}

interface ChunkRow {
  scanned: number;
  mismatches: number;
  samples: string[][] | null;
  last_key: string[] | null;
}

/**
 * How the table is walked: by heap pages where PostgreSQL has TID range scans (14+) and the table is a plain one (a
 * partitioned table's ctid is each partition's own), by key otherwise. `pages` is the heap's size when verify starts:
 * row versions written after that are the sync trigger's, which keeps them equal as it writes them.
 */
async function pageWalk(db: Db, spec: VerifySpec): Promise<{ pages: number; rowsPerPage: number } | null> {
  const r = await db.query<{ plain: boolean; pages: string; rows: number; relpages: number }>(
    `SELECT c.relkind = 'r' AND current_setting('server_version_num')::int >= 140000 AS plain,
            (pg_relation_size(c.oid) / current_setting('block_size')::int)::text AS pages, c.reltuples::float8 AS rows, c.relpages::int AS relpages
       FROM pg_class c WHERE c.oid = $1::regclass`,
    [qualified(spec.table)],
  );
  const x = r.rows[0];
  if (!x?.plain) return null;
  return { pages: Number(x.pages), rowsPerPage: x.rows > 0 && x.relpages > 0 ? x.rows / x.relpages : 50 };
}

/**
 * Walks the whole table in keyset chunks (each chunk a short read, no long-running snapshot holding back vacuum)
 * and counts rows where old and new disagree.
 */
export async function verifyConsistency(
  db: Db,
  spec: VerifySpec,
  keys: readonly KeyColumn[],
  chunkSize = 10_000,
  onChunk?: (checked: number, mismatches: number) => void,
): Promise<VerifyResult> {
  const heap = await pageWalk(db, spec);
  if (heap) return verifyByPages(db, spec, keys, heap, chunkSize, onChunk);
  const firstSql = verifyChunkSql(spec.table, keys, spec.equal, false);
  const nextSql = verifyChunkSql(spec.table, keys, spec.equal, true);
  let last: string[] | null = null;
  let rowsChecked = 0;
  let mismatches = 0;
  const samples: string[][] = [];
  for (;;) {
    const r: { rows: ChunkRow[] } = await db.query<ChunkRow>(
      last ? nextSql : firstSql,
      last ? [chunkSize, ...last] : [chunkSize],
    );
    const row: ChunkRow | undefined = r.rows[0];
    if (!row) break;
    rowsChecked += row.scanned;
    mismatches += row.mismatches;
    for (const s of row.samples ?? []) if (samples.length < 10) samples.push(s);
    onChunk?.(rowsChecked, mismatches);
    if (row.scanned < chunkSize || !row.last_key) break;
    last = row.last_key;
  }
  return { rowsChecked, mismatches, sampleKeys: samples };
}

/**
 * verifyConsistency over heap pages, `chunkSize` rows' worth at a time (as the statistics count rows per page), each
 * chunk its own short statement. A row the application moves to a page already read is not read again; it was
 * written through the sync trigger.
 */
async function verifyByPages(
  db: Db,
  spec: VerifySpec,
  keys: readonly KeyColumn[],
  heap: { pages: number; rowsPerPage: number },
  chunkSize: number,
  onChunk?: (checked: number, mismatches: number) => void,
): Promise<VerifyResult> {
  const sql = verifyPagesSql(spec.table, keys, spec.equal);
  const step = Math.max(1, Math.ceil(chunkSize / Math.max(1, heap.rowsPerPage)));
  let rowsChecked = 0;
  let mismatches = 0;
  const samples: string[][] = [];
  // The first read after a backfill also prunes the old row versions and sets hint bits on every page: on an idle
  // server a second connection does half of it on the other core, as the backfill's idle worker does.
  await readPageRanges(db, heap.pages, step, false, async (lo, hi) => {
    const r = await db.query<{ scanned: number; mismatches: number; samples: string[][] | null }>(sql, [lo, hi]);
    const row = r.rows[0]!;
    rowsChecked += row.scanned;
    mismatches += row.mismatches;
    for (const k of row.samples ?? []) if (samples.length < 10) samples.push(k);
    onChunk?.(rowsChecked, mismatches);
  });
  return { rowsChecked, mismatches, sampleKeys: samples };
}

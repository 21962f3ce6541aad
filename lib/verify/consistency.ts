import { sqlState, type Db } from '../db/db.js';
import type { VerifySpec } from '../migration.js';
import { HEAP_LEAVES_SQL, TABLE_KIND_SQL, verifyChunkSql, verifyPagesSql, type KeyColumn } from '../postgres/batch-sql.js';
import { qualified, type TableName } from '../postgres/identifiers.js';
import { readPageRanges } from '../postgres/activity-sql.js';
import { relationExists } from '../postgres/catalog.js';

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

/** A heap to read by page ranges: the table itself, or one leaf partition of it. */
interface Heap {
  readonly table: TableName;
  /** A partition of the table verified (a leaf dropped meanwhile is skipped). */
  readonly leaf: boolean;
  readonly pages: number;
  readonly rowsPerPage: number;
}

/**
 * How the table is walked: by heap pages where PostgreSQL has TID range scans (14+), a plain table as one heap and a
 * partitioned one leaf by leaf (a ctid is each partition's own, and each leaf is a heap with its own pages: no index
 * walk, no Merge Append over every partition's key); by key otherwise (a foreign partition, an older server). `pages`
 * is each heap's size when verify starts: row versions written after that are the sync trigger's, which keeps them
 * equal as it writes them.
 */
async function pageWalk(db: Db, spec: VerifySpec): Promise<Heap[] | null> {
  const t = await db.query<{ relkind: string; version: number }>(TABLE_KIND_SQL, [qualified(spec.table)]);
  const top = t.rows[0];
  if (!top || top.version < 140000 || (top.relkind !== 'r' && top.relkind !== 'p')) return null;
  const r = await db.query<{ schema: string; name: string; relkind: string; pages: string; rows: number; relpages: number }>(HEAP_LEAVES_SQL, [qualified(spec.table)]);
  if (r.rows.length === 0 || r.rows.some((x) => x.relkind !== 'r')) return null;
  const byName = (x: { schema: string; name: string }) => `${x.schema}.${x.name}`;
  return [...r.rows].sort((x, y) => byName(x).localeCompare(byName(y))).map((x) => ({
    table: { schema: x.schema, name: x.name },
    leaf: top.relkind === 'p',
    pages: Number(x.pages),
    rowsPerPage: x.rows > 0 && x.relpages > 0 ? x.rows / x.relpages : 50,
  }));
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
  const heaps = await pageWalk(db, spec);
  if (heaps) return verifyByPages(db, spec, keys, heaps, chunkSize, onChunk);
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
 * chunk its own short statement, one heap after the other. A row the application moves to a page already read is not
 * read again; it was written through the sync trigger. A leaf dropped since the walk began is skipped (its rows are
 * no longer the table's); one detached since is read all the same (its rows were the table's when verify began).
 */
async function verifyByPages(
  db: Db,
  spec: VerifySpec,
  keys: readonly KeyColumn[],
  heaps: readonly Heap[],
  chunkSize: number,
  onChunk?: (checked: number, mismatches: number) => void,
): Promise<VerifyResult> {
  let rowsChecked = 0;
  let mismatches = 0;
  const samples: string[][] = [];
  for (const heap of heaps) {
    const sql = verifyPagesSql(heap.table, keys, spec.equal, heap.leaf ? spec.table : undefined);
    const step = Math.max(1, Math.ceil(chunkSize / Math.max(1, heap.rowsPerPage)));
    // The first read after a backfill also prunes the old row versions and sets hint bits on every page: on an idle
    // server a second connection does half of it on the other core, as the backfill's idle worker does.
    try {
      await readPageRanges(db, heap.pages, step, false, async (lo, hi) => {
        const r = await db.query<{ scanned: number; mismatches: number; samples: string[][] | null }>(sql, [lo, hi]);
        const row = r.rows[0]!;
        rowsChecked += row.scanned;
        mismatches += row.mismatches;
        for (const k of row.samples ?? []) if (samples.length < 10) samples.push(k);
        onChunk?.(rowsChecked, mismatches);
      });
    } catch (e) {
      // Only a leaf that is gone: any other error (a mistake in the statement above all) must not pass for it.
      if (heap.leaf && sqlState(e) === '42P01' && !(await relationExists(db, qualified(heap.table)))) continue;
      throw e;
    }
  }
  return { rowsChecked, mismatches, sampleKeys: samples };
}

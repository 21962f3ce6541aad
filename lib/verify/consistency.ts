import type { Db } from '../db/db.js';
import type { VerifySpec } from '../migration.js';
import { verifyChunkSql, type KeyColumn } from '../postgres/batch-sql.js';

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

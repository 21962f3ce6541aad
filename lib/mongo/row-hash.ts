import { createHash } from 'node:crypto';
import type { Cell } from './column-types.js';

/**
 * The row text both sides hash, identical to PostgreSQL's `jsonb_build_array(piece, …)::text` (see
 * lib/mongo/sql.ts rowTextSql): jsonb prints strings escaped exactly as JSON.stringify does, `, ` between
 * elements. md5 because PostgreSQL has it built in (no extension needed); it detects differences, it guards nothing.
 */
export function rowText(cells: readonly Cell[]): string {
  return `[${cells.map((c) => (c.piece === null ? 'null' : JSON.stringify(c.piece))).join(', ')}]`;
}

export function rowMd5(cells: readonly Cell[]): string {
  return createHash('md5').update(rowText(cells), 'utf8').digest('hex');
}

/** The 60-bit slice of a row's md5 that the chunk sum adds up (same as rowHashSql). */
export function hash60(md5hex: string): bigint {
  return BigInt(`0x${md5hex.slice(0, 15)}`);
}

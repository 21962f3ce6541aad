import type { TableInfo } from '../postgres/catalog.js';
import { ChangeInputError, tableLabel } from '../postgres/identifiers.js';

/** PostgreSQL 13 accepts a BEFORE row trigger on a partitioned table (cloned to every partition); earlier versions refuse it. */
export const ROW_TRIGGERS_ON_PARTITIONED = 130000;

/** Refuses a change whose sync trigger (BEFORE, for each row) PostgreSQL before 13 cannot put on a partitioned table. */
export function refuseSyncTriggerBefore13(info: TableInfo | undefined, what: string): void {
  const version = info?.partitioning?.serverVersion;
  if (version === undefined || version >= ROW_TRIGGERS_ON_PARTITIONED) return;
  refusePartitioned(
    info,
    what,
    `PostgreSQL ${Math.floor(version / 10000)} cannot put its sync trigger (BEFORE INSERT OR UPDATE, for each row) on a partitioned table (13 can)`,
    'Upgrade to PostgreSQL 13 or later, or make the change with sql().',
  );
}

/** PostgreSQL 18 accepts a foreign key NOT VALID on a partitioned table; earlier versions refuse it. */
export const FOREIGN_KEY_NOT_VALID_ON_PARTITIONED = 180000;

/** PostgreSQL 12 accepts a foreign key that references a partitioned table; 11 refuses it. */
export const FOREIGN_KEY_TO_PARTITIONED = 120000;

/** Refuses a change whose foreign key would reference a partitioned table, which PostgreSQL before 12 cannot do. */
export function refuseReferenceBefore12(info: TableInfo | undefined, what: string, instead: string): void {
  const version = info?.partitioning?.serverVersion;
  if (version === undefined || version >= FOREIGN_KEY_TO_PARTITIONED) return;
  refusePartitioned(info, what, `PostgreSQL ${Math.floor(version / 10000)} cannot make a foreign key that references a partitioned table (12 can)`, instead);
}

/** `public.events (partitions public.events_2024, public.events_2025, … 5 in all)`, for refusals. */
export function partitionedLabel(info: TableInfo): string {
  const parts = info.partitioning?.partitions ?? [];
  const shown = parts.slice(0, 4).map((p) => tableLabel(p.table));
  return `${tableLabel(info.table)} (partitions ${shown.join(', ')}${parts.length > shown.length ? `, … ${parts.length} in all` : ''})`;
}

/**
 * Refuses, before anything runs, a change that cannot yet be done safely on a partitioned table; called from
 * describe(), so the engine's prepare stops the whole migration with nothing installed. A snapshot taken by an
 * older release has no partitioning and is never refused here: a change it started is not stopped half-way.
 */
export function refusePartitioned(info: TableInfo | undefined, what: string, why: string, instead: string): void {
  if (!info?.partitioning) return;
  throw new ChangeInputError(`${what}: ${partitionedLabel(info)} is partitioned, and ${why}. Nothing was changed. ${instead}`);
}

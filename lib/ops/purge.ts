import { isTableArchiveKind, registryTable } from '../postgres/archive.js';
import { qualified } from '../postgres/identifiers.js';
import type { Project } from './project.js';
import { relationExists } from '../postgres/catalog.js';

export interface PurgedArchive {
  readonly archive: string;
  readonly table: string;
  readonly columns: readonly string[];
  readonly kind: string;
  readonly createdAt: string;
  readonly rows: number | null;
}

export interface PurgeReport {
  readonly olderThanMs: number;
  readonly dryRun: boolean;
  /** Archives deleted (or, with dryRun, that would be). */
  readonly purged: readonly PurgedArchive[];
  /** Archives kept: younger than the retention. */
  readonly kept: number;
}

/**
 * Deletes archives made more than `olderThanMs` ago, under the migration lock: column archives (dropColumn,
 * changeColumnType, renameColumn, deriveColumn, setNotNull) and whole tables (dropTable, the two tables a mergeTables
 * contract retired, an undone createTable that held rows). Each is dropped in a transaction of its own with its registry row.
 * What it means for `down`: a dropColumn contract can then no longer be undone with its data (down refuses and says
 * so); a type change, rename or derived column is still undone, every row through its `down` conversion; a dropTable
 * contract can no longer be undone (down refuses and says so).
 */
export async function purgeArchives(umzug: Project, opts: { readonly olderThanMs: number; readonly dryRun?: boolean }): Promise<PurgeReport> {
  if (!Number.isFinite(opts.olderThanMs) || opts.olderThanMs < 0) throw new TypeError('purge: --older-than must be a non-negative duration such as "30d"');
  return umzug.asCommand('purge', async () => {
    const schema = umzug.config.stateSchema;
    const registry = registryTable(schema);
    if (!(await relationExists(umzug.db, registry))) return { olderThanMs: opts.olderThanMs, dryRun: opts.dryRun === true, purged: [], kept: 0 };
    const rows = await umzug.db.query<{ archive: string; source_table: string; source_columns: string[]; kind: string; created_at: Date; rows: string | null; old: boolean }>(
      `SELECT archive, source_table, source_columns, kind, created_at, rows::text AS rows,
              created_at < now() - make_interval(secs => $1::float8 / 1000) AS old
         FROM ${registry} ORDER BY created_at`,
      [opts.olderThanMs],
    );
    const purged: PurgedArchive[] = [];
    for (const r of rows.rows.filter((x) => x.old)) {
      if (!opts.dryRun) {
        await umzug.db.transaction(async (c) => {
          await c.query(`DROP TABLE IF EXISTS ${qualified({ schema, name: r.archive })}`);
          await c.query(`DELETE FROM ${registry} WHERE archive = $1`, [r.archive]);
        });
      }
      purged.push({
        archive: `${schema}.${r.archive}`,
        table: r.source_table,
        columns: r.source_columns,
        kind: r.kind,
        createdAt: r.created_at.toISOString(),
        rows: r.rows === null ? null : Number(r.rows),
      });
    }
    return { olderThanMs: opts.olderThanMs, dryRun: opts.dryRun === true, purged, kept: rows.rows.length - purged.length };
  });
}

export function formatPurge(report: PurgeReport): string {
  if (report.purged.length === 0) return `No archive older than the retention (${report.kept} kept).`;
  const verb = report.dryRun ? 'Would purge' : 'Purged';
  return [
    `${verb} ${report.purged.length} archive(s); ${report.kept} kept.`,
    ...report.purged.map((p) => `  ${p.archive}: ${p.table} (${p.columns.join(', ') || (isTableArchiveKind(p.kind) ? 'whole table' : 'keys')}) ${p.kind}, ${p.rows ?? '?'} rows, made ${p.createdAt}`),
  ].join('\n');
}

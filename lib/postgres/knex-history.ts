import { ident } from './identifiers.js';

/** Where a Knex project records its migrations (its knexfile's `migrations.tableName` / `schemaName`). */
export interface KnexHistoryTable {
  readonly table: string;
  readonly schema: string | null;
}

function qualifiedName(h: KnexHistoryTable, name: string): string {
  return h.schema ? `${ident(h.schema)}.${ident(name)}` : ident(name);
}

export function knexTable(h: KnexHistoryTable): string {
  return qualifiedName(h, h.table);
}

/**
 * Knex's two tables as `knex migrate:*` creates them, for a project whose Knex history does not exist yet: written
 * the same way, so both CLIs keep reading and writing the one history.
 */
export function createKnexHistorySql(h: KnexHistoryTable): string[] {
  const lock = qualifiedName(h, `${h.table}_lock`);
  return [
    ...(h.schema ? [`CREATE SCHEMA IF NOT EXISTS ${ident(h.schema)}`] : []),
    `CREATE TABLE IF NOT EXISTS ${knexTable(h)} (id serial PRIMARY KEY, name varchar(255), batch integer, migration_time timestamptz)`,
    `CREATE TABLE IF NOT EXISTS ${lock} ("index" serial PRIMARY KEY, is_locked integer)`,
    `INSERT INTO ${lock} (is_locked) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM ${lock})`,
  ];
}

/**
 * Every migration name either history holds, oldest first: ours (`migrations`, with `name:expand` for a typed file)
 * and Knex's (the file name). A name in both counts once, as ours. $1 none.
 */
export function mergedHistorySql(ours: string, h: KnexHistoryTable): string {
  return `SELECT name FROM (
  SELECT m.name, m.executed_at AS at, 1 AS src, m.seq AS ord FROM ${ours} m
  UNION ALL
  SELECT k.name, coalesce(k.migration_time, '-infinity'), 0, k.id FROM ${knexTable(h)} k
   WHERE NOT EXISTS (SELECT 1 FROM ${ours} m WHERE m.name = k.name OR m.name = k.name || ':expand')
) x ORDER BY at, src, ord`;
}

/** Records a file as run, in the batch of this command ($1 = the file name, $2 = the batch or null for a new one). */
export function recordKnexMigrationSql(h: KnexHistoryTable): string {
  return `INSERT INTO ${knexTable(h)} (name, batch, migration_time)
SELECT $1::text, coalesce($2::int, (SELECT coalesce(max(batch), 0) + 1 FROM ${knexTable(h)})), now()
 WHERE NOT EXISTS (SELECT 1 FROM ${knexTable(h)} WHERE name = $1::text)
RETURNING batch`;
}

/** $1 = the file name. */
export function removeKnexMigrationSql(h: KnexHistoryTable): string {
  return `DELETE FROM ${knexTable(h)} WHERE name = $1`;
}

/** The name Knex knows a migration by: a plain file's name, a typed file's name for its expand, none for a contract. */
export function knexName(name: string): string | null {
  if (name.endsWith(':contract')) return null;
  return name.replace(/:expand$/, '');
}

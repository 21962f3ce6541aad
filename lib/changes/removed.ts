import type { Change, ChangeDescription, ResolveContext, Step } from '../migration.js';
import type { CatalogSnapshot } from '../postgres/catalog.js';
import { list, obj, parseSqlSync, str } from '../postgres/sql-ast.js';

/**
 * A name the application can no longer use once a contract has run: a table (or view) that is gone, or a column of
 * a table that is gone. `umzug refs` looks for these in the application's source; `contract.requireNoRefs` keeps a
 * contract waiting while the source still mentions one.
 */
export interface RemovedStructure {
  readonly schema: string;
  readonly table: string;
  /** Absent when the whole table (or view) goes. */
  readonly column?: string;
}

/** `users.name`, `audit_log`; the schema shown only when it is not the default one. */
export function removedLabel(r: RemovedStructure, defaultSchema = 'public'): string {
  const table = r.schema === defaultSchema ? r.table : `${r.schema}.${r.table}`;
  return r.column === undefined ? table : `${table}.${r.column}`;
}

/**
 * What a change's contract removes, read from its own contract plan (the statements the engine would run) by
 * PostgreSQL's parser, in this one place rather than declared by each of the 17 change types: whatever a change's
 * contract does, the statements are the truth, and a change type added later is covered without a line here.
 *
 * - `ALTER TABLE t DROP COLUMN c` removes t.c, unless a later statement of the same contract gives that name to
 *   another column (changeColumnType drops `c` and renames `c__new` to `c`: the name lives on, with the new type);
 * - `DROP TABLE` / `DROP VIEW` / `DROP MATERIALIZED VIEW` remove the relation (renameTable's view under the old name);
 * - `ALTER TABLE t RENAME TO x` removes t (dropTable and mergeTables move the table aside, into the state schema);
 * - objects of the state schema (archives) and names the contract itself created are not the application's.
 * Triggers, functions, indexes and constraints are left out: application code does not name them.
 *
 * Needs the SQL parser loaded (`loadSqlParser()`); a statement it cannot read is skipped.
 */
export function removedByContract(description: ChangeDescription, ctx: ResolveContext): RemovedStructure[] {
  const stateSchema = ctx.stateSchema ?? 'zero_downtime';
  const steps: readonly Step[] = [...description.contract.steps, ...(description.contract.afterBackfill ?? [])];
  const droppedColumns: RemovedStructure[] = [];
  const tables: RemovedStructure[] = [];
  /** `schema.table.column` names given to a column, and `schema.table` names given to a table, by the contract. */
  const created = new Set<string>();
  const rel = (v: unknown): { schema: string; table: string } => {
    const r = obj(v);
    return { schema: str(r.schemaname) || ctx.defaultSchema, table: str(r.relname) };
  };
  for (const step of steps) {
    for (const statement of step.statements) {
      let parsed;
      try {
        parsed = parseSqlSync(statement.text);
      } catch {
        continue;
      }
      for (const { node } of parsed) {
        if (node.AlterTableStmt) {
          const a = obj(node.AlterTableStmt);
          const t = rel(a.relation);
          for (const c of list(a.cmds)) {
            const cmd = obj(obj(c).AlterTableCmd);
            if (str(cmd.subtype) === 'AT_DropColumn') droppedColumns.push({ ...t, column: str(cmd.name) });
          }
        } else if (node.RenameStmt) {
          const r = obj(node.RenameStmt);
          const t = rel(r.relation);
          if (str(r.renameType) === 'OBJECT_COLUMN') created.add(`${t.schema}.${t.table}.${str(r.newname)}`);
          else if (str(r.renameType) === 'OBJECT_TABLE' || str(r.renameType) === 'OBJECT_VIEW') {
            tables.push(t);
            created.add(`${t.schema}.${str(r.newname)}`);
          }
        } else if (node.DropStmt) {
          const d = obj(node.DropStmt);
          if (!['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW'].includes(str(d.removeType))) continue;
          for (const o of list(d.objects)) {
            const parts = list(obj(obj(o).List).items).map((i) => str(obj(obj(i).String).sval));
            const table = parts.at(-1) ?? '';
            tables.push({ schema: parts.length > 1 ? parts.at(-2)! : ctx.defaultSchema, table });
          }
        }
      }
    }
  }
  const out = new Map<string, RemovedStructure>();
  for (const t of tables) {
    if (t.schema === stateSchema || created.has(`${t.schema}.${t.table}`) || !t.table) continue;
    out.set(`${t.schema}.${t.table}`, { schema: t.schema, table: t.table });
  }
  for (const c of droppedColumns) {
    if (c.schema === stateSchema || created.has(`${c.schema}.${c.table}.${c.column}`) || out.has(`${c.schema}.${c.table}`)) continue;
    out.set(`${c.schema}.${c.table}.${c.column}`, c);
  }
  return [...out.values()];
}

/** What `change`'s contract removes, described from `catalog` (the snapshot stored when its expand ran). */
export function removedByChange(change: Change, catalog: CatalogSnapshot, ctx: ResolveContext): RemovedStructure[] {
  return removedByContract(change.describe(catalog, ctx), ctx);
}

import { dottedName, list, obj, rangeVar, str, typeName, type Json, type ParsedStatement } from '../postgres/sql-ast.js';
import { nodeLocks } from '../postgres/statement-locks.js';

export type LintLevel = 'error' | 'warn' | 'off';

/** What a rule found in one statement: why it is unsafe, and the safe way. */
export interface RuleHit {
  readonly message: string;
  /** The safe alternative; where one of our typed changes does it, the exact change to write. */
  readonly fix: string;
}

export interface LintRule {
  readonly id: string;
  readonly level: Exclude<LintLevel, 'off'>;
  /** The lock or the cost, and what breaks in the running application version. */
  readonly why: string;
  /** The squawk rule (or strong_migrations check) this one answers, for the coverage table. */
  readonly squawk?: string;
  readonly strongMigrations?: string;
}

/** One statement in its migration, as rules see it. */
export interface StatementContext {
  readonly stmt: ParsedStatement;
  readonly inTransaction: boolean;
  /** Every statement of the same migration, in order (migration-level rules look across them). */
  readonly all: readonly ParsedStatement[];
  readonly index: number;
  /**
   * The tables known to be partitioned before this statement, by what the migrations themselves say (no database is
   * asked): earlier migrations of the same lint, in order, then earlier statements of this one. Keyed by
   * partitionKey(name). A table not in it may still be partitioned: partition rules stay quiet about it.
   */
  readonly partitioned: ReadonlyMap<string, PartitionedTable>;
}

/** What the migrations say of one partitioned table. */
export interface PartitionedTable {
  /** Its DEFAULT partition (as written), where a migration created or attached one. */
  readonly defaultPartition: string | null;
}

/** `public.events` and `events` are one table to the partition rules (the schema PostgreSQL resolves by default). */
export const partitionKey = (table: string): string => table.replace(/^public\./, '');

/**
 * Reads what a statement says of partitioned tables into `known`: CREATE TABLE … PARTITION BY makes one; PARTITION OF,
 * ATTACH and DETACH name one as the parent (and a DEFAULT partition); DROP and RENAME of the table forget or move it.
 */
export function learnPartitions(stmt: ParsedStatement, known: Map<string, PartitionedTable>): void {
  const n = stmt.node;
  if (n.CreateStmt) {
    const c = obj(n.CreateStmt);
    if (c.partspec) known.set(partitionKey(rangeVar(c.relation)), known.get(partitionKey(rangeVar(c.relation))) ?? { defaultPartition: null });
    if (c.partbound) {
      const parent = partitionKey(rangeVar(obj(list(c.inhRelations)[0]).RangeVar));
      const was = known.get(parent)?.defaultPartition ?? null;
      known.set(parent, { defaultPartition: obj(c.partbound).is_default ? rangeVar(c.relation) : was });
    }
  }
  if (n.AlterTableStmt && str(obj(n.AlterTableStmt).objtype) === 'OBJECT_TABLE') {
    const parent = partitionKey(alterTable(n));
    for (const c of alterCmds(n)) {
      const pc = obj(obj(c.def).PartitionCmd);
      const child = rangeVar(pc.name);
      const was = known.get(parent)?.defaultPartition ?? null;
      if (str(c.subtype) === 'AT_AttachPartition') known.set(parent, { defaultPartition: obj(pc.bound).is_default ? child : was });
      if (str(c.subtype) === 'AT_DetachPartition') known.set(parent, { defaultPartition: was !== null && partitionKey(was) === partitionKey(child) ? null : was });
    }
  }
  const d = obj(n.DropStmt);
  if (str(d.removeType) === 'OBJECT_TABLE') {
    for (const o of list(d.objects)) {
      const gone = partitionKey(dottedName(o));
      known.delete(gone);
      for (const [t, p] of known) if (p.defaultPartition !== null && partitionKey(p.defaultPartition) === gone) known.set(t, { defaultPartition: null });
    }
  }
  const r = obj(n.RenameStmt);
  if (str(r.renameType) === 'OBJECT_TABLE') {
    const from = partitionKey(rangeVar(r.relation));
    const schema = str(obj(r.relation).schemaname);
    const to = partitionKey(schema ? `${schema}.${str(r.newname)}` : str(r.newname));
    const p = known.get(from);
    if (p) {
      known.delete(from);
      known.set(to, p);
    }
    for (const [t, x] of known) if (x.defaultPartition !== null && partitionKey(x.defaultPartition) === from) known.set(t, { defaultPartition: to });
  }
}

type Check = (c: StatementContext) => RuleHit[];

const q = (s: string) => `'${s.replace(/'/g, "\\'")}'`;
const tableArg = (t: string) => q(t);
const alterCmds = (n: Json) => list(obj(n.AlterTableStmt).cmds).map((c) => obj(obj(c).AlterTableCmd));
const alterTable = (n: Json) => rangeVar(obj(n.AlterTableStmt).relation);
const constraintsOf = (colDef: Json) => list(colDef.constraints).map((c) => obj(obj(c).Constraint));
const VOLATILE = /^(random|gen_random_uuid|uuid_generate_v[14]|clock_timestamp|timeofday|nextval|txid_current)$/i;

/** The functions a default expression calls. */
function calledFunctions(expr: unknown, out: string[] = []): string[] {
  if (Array.isArray(expr)) expr.forEach((e) => calledFunctions(e, out));
  else if (expr && typeof expr === 'object') {
    const fc = obj((expr as Json).FuncCall);
    if (fc.funcname) out.push(list(fc.funcname).map((n) => str(obj(obj(n).String).sval)).pop() ?? '');
    for (const v of Object.values(expr as Json)) calledFunctions(v, out);
  }
  return out;
}

const isDdl = (kind: string) => /^(Alter|Create|Drop|Rename|Index|Comment|Grant|Truncate|Cluster|Vacuum)/.test(kind) && kind !== 'CreateTrigStmt';
const isDml = (kind: string) => kind === 'UpdateStmt' || kind === 'DeleteStmt' || kind === 'InsertStmt';

const CORE_RULES: readonly (LintRule & { readonly check: Check })[] = [
  {
    id: 'adding-required-field',
    level: 'error',
    squawk: 'adding-required-field',
    strongMigrations: 'adding a column with NOT NULL',
    why: 'ADD COLUMN … NOT NULL without a default fails on a table with rows, and the running version, which does not know the column, can no longer insert.',
    check: ({ stmt }) =>
      alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AddColumn')
        .map((c) => obj(obj(c.def).ColumnDef))
        .filter((d) => constraintsOf(d).some((k) => str(k.contype) === 'CONSTR_NOTNULL') && !constraintsOf(d).some((k) => str(k.contype) === 'CONSTR_DEFAULT' || str(k.contype) === 'CONSTR_IDENTITY'))
        .map((d) => ({
          message: `adds ${str(d.colname)} NOT NULL without a default to ${alterTable(stmt.node)}`,
          fix: `addColumn({ table: ${tableArg(alterTable(stmt.node))}, column: { name: ${q(str(d.colname))}, type: ${q(typeName(d.typeName).name)}, nullable: false, default: … } }), or add it nullable and setNotNull({ table: ${tableArg(alterTable(stmt.node))}, column: ${q(str(d.colname))}, default: … }) later`,
        })),
  },
  {
    id: 'adding-field-with-volatile-default',
    level: 'error',
    squawk: 'adding-field-with-default',
    strongMigrations: 'adding a column with a volatile default value',
    why: 'A volatile default (random(), gen_random_uuid(), clock_timestamp(), a sequence) or a stored generated column rewrites the whole table under ACCESS EXCLUSIVE: no reads or writes until it is done. A constant default is free since PostgreSQL 11.',
    check: ({ stmt }) =>
      alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AddColumn')
        .map((c) => obj(obj(c.def).ColumnDef))
        .flatMap((d) => {
          const def = constraintsOf(d).find((k) => str(k.contype) === 'CONSTR_DEFAULT');
          const fns = def ? calledFunctions(def.raw_expr).filter((f) => VOLATILE.test(f)) : [];
          const serial = /^(small|big)?serial[248]?$/.test(typeName(d.typeName).name);
          const stored = constraintsOf(d).some((k) => str(k.contype) === 'CONSTR_GENERATED');
          if (fns.length === 0 && !serial && !stored) return [];
          const what = stored ? 'a stored generated value' : `a volatile default (${serial ? typeName(d.typeName).name : fns.join(', ')})`;
          return [
            {
              message: `adds ${str(d.colname)} to ${alterTable(stmt.node)} with ${what}: the table is rewritten`,
              fix: `addColumn({ table: ${tableArg(alterTable(stmt.node))}, column: { name: ${q(str(d.colname))}, type: …, defaultSql: ${q(fns.length ? `${fns[0]}()` : 'nextval(…)')} } }): the default for new rows only, existing rows backfilled in batches`,
            },
          ];
        }),
  },
  {
    id: 'renaming-column',
    level: 'error',
    squawk: 'renaming-column',
    strongMigrations: 'renaming a column',
    why: 'The running version still reads and writes the old name: every query that names it fails from the moment the rename commits.',
    check: ({ stmt }) => {
      const r = obj(stmt.node.RenameStmt);
      if (str(r.renameType) !== 'OBJECT_COLUMN') return [];
      const t = rangeVar(r.relation);
      return [{ message: `renames ${t}.${str(r.subname)} to ${str(r.newname)}`, fix: `renameColumn({ table: ${tableArg(t)}, from: ${q(str(r.subname))}, to: ${q(str(r.newname))} })` }];
    },
  },
  {
    id: 'renaming-table',
    level: 'error',
    squawk: 'renaming-table',
    strongMigrations: 'renaming a table',
    why: 'The running version still uses the old table name: its queries fail from the moment the rename commits.',
    check: ({ stmt }) => {
      const r = obj(stmt.node.RenameStmt);
      if (str(r.renameType) !== 'OBJECT_TABLE') return [];
      const t = rangeVar(r.relation);
      return [{ message: `renames the table ${t} to ${str(r.newname)}`, fix: `renameTable({ from: ${tableArg(t)}, to: ${q(str(r.newname))} })` }];
    },
  },
  {
    id: 'changing-column-type',
    level: 'error',
    squawk: 'changing-column-type',
    strongMigrations: 'changing the type of a column',
    why: 'ALTER COLUMN … TYPE holds ACCESS EXCLUSIVE and, for most type changes, rewrites the table and its indexes: no reads or writes until it is done.',
    check: ({ stmt }) =>
      alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AlterColumnType')
        .map((c) => {
          const t = typeName(obj(obj(c.def).ColumnDef).typeName);
          const type = t.mods.length ? `${t.name}(${t.mods.join(',')})` : t.name;
          return { message: `changes the type of ${alterTable(stmt.node)}.${str(c.name)} to ${type}`, fix: `changeColumnType({ table: ${tableArg(alterTable(stmt.node))}, column: ${q(str(c.name))}, type: ${q(type)} })` };
        }),
  },
  {
    id: 'dropping-column',
    level: 'error',
    squawk: 'ban-drop-column',
    strongMigrations: 'removing a column',
    why: 'The running version still reads the column (and ORMs select every column): its queries fail once the drop commits, and the data is gone.',
    check: ({ stmt }) =>
      alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_DropColumn')
        .map((c) => ({ message: `drops ${alterTable(stmt.node)}.${str(c.name)}`, fix: `dropColumn({ table: ${tableArg(alterTable(stmt.node))}, column: ${q(str(c.name))} }): dropped a release later, archived, reversible` })),
  },
  {
    id: 'dropping-table',
    level: 'error',
    squawk: 'ban-drop-table',
    strongMigrations: 'removing a table',
    why: 'The running version may still read the table, and its rows are gone for good.',
    check: ({ stmt }) => {
      const d = obj(stmt.node.DropStmt);
      if (str(d.removeType) !== 'OBJECT_TABLE') return [];
      return list(d.objects).map((o) => ({ message: `drops the table ${dottedName(o)}`, fix: `dropTable({ table: ${tableArg(dottedName(o))} }): moved aside until purge, reversible` }));
    },
  },
  {
    id: 'require-concurrent-index-creation',
    level: 'error',
    squawk: 'require-concurrent-index-creation',
    strongMigrations: 'adding an index non-concurrently',
    why: 'CREATE INDEX without CONCURRENTLY holds SHARE on the table for the whole build: every write waits.',
    check: ({ stmt, partitioned }) => {
      const i = obj(stmt.node.IndexStmt);
      if (!stmt.node.IndexStmt || i.concurrent) return [];
      const t = rangeVar(i.relation);
      // ON ONLY a partitioned table builds nothing (an INVALID parent index, a moment of SHARE on the parent alone):
      // the first step of the route CONCURRENTLY cannot take there. On a plain table ONLY changes nothing: still flagged.
      if (!obj(i.relation).inh && partitioned.has(partitionKey(t))) return [];
      const cols = list(i.indexParams).map((p) => str(obj(obj(p).IndexElem).name)).filter(Boolean);
      return [{ message: `builds an index on ${t} without CONCURRENTLY`, fix: `addIndex({ table: ${tableArg(t)}, columns: [${cols.map(q).join(', ')}]${i.unique ? ', unique: true' : ''} })` }];
    },
  },
  {
    id: 'require-concurrent-index-deletion',
    level: 'error',
    squawk: 'require-concurrent-index-deletion',
    why: 'DROP INDEX without CONCURRENTLY holds ACCESS EXCLUSIVE on the table: reads and writes wait, behind any long query.',
    check: ({ stmt }) => {
      const d = obj(stmt.node.DropStmt);
      if (str(d.removeType) !== 'OBJECT_INDEX' || d.concurrent) return [];
      return list(d.objects).map((o) => ({ message: `drops the index ${dottedName(o)} without CONCURRENTLY`, fix: `dropIndex({ table: …, name: ${q(dottedName(o))} })` }));
    },
  },
  {
    id: 'concurrently-in-transaction',
    level: 'error',
    squawk: 'ban-concurrent-index-creation-in-transaction',
    why: 'CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction block: the migration fails (Knex runs each migration in one unless it exports config = { transaction: false }).',
    check: ({ stmt, inTransaction }) => {
      const concurrent = (stmt.node.IndexStmt && obj(stmt.node.IndexStmt).concurrent) || (stmt.node.DropStmt && obj(stmt.node.DropStmt).concurrent);
      if (!concurrent || !inTransaction) return [];
      return [{ message: 'runs CONCURRENTLY inside a transaction block', fix: 'addIndex / dropIndex (run outside a transaction), or export config = { transaction: false } from this Knex migration' }];
    },
  },
  {
    id: 'adding-foreign-key-constraint',
    level: 'error',
    squawk: 'adding-foreign-key-constraint',
    strongMigrations: 'adding a foreign key',
    why: 'A foreign key without NOT VALID is checked against every row while SHARE ROW EXCLUSIVE blocks writes to both tables.',
    check: ({ stmt }) =>
      alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AddConstraint')
        .map((c) => obj(obj(c.def).Constraint))
        .filter((k) => str(k.contype) === 'CONSTR_FOREIGN' && !k.skip_validation)
        .map((k) => {
          const cols = list(k.fk_attrs).map((a) => q(str(obj(obj(a).String).sval)));
          const refCols = list(k.pk_attrs).map((a) => q(str(obj(obj(a).String).sval)));
          return {
            message: `adds a foreign key on ${alterTable(stmt.node)} without NOT VALID`,
            fix: `addForeignKey({ table: ${tableArg(alterTable(stmt.node))}, columns: [${cols.join(', ')}], references: { table: ${tableArg(rangeVar(k.pktable))}, columns: [${refCols.join(', ')}] } }): NOT VALID, then VALIDATE in its own transaction`,
          };
        }),
  },
  {
    id: 'constraint-missing-not-valid',
    level: 'error',
    squawk: 'constraint-missing-not-valid',
    strongMigrations: 'adding a check constraint',
    why: 'ADD CONSTRAINT … CHECK without NOT VALID scans the whole table under ACCESS EXCLUSIVE: no reads or writes until it is done.',
    check: ({ stmt }) =>
      alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AddConstraint')
        .map((c) => obj(obj(c.def).Constraint))
        .filter((k) => str(k.contype) === 'CONSTR_CHECK' && !k.skip_validation)
        .map((k) => ({ message: `adds the CHECK ${str(k.conname) || '(unnamed)'} on ${alterTable(stmt.node)} without NOT VALID`, fix: `addCheck({ table: ${tableArg(alterTable(stmt.node))}, name: ${q(str(k.conname) || '…')}, check: '…' })` })),
  },
  {
    id: 'disallowed-unique-constraint',
    level: 'error',
    squawk: 'disallowed-unique-constraint',
    strongMigrations: 'adding a unique constraint',
    why: 'ADD UNIQUE builds its index under ACCESS EXCLUSIVE: no reads or writes for the whole build.',
    check: ({ stmt }) =>
      alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AddConstraint')
        .map((c) => obj(obj(c.def).Constraint))
        .filter((k) => str(k.contype) === 'CONSTR_UNIQUE' && !k.indexname)
        .map((k) => {
          const cols = list(k.keys).map((a) => q(str(obj(obj(a).String).sval)));
          return { message: `adds a unique constraint on ${alterTable(stmt.node)} that builds its index under ACCESS EXCLUSIVE`, fix: `addUnique({ table: ${tableArg(alterTable(stmt.node))}, columns: [${cols.join(', ')}] }): the index built CONCURRENTLY, then ADD CONSTRAINT … USING INDEX` };
        }),
  },
  {
    id: 'setting-not-null',
    level: 'error',
    squawk: 'adding-not-nullable-field',
    strongMigrations: 'setting NOT NULL on an existing column',
    why: 'SET NOT NULL scans the whole table under ACCESS EXCLUSIVE, unless a validated CHECK (col IS NOT NULL) already proves it.',
    check: ({ stmt, all, index }) => {
      // A CHECK validated earlier in the migration on the same table may prove it (the server sharpens this).
      const validated = all.slice(0, index).some((s) => s.kind === 'AlterTableStmt' && alterTable(s.node) === alterTable(stmt.node) && alterCmds(s.node).some((x) => str(x.subtype) === 'AT_ValidateConstraint'));
      if (validated) return [];
      return alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_SetNotNull')
        .map((c) => ({ message: `sets ${alterTable(stmt.node)}.${str(c.name)} NOT NULL with no validated CHECK proving it first`, fix: `setNotNull({ table: ${tableArg(alterTable(stmt.node))}, column: ${q(str(c.name))} })` }));
    },
  },
  {
    id: 'prefer-bigint-over-int',
    level: 'warn',
    squawk: 'prefer-bigint-over-int',
    strongMigrations: 'short primary key types',
    why: 'An integer runs out at 2 147 483 647 (a key after that many rows), and widening it later rewrites the table and every table that references it.',
    check: ({ stmt }) => {
      const cols = stmt.node.CreateStmt ? list(obj(stmt.node.CreateStmt).tableElts).map((e) => obj(obj(e).ColumnDef)) : alterCmds(stmt.node).filter((c) => str(c.subtype) === 'AT_AddColumn').map((c) => obj(obj(c.def).ColumnDef));
      return cols
        .filter((d) => /^(int4|serial|serial4|integer|int)$/.test(typeName(d.typeName).name))
        .map((d) => ({ message: `${str(d.colname)} is ${typeName(d.typeName).name}${constraintsOf(d).some((k) => str(k.contype) === 'CONSTR_PRIMARY') ? ', a primary key' : ''}`, fix: 'bigint (a key: bigint GENERATED ALWAYS AS IDENTITY; Knex: t.bigIncrements(), t.bigInteger())' }));
    },
  },
  {
    id: 'ban-char-field',
    level: 'warn',
    squawk: 'ban-char-field',
    why: 'char(n) pads with spaces and compares surprisingly; text or varchar is what the application means.',
    check: ({ stmt }) => {
      const cols = stmt.node.CreateStmt ? list(obj(stmt.node.CreateStmt).tableElts).map((e) => obj(obj(e).ColumnDef)) : alterCmds(stmt.node).filter((c) => str(c.subtype) === 'AT_AddColumn').map((c) => obj(obj(c.def).ColumnDef));
      return cols.filter((d) => typeName(d.typeName).name === 'bpchar').map((d) => ({ message: `${str(d.colname)} is char(n)`, fix: 'text (with a CHECK on its length if it matters)' }));
    },
  },
  {
    id: 'prefer-timestamptz',
    level: 'warn',
    squawk: 'prefer-timestamptz',
    why: 'timestamp without time zone stores wall-clock time with no zone: values shift when the server or the session zone differs.',
    check: ({ stmt }) => {
      const cols = stmt.node.CreateStmt ? list(obj(stmt.node.CreateStmt).tableElts).map((e) => obj(obj(e).ColumnDef)) : alterCmds(stmt.node).filter((c) => str(c.subtype) === 'AT_AddColumn' || str(c.subtype) === 'AT_AlterColumnType').map((c) => obj(obj(c.def).ColumnDef));
      return cols.filter((d) => typeName(d.typeName).name === 'timestamp').map((d) => ({ message: `${str(d.colname) || 'a column'} is timestamp without time zone`, fix: 'timestamptz (Knex: t.timestamp(name, { useTz: true }), its default)' }));
    },
  },
  {
    id: 'require-timeout-settings',
    level: 'warn',
    squawk: 'require-timeout-settings',
    strongMigrations: 'lock timeout',
    why: 'A statement waiting for ACCESS EXCLUSIVE queues every later query on the table behind it: without lock_timeout it waits as long as the longest running query, and without statement_timeout a slow one holds the lock as long as it runs.',
    check: ({ stmt, all, index }) => {
      if (!nodeLocks(stmt.node).some((l) => l.mode === 'AccessExclusiveLock')) return [];
      // Once per migration: at its first statement that takes ACCESS EXCLUSIVE, naming the settings not made before it.
      const firstStrong = all.findIndex((s) => nodeLocks(s.node).some((l) => l.mode === 'AccessExclusiveLock'));
      if (firstStrong !== index) return [];
      const set = (name: string) => all.slice(0, index).some((s) => s.kind === 'VariableSetStmt' && str(obj(s.node.VariableSetStmt).name) === name);
      const missing = ['lock_timeout', 'statement_timeout'].filter((n) => !set(n));
      if (missing.length === 0) return [];
      return [{ message: `takes ACCESS EXCLUSIVE with no ${missing.join(' or ')} set before it`, fix: `SET ${missing.map((m) => `${m} = '${m === 'lock_timeout' ? '2s' : '30s'}'`).join('; SET ')} first (\`umzug up\` sets lock.timeout and lock.statementTimeout for plain migrations itself; this matters where Knex or psql runs the file)` }];
    },
  },
  {
    id: 'vacuum-full-or-cluster',
    level: 'error',
    strongMigrations: 'VACUUM FULL / CLUSTER (rewrites)',
    why: 'VACUUM FULL and CLUSTER rewrite the table under ACCESS EXCLUSIVE: no reads or writes for the whole rewrite.',
    check: ({ stmt }) => {
      const full = stmt.node.VacuumStmt && list(obj(stmt.node.VacuumStmt).options).some((o) => str(obj(obj(o).DefElem).defname) === 'full');
      if (!full && !stmt.node.ClusterStmt) return [];
      return [{ message: `${full ? 'VACUUM FULL' : 'CLUSTER'} rewrites the table under ACCESS EXCLUSIVE`, fix: 'leave it to autovacuum; to reclaim space online use pg_repack' }];
    },
  },
  {
    id: 'mixing-ddl-and-dml',
    level: 'warn',
    strongMigrations: 'backfilling data in a migration',
    why: 'A transaction that changes the schema and then rewrites rows keeps its DDL lock (often ACCESS EXCLUSIVE) until the data change commits: the table is blocked for the whole update.',
    check: ({ stmt, all, index, inTransaction }) => {
      if (!inTransaction || !isDml(stmt.kind)) return [];
      const ddlBefore = all.slice(0, index).some((s) => isDdl(s.kind) && nodeLocks(s.node).some((l) => l.mode !== 'ShareUpdateExclusiveLock'));
      return ddlBefore ? [{ message: 'updates rows in the same transaction as a schema change', fix: 'split it: the schema change alone, then the data in batches (a typed change backfills: deriveColumn, addColumn with defaultSql)' }] : [];
    },
  },
  {
    id: 'unbatched-update',
    level: 'warn',
    strongMigrations: 'backfilling data without batches',
    why: 'One UPDATE or DELETE over a table locks every row it touches until it commits: the application\'s writes to those rows wait, and replicas lag.',
    check: ({ stmt }) => {
      const u = obj(stmt.node.UpdateStmt ?? stmt.node.DeleteStmt);
      if (!stmt.node.UpdateStmt && !stmt.node.DeleteStmt) return [];
      if (u.whereClause) return [];
      return [{ message: `${stmt.node.UpdateStmt ? 'updates' : 'deletes'} every row of ${rangeVar(u.relation)} in one statement`, fix: 'a typed change backfills in keyset batches (deriveColumn, addColumn with defaultSql, setNotNull with default); or batch it yourself by key ranges' }];
    },
  },
  {
    id: 'ban-drop-database',
    level: 'error',
    squawk: 'ban-drop-database',
    why: 'DROP DATABASE in a migration removes everything.',
    check: ({ stmt }) => (stmt.node.DropdbStmt ? [{ message: `drops the database ${str(obj(stmt.node.DropdbStmt).dbname)}`, fix: 'not in a migration' }] : []),
  },
];


const columnDefs = (n: Json) =>
  n.CreateStmt ? list(obj(n.CreateStmt).tableElts).map((e) => obj(obj(e).ColumnDef)).filter((d) => d.colname) : alterCmds(n).filter((c) => str(c.subtype) === 'AT_AddColumn').map((c) => obj(obj(c.def).ColumnDef));
const txKind = (s: ParsedStatement) => str(obj(s.node.TransactionStmt).kind);

/** squawk's other migration rules, with the same ids. */
const MORE_RULES: readonly (LintRule & { readonly check: Check })[] = [
  {
    id: 'adding-primary-key-constraint',
    level: 'error',
    squawk: 'adding-serial-primary-key-field',
    why: 'ADD PRIMARY KEY builds its index under ACCESS EXCLUSIVE (and may SET NOT NULL its columns, a scan): no reads or writes for the whole build.',
    check: ({ stmt }) =>
      alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AddConstraint')
        .map((c) => obj(obj(c.def).Constraint))
        .filter((k) => str(k.contype) === 'CONSTR_PRIMARY' && !k.indexname)
        .map(() => ({ message: `adds a primary key on ${alterTable(stmt.node)} that builds its index under ACCESS EXCLUSIVE`, fix: 'CREATE UNIQUE INDEX CONCURRENTLY, then ALTER TABLE … ADD CONSTRAINT … PRIMARY KEY USING INDEX (the columns NOT NULL first: setNotNull)' })),
  },
  {
    id: 'ban-drop-not-null',
    level: 'error',
    squawk: 'ban-drop-not-null',
    why: 'DROP NOT NULL lets NULLs in that the running version does not expect to read.',
    check: ({ stmt }) => alterCmds(stmt.node).filter((c) => str(c.subtype) === 'AT_DropNotNull').map((c) => ({ message: `drops NOT NULL from ${alterTable(stmt.node)}.${str(c.name)}`, fix: 'ship the readers that handle NULL first, then drop it in a later release' })),
  },
  {
    id: 'ban-alter-domain-with-add-constraint',
    level: 'error',
    squawk: 'ban-alter-domain-with-add-constraint',
    why: 'A constraint added to a domain is checked against every column of that type, in every table, under their locks.',
    check: ({ stmt }) => (str(obj(stmt.node.AlterDomainStmt).subtype) === 'C' ? [{ message: 'adds a constraint to a domain', fix: 'a NOT VALID CHECK on each table that uses the domain (addCheck)' }] : []),
  },
  {
    id: 'ban-create-domain-with-constraint',
    level: 'error',
    squawk: 'ban-create-domain-with-constraint',
    why: 'A domain\'s constraint cannot be changed later without checking every column of its type at once.',
    check: ({ stmt }) => (list(obj(stmt.node.CreateDomainStmt).constraints).some((c) => str(obj(obj(c).Constraint).contype) === 'CONSTR_CHECK') ? [{ message: 'creates a domain with a CHECK', fix: 'a plain type, with CHECKs on the tables' }] : []),
  },
  {
    id: 'ban-truncate-cascade',
    level: 'error',
    squawk: 'ban-truncate-cascade',
    why: 'TRUNCATE … CASCADE empties every table that references these, and theirs, recursively.',
    check: ({ stmt }) => (str(obj(stmt.node.TruncateStmt).behavior) === 'DROP_CASCADE' ? [{ message: 'truncates with CASCADE', fix: 'name exactly the tables to empty, without CASCADE' }] : []),
  },
  {
    id: 'require-concurrent-reindex',
    level: 'error',
    squawk: 'require-concurrent-reindex',
    why: 'REINDEX without CONCURRENTLY locks out writes (and reads that use the index) for the whole rebuild.',
    check: ({ stmt }) => {
      const r = obj(stmt.node.ReindexStmt);
      if (!stmt.node.ReindexStmt || list(r.params).some((p) => str(obj(obj(p).DefElem).defname) === 'concurrently')) return [];
      return [{ message: `reindexes ${rangeVar(r.relation) || str(r.name)} without CONCURRENTLY`, fix: 'REINDEX … CONCURRENTLY (outside a transaction)' }];
    },
  },
  {
    id: 'require-concurrent-partition-detach',
    level: 'error',
    squawk: 'require-concurrent-partition-detach',
    why: 'DETACH PARTITION without CONCURRENTLY holds ACCESS EXCLUSIVE on the partitioned table.',
    check: ({ stmt }) =>
      alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_DetachPartition' && !obj(obj(c.def).PartitionCmd).concurrent)
        .map(() => ({ message: `detaches a partition of ${alterTable(stmt.node)} without CONCURRENTLY`, fix: 'ALTER TABLE … DETACH PARTITION … CONCURRENTLY (PostgreSQL 14+, outside a transaction)' })),
  },
  {
    id: 'ban-uncommitted-transaction',
    level: 'error',
    squawk: 'ban-uncommitted-transaction',
    why: 'A BEGIN with no COMMIT leaves the migration\'s transaction open: its locks are held until the session ends.',
    check: ({ stmt, all, index }) => {
      if (txKind(stmt) !== 'TRANS_STMT_BEGIN' && txKind(stmt) !== 'TRANS_STMT_START') return [];
      const closed = all.slice(index + 1).some((s) => ['TRANS_STMT_COMMIT', 'TRANS_STMT_ROLLBACK'].includes(txKind(s)));
      return closed ? [] : [{ message: 'opens a transaction it never commits', fix: 'end it with COMMIT' }];
    },
  },
  {
    id: 'transaction-nesting',
    level: 'warn',
    squawk: 'transaction-nesting',
    why: 'BEGIN inside a transaction does not nest: PostgreSQL warns and goes on, and the inner COMMIT commits everything so far.',
    check: ({ stmt, inTransaction }) => ((txKind(stmt) === 'TRANS_STMT_BEGIN' || txKind(stmt) === 'TRANS_STMT_START') && inTransaction ? [{ message: 'opens a transaction inside a transaction', fix: 'one transaction; SAVEPOINT for an inner unit' }] : []),
  },
  {
    id: 'prefer-bigint-over-smallint',
    level: 'warn',
    squawk: 'prefer-bigint-over-smallint',
    why: 'smallint runs out at 32 767, and widening it later rewrites the table.',
    check: ({ stmt }) => columnDefs(stmt.node).filter((d) => /^(int2|smallserial|serial2|smallint)$/.test(typeName(d.typeName).name)).map((d) => ({ message: `${str(d.colname)} is smallint`, fix: 'bigint (or integer, if its range is known for good)' })),
  },
  {
    id: 'prefer-identity',
    level: 'warn',
    squawk: 'prefer-identity',
    why: 'serial creates a sequence owned apart from the column: permissions, dumps and copies of the table need it handled separately.',
    check: ({ stmt }) => columnDefs(stmt.node).filter((d) => /^(small|big)?serial[248]?$/.test(typeName(d.typeName).name)).map((d) => ({ message: `${str(d.colname)} is ${typeName(d.typeName).name}`, fix: 'bigint GENERATED ALWAYS AS IDENTITY' })),
  },
  {
    id: 'prefer-text-field',
    level: 'warn',
    squawk: 'prefer-text-field',
    why: 'Raising a varchar(n) limit later is an ALTER COLUMN … TYPE under ACCESS EXCLUSIVE; text with a CHECK on its length changes with a NOT VALID constraint.',
    check: ({ stmt }) => columnDefs(stmt.node).filter((d) => typeName(d.typeName).name === 'varchar' && typeName(d.typeName).mods.length > 0).map((d) => ({ message: `${str(d.colname)} is varchar(${typeName(d.typeName).mods.join(',')})`, fix: 'text, with CHECK (length(…) <= n) if the limit matters (Knex: t.text())' })),
  },
  {
    id: 'prefer-jsonb',
    level: 'warn',
    strongMigrations: 'adding a json column',
    why: 'json has no equality operator: SELECT DISTINCT, UNION and GROUP BY over the table fail once it has a json column; jsonb has one.',
    check: ({ stmt }) => columnDefs(stmt.node).filter((d) => typeName(d.typeName).name === 'json').map((d) => ({ message: `${str(d.colname)} is json`, fix: 'jsonb (Knex: t.jsonb())' })),
  },
  {
    id: 'prefer-robust-stmts',
    level: 'warn',
    squawk: 'prefer-robust-stmts',
    why: 'Outside a transaction a failed migration stops half-way; a CREATE INDEX CONCURRENTLY that failed leaves an invalid index, and the rerun fails on its name.',
    check: ({ stmt, inTransaction }) => {
      const i = obj(stmt.node.IndexStmt);
      if (inTransaction || !i.concurrent || i.if_not_exists) return [];
      return [{ message: `builds ${str(i.idxname) || 'an index'} CONCURRENTLY without IF NOT EXISTS`, fix: 'CREATE INDEX CONCURRENTLY IF NOT EXISTS, after DROP INDEX CONCURRENTLY IF EXISTS of a failed one (addIndex does both)' }];
    },
  },
];

/** A statement before `index` in the migration created `table`: it is new, no one reads or writes it yet. */
const createdBefore = (all: readonly ParsedStatement[], index: number, table: string) =>
  all.slice(0, index).some((s) => s.node.CreateStmt && partitionKey(rangeVar(obj(s.node.CreateStmt).relation)) === partitionKey(table));

/**
 * A CHECK on `table` that is validated before `index`: added without NOT VALID, or NOT VALID and then VALIDATEd.
 * Whether it implies the partition bound is not read (PostgreSQL decides that); that it is there shows the route taken.
 */
function validatedCheckBefore(all: readonly ParsedStatement[], index: number, table: string): boolean {
  const on = all.slice(0, index).filter((s) => s.node.AlterTableStmt && partitionKey(alterTable(s.node)) === partitionKey(table));
  const cmds = on.flatMap((s) => alterCmds(s.node));
  const validated = new Set(cmds.filter((c) => str(c.subtype) === 'AT_ValidateConstraint').map((c) => str(c.name)));
  return cmds
    .filter((c) => str(c.subtype) === 'AT_AddConstraint')
    .map((c) => obj(obj(c.def).Constraint))
    .some((k) => str(k.contype) === 'CONSTR_CHECK' && (!k.skip_validation || validated.has(str(k.conname))));
}

/** `FOR VALUES …` or `DEFAULT` of a CREATE TABLE … PARTITION OF, as written (up to PARTITION BY, WITH, TABLESPACE). */
function boundText(text: string, isDefault: boolean): string {
  // A DEFAULT partition's bound is the word alone (a column's DEFAULT before it must not be taken for it).
  if (isDefault) return 'DEFAULT';
  const m = /\b(FOR\s+VALUES\b[\s\S]*?)\s*(?:\bPARTITION\s+BY\b[\s\S]*|\bUSING\b[\s\S]*|\bWITH\b[\s\S]*|\bTABLESPACE\b[\s\S]*)?;?\s*$/i.exec(text);
  return m?.[1]?.replace(/\s+/g, ' ') ?? 'FOR VALUES …';
}

const indexColumns = (i: Json) => list(i.indexParams).map((p) => str(obj(obj(p).IndexElem).name)).filter(Boolean);

/**
 * Partitioned tables (measured on PostgreSQL 15 with pg_locks). A table is known to be partitioned only from what the
 * migrations linted say (StatementContext.partitioned), so these rules can miss one but not invent one.
 */
const PARTITION_RULES: readonly (LintRule & { readonly check: Check })[] = [
  {
    id: 'creating-partition',
    level: 'error',
    why: 'CREATE TABLE … PARTITION OF takes ACCESS EXCLUSIVE on the partitioned table (and on its DEFAULT partition, which it scans for rows of the new range): every query on the table waits, behind any long query, for the whole statement.',
    check: ({ stmt, partitioned }) => {
      const c = obj(stmt.node.CreateStmt);
      if (!c.partbound) return [];
      const parent = rangeVar(obj(list(c.inhRelations)[0]).RangeVar);
      const child = rangeVar(c.relation);
      const def = obj(c.partbound).is_default ? null : (partitioned.get(partitionKey(parent))?.defaultPartition ?? null);
      const scan = def ? `, and scans its DEFAULT partition ${def} under ACCESS EXCLUSIVE` : '';
      return [
        {
          message: `creates ${child} as a partition of ${parent}: ACCESS EXCLUSIVE on ${parent}${scan}`,
          fix:
            `CREATE TABLE ${child} (LIKE ${parent} INCLUDING ALL); then ALTER TABLE ${parent} ATTACH PARTITION ${child} ${boundText(stmt.text, !!obj(c.partbound).is_default)} (SHARE UPDATE EXCLUSIVE on ${parent}: reads and writes go on; PostgreSQL 12+)` +
            (def ? `, with a validated CHECK on ${def} that excludes the new range first, so that it is not scanned (attaching-partition-without-check)` : ''),
        },
      ];
    },
  },
  {
    id: 'attaching-partition-without-check',
    level: 'error',
    why: 'ATTACH PARTITION holds ACCESS EXCLUSIVE on the table it attaches and on the DEFAULT partition while it scans them to prove the bound (SHARE UPDATE EXCLUSIVE on the partitioned table): queries on either wait for the scan, unless a validated CHECK already proves it.',
    check: ({ stmt, all, index, partitioned }) => {
      if (str(obj(stmt.node.AlterTableStmt).objtype) !== 'OBJECT_TABLE') return [];
      const parent = alterTable(stmt.node);
      return alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AttachPartition')
        .flatMap((c) => {
          const pc = obj(obj(c.def).PartitionCmd);
          const child = rangeVar(pc.name);
          const def = obj(pc.bound).is_default ? null : (partitioned.get(partitionKey(parent))?.defaultPartition ?? null);
          // A table this migration created is read by no one: its scan under ACCESS EXCLUSIVE stops nothing.
          const scanned = [child, ...(def && partitionKey(def) !== partitionKey(child) ? [def] : [])].filter((t) => !createdBefore(all, index, t) && !validatedCheckBefore(all, index, t));
          if (scanned.length === 0) return [];
          const bound = (t: string) => `ALTER TABLE ${t} ADD CONSTRAINT ${t.replace(/^.*\./, '')}_bound CHECK (${t === child ? 'the bound as an expression, key columns IS NOT NULL included for a range' : "NOT the new partition's bound"}) NOT VALID; ALTER TABLE ${t} VALIDATE CONSTRAINT ${t.replace(/^.*\./, '')}_bound`;
          return [
            {
              message: `attaches ${child} to ${parent}, scanning ${scanned.join(' and ')} under ACCESS EXCLUSIVE: no validated CHECK on ${scanned.length > 1 ? 'them' : 'it'} earlier in this migration proves the bound`,
              fix: `${scanned.map(bound).join('; ')} (a scan under SHARE UPDATE EXCLUSIVE: reads and writes go on); then the ATTACH, which finds the bound proven and scans nothing; then drop the CHECK${scanned.length > 1 ? 's' : ''}`,
            },
          ];
        });
    },
  },
  {
    id: 'refused-on-partitioned-table',
    level: 'error',
    why: 'PostgreSQL refuses CREATE INDEX CONCURRENTLY ("cannot create index on partitioned table … concurrently") and ADD CONSTRAINT … USING INDEX ("not supported on partitioned tables") on a partitioned table: the migration fails at that statement.',
    check: ({ stmt, partitioned }) => {
      const i = obj(stmt.node.IndexStmt);
      if (stmt.node.IndexStmt && i.concurrent && partitioned.has(partitionKey(rangeVar(i.relation)))) {
        const t = rangeVar(i.relation);
        return [
          {
            message: `builds an index CONCURRENTLY on the partitioned table ${t}${obj(i.relation).inh ? '' : ' (ON ONLY too)'}`,
            fix: `addIndex({ table: ${tableArg(t)}, columns: [${indexColumns(i).map(q).join(', ')}]${i.unique ? ', unique: true' : ''} }): CREATE INDEX … ON ONLY ${t}, each partition's index CONCURRENTLY, then ALTER INDEX … ATTACH PARTITION each (by hand: the same three steps)`,
          },
        ];
      }
      if (!partitioned.has(partitionKey(alterTable(stmt.node)))) return [];
      return alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AddConstraint')
        .map((c) => obj(obj(c.def).Constraint))
        .filter((k) => (str(k.contype) === 'CONSTR_UNIQUE' || str(k.contype) === 'CONSTR_PRIMARY') && k.indexname)
        .map((k) => ({
          message: `adds ${str(k.contype) === 'CONSTR_PRIMARY' ? 'a primary key' : 'a unique constraint'} USING INDEX ${str(k.indexname)} on the partitioned table ${alterTable(stmt.node)}`,
          fix:
            str(k.contype) === 'CONSTR_PRIMARY'
              ? `on each partition: CREATE UNIQUE INDEX CONCURRENTLY and ADD CONSTRAINT … PRIMARY KEY USING INDEX; then ALTER TABLE ${alterTable(stmt.node)} ADD PRIMARY KEY (…), which adopts them and builds nothing`
              : `addUnique({ table: ${tableArg(alterTable(stmt.node))}, columns: […] }): each partition's constraint USING INDEX, then ADD CONSTRAINT … UNIQUE (…) on the table, which adopts them and builds nothing`,
        }));
    },
  },
  {
    id: 'building-index-on-partitioned-table',
    level: 'error',
    why: 'CREATE INDEX on a partitioned table builds the index on every partition in one statement, holding SHARE on the table and every partition until the last is built: no writes to any of them. CONCURRENTLY is refused there.',
    check: ({ stmt, partitioned }) => {
      const i = obj(stmt.node.IndexStmt);
      const t = rangeVar(i.relation);
      if (!stmt.node.IndexStmt || i.concurrent || !obj(i.relation).inh || !partitioned.has(partitionKey(t))) return [];
      return [
        {
          message: `builds ${str(i.idxname) || 'an index'} on every partition of ${t} at once, under SHARE on each`,
          fix: `addIndex({ table: ${tableArg(t)}, columns: [${indexColumns(i).map(q).join(', ')}]${i.unique ? ', unique: true' : ''} }): CREATE INDEX … ON ONLY ${t}, each partition's index CONCURRENTLY, then ALTER INDEX … ATTACH PARTITION each (adding CONCURRENTLY here is refused)`,
        },
      ];
    },
  },
  {
    id: 'adding-unique-on-partitioned-table',
    level: 'error',
    why: 'ADD UNIQUE / PRIMARY KEY on a partitioned table builds an index on every partition in one statement: ACCESS EXCLUSIVE on the table (no reads or writes through it) and SHARE on every partition (no writes; ACCESS EXCLUSIVE for a primary key) until the last is built. The plain-table route, ADD CONSTRAINT … USING INDEX, is refused there.',
    check: ({ stmt, partitioned }) => {
      const t = alterTable(stmt.node);
      if (!partitioned.has(partitionKey(t))) return [];
      return alterCmds(stmt.node)
        .filter((c) => str(c.subtype) === 'AT_AddConstraint')
        .map((c) => obj(obj(c.def).Constraint))
        .filter((k) => (str(k.contype) === 'CONSTR_UNIQUE' || str(k.contype) === 'CONSTR_PRIMARY') && !k.indexname)
        .map((k) => {
          const cols = list(k.keys).map((a) => q(str(obj(obj(a).String).sval)));
          const primary = str(k.contype) === 'CONSTR_PRIMARY';
          return {
            message: `adds ${primary ? 'a primary key' : 'a unique constraint'} on the partitioned table ${t}: an index built on every partition under lock`,
            fix: primary
              ? `on each partition: CREATE UNIQUE INDEX CONCURRENTLY, a validated CHECK (col IS NOT NULL) for each key column, ADD CONSTRAINT … PRIMARY KEY USING INDEX; then ALTER TABLE ${t} ADD PRIMARY KEY (${cols.map((c) => c.slice(1, -1)).join(', ')}), which adopts them and builds nothing (a moment of ACCESS EXCLUSIVE on the table and its partitions; the linter cannot see that every partition has its key, so allow that statement with a comment)`
              : `addUnique({ table: ${tableArg(t)}, columns: [${cols.join(', ')}] }): each partition's unique index CONCURRENTLY and its constraint USING INDEX, then ADD CONSTRAINT … UNIQUE (…) on the table, which adopts them and builds nothing`,
          };
        });
    },
  },
];

/** Every rule, in the order findings are listed. */
export const RULES: readonly (LintRule & { readonly check: Check })[] = [...CORE_RULES, ...MORE_RULES, ...PARTITION_RULES];

export const RULE_IDS: readonly string[] = RULES.map((r) => r.id);

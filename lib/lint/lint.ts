import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { list, loadSqlParser, obj, parseSqlSync, rangeVar, type ParsedStatement } from '../postgres/sql-ast.js';
import { nodeLocks } from '../postgres/statement-locks.js';
import type { CapturedStatement } from './capture.js';
import { learnPartitions, RULES, type LintLevel, type PartitionedTable } from './rules.js';

export interface LintFinding {
  readonly rule: string;
  readonly level: 'error' | 'warn';
  readonly file: string;
  readonly line: number;
  /** The statement, as sent (one line, cut at 200 characters). */
  readonly statement: string;
  readonly message: string;
  readonly why: string;
  readonly fix: string;
  /** Accepted in the migration by an allow comment: its reason. An allowed finding fails nothing. */
  readonly allowed?: string;
  /** The table the statement locks or writes, as written. */
  readonly table?: string;
  /** What the server said of that table (its size; a CHECK that already proves NOT NULL), where it was asked. */
  readonly server?: string;
}

/** Rules about the schema's design (types), which hold for a new table as much as an old one. */
const DESIGN_RULES = new Set(['prefer-bigint-over-int', 'prefer-bigint-over-smallint', 'ban-char-field', 'prefer-timestamptz', 'prefer-identity', 'prefer-text-field', 'prefer-jsonb']);
/** Rules for statements PostgreSQL refuses: they fail on a new table as much as an old one. */
const REFUSAL_RULES = new Set(['refused-on-partitioned-table']);

function targetTable(stmt: ParsedStatement): string | null {
  // CREATE TABLE … PARTITION OF locks its parent: that is the table it is about (and new if this migration made it).
  const create = obj(stmt.node.CreateStmt);
  if (create.partbound) return rangeVar(obj(list(create.inhRelations)[0]).RangeVar) || null;
  const dml = obj(stmt.node.UpdateStmt ?? stmt.node.DeleteStmt ?? stmt.node.InsertStmt);
  if (dml.relation) return rangeVar(dml.relation);
  return nodeLocks(stmt.node)[0]?.relation ?? null;
}

const sameTable = (a: string, b: string) => a === b || a === `public.${b}` || b === `public.${a}`;

export interface LintOptions {
  /** Every rule's level: 'error' fails, 'warn' reports, 'off' skips; a rule not named keeps its own level. */
  readonly rules?: Readonly<Record<string, LintLevel>>;
}

/**
 * `-- umzug-zero-downtime: allow <rule> because <reason>` (or `//`, `/* … *\/`) anywhere in a migration accepts that
 * rule's findings in that file, with the reason printed beside them. A reason is required: an allow without one is
 * not taken.
 */
export function allowComments(source: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of source.matchAll(/(?:--|\/\/|\/\*)\s*umzug-zero-downtime:\s*allow\s+([a-z0-9-]+)\s+because\s+(.+?)\s*(?:\*\/|$)/gim)) {
    if (m[2]!.trim()) out.set(m[1]!, m[2]!.trim());
  }
  return out;
}

/** Lints one migration's statements (in the order it sends them). */
export async function lintStatements(statements: readonly CapturedStatement[], allowed: ReadonlyMap<string, string>, options: LintOptions = {}): Promise<LintFinding[]> {
  return (await lintMigration(statements, allowed, options, new Map())).findings;
}

/**
 * lintStatements for one migration of a set read in order: `partitioned` is what the migrations before it said of
 * partitioned tables; the result adds what this one says, for the next.
 */
export async function lintMigration(
  statements: readonly CapturedStatement[],
  allowed: ReadonlyMap<string, string>,
  options: LintOptions,
  partitionedBefore: ReadonlyMap<string, PartitionedTable>,
): Promise<{ findings: LintFinding[]; partitioned: ReadonlyMap<string, PartitionedTable> }> {
  await loadSqlParser();
  const parsed: { stmt: ParsedStatement; from: CapturedStatement }[] = [];
  const findings: LintFinding[] = [];
  for (const s of statements) {
    try {
      for (const stmt of parseSqlSync(s.sql)) parsed.push({ stmt, from: s });
    } catch (e) {
      findings.push({ rule: 'syntax-error', level: 'error', file: s.file, line: s.line, statement: oneLine(s.sql), message: `PostgreSQL's parser refuses it: ${(e as Error).message}`, why: 'The server will refuse it too.', fix: 'fix the SQL' });
    }
  }
  const all = parsed.map((p) => p.stmt);
  const partitioned = new Map(partitionedBefore);
  parsed.forEach(({ stmt, from }, index) => {
    const table = targetTable(stmt);
    // A table this migration created a moment ago has no rows and no readers: locks and rewrites on it cost nothing.
    const fresh = table !== null && all.slice(0, index).some((s) => s.node.CreateStmt && sameTable(rangeVar(obj(s.node.CreateStmt).relation), table));
    for (const rule of RULES) {
      const level = options.rules?.[rule.id] ?? rule.level;
      if (level === 'off' || (fresh && !DESIGN_RULES.has(rule.id) && !REFUSAL_RULES.has(rule.id))) continue;
      for (const hit of rule.check({ stmt, inTransaction: from.inTransaction, all, index, partitioned })) {
        const allow = allowed.get(rule.id);
        findings.push({
          rule: rule.id,
          level,
          file: from.file,
          line: from.line,
          statement: oneLine(stmt.text),
          message: hit.message,
          why: rule.why,
          fix: hit.fix,
          ...(table ? { table } : {}),
          ...(allow ? { allowed: allow } : {}),
        });
      }
    }
    // After its own rules: a statement speaks of the tables as they are once it has run.
    learnPartitions(stmt, partitioned);
  });
  return { findings, partitioned };
}

const oneLine = (s: string) => {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > 200 ? `${t.slice(0, 197)}…` : t;
};

/** Unsafe statements the linter found at level error: `umzug lint` exits 1, and `up` (config `lint: 'error'`) runs nothing. */
export class LintFailedError extends ZeroDowntimeError {
  override name = 'LintFailedError';
  readonly code: ZeroDowntimeErrorCode = 'lint-failed';
}

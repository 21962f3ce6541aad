import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { loadSqlParser, parseSqlSync, type ParsedStatement } from '../postgres/sql-ast.js';
import type { CapturedStatement } from './capture.js';
import { RULES, type LintLevel } from './rules.js';

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
}

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
  parsed.forEach(({ stmt, from }, index) => {
    for (const rule of RULES) {
      const level = options.rules?.[rule.id] ?? rule.level;
      if (level === 'off') continue;
      for (const hit of rule.check({ stmt, inTransaction: from.inTransaction, all, index })) {
        const allow = allowed.get(rule.id);
        findings.push({ rule: rule.id, level, file: from.file, line: from.line, statement: oneLine(stmt.text), message: hit.message, why: rule.why, fix: hit.fix, ...(allow ? { allowed: allow } : {}) });
      }
    }
  });
  return findings;
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

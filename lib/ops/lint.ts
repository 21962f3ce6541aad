import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { glob } from 'tinyglobby';
import { importModule } from '../engine/import-module.js';
import { isDefinedMigration } from '../migration.js';
import { captureMigration, sqlFileStatements, type CapturedStatement } from '../lint/capture.js';
import { allowComments, lintMigration, type LintFinding, type LintOptions } from '../lint/lint.js';
import { RULES, type PartitionedTable } from '../lint/rules.js';
import { list, loadSqlParser, obj, parseSqlSync, str } from '../postgres/sql-ast.js';
import type { Db } from '../db/db.js';

export interface LintedFile {
  readonly file: string;
  /** plain: its statements captured and linted; sql: a .sql file; typed: our typed changes, safe by construction, not linted. */
  readonly kind: 'plain' | 'sql' | 'typed';
  readonly statements: number;
  /** The migration threw while running against the recorder; statements after that point were not seen. */
  readonly captureError?: string;
}

export interface LintReport {
  readonly files: readonly LintedFile[];
  readonly findings: readonly LintFinding[];
  /** Findings at level error that no allow comment accepts: a non-zero exit. */
  readonly errors: number;
  readonly warnings: number;
  readonly ms: number;
}

export interface LintFilesOptions extends LintOptions {
  /** File names in the report are relative to it. */
  readonly cwd: string;
  /** How plain migrations are called first (`up(knex)` or `up({ context })`); a file written the other way is run that way. */
  readonly style?: 'knex' | 'umzug';
}

const EXTENSIONS = /\.(ts|mts|cts|js|mjs|cjs)$/;

/** The migration files a lint reads: the files given (globs allowed), or else the project's migrations. */
export async function lintFileList(cwd: string, given: readonly string[], migrations: readonly string[]): Promise<string[]> {
  const patterns = given.length > 0 ? given : migrations;
  const files = await glob([...patterns], { cwd, absolute: true });
  return files.filter((f) => EXTENSIONS.test(f) || f.endsWith('.sql')).sort((a, b) => path.basename(a).localeCompare(path.basename(b)));
}

/**
 * Lints migration files without a database: a .sql file is parsed as it is; a plain migration's `up` runs against
 * a Knex that records the statements instead of sending them; typed migrations are ours and safe by construction.
 */
export async function lintFiles(files: readonly string[], options: LintFilesOptions): Promise<LintReport> {
  const started = performance.now();
  await loadSqlParser();
  const linted: LintedFile[] = [];
  const findings: LintFinding[] = [];
  // What the files read so far (in order) say of partitioned tables: the partition rules of later files use it.
  let partitioned: ReadonlyMap<string, PartitionedTable> = new Map();
  for (const file of files) {
    const source = readFileSync(file, 'utf8');
    const rel = path.relative(options.cwd, file) || file;
    let statements: CapturedStatement[];
    let kind: LintedFile['kind'];
    let captureError: string | undefined;
    if (file.endsWith('.sql')) {
      kind = 'sql';
      try {
        statements = sqlFileStatements(rel, source, parseSqlSync);
      } catch (e) {
        findings.push({ rule: 'syntax-error', level: 'error', file: rel, line: 0, statement: '', message: `PostgreSQL's parser refuses the file: ${(e as Error).message}`, why: 'The server will refuse it too.', fix: 'fix the SQL' });
        linted.push({ file: rel, kind, statements: 0 });
        continue;
      }
    } else {
      let mod: Record<string, unknown>;
      try {
        mod = await importModule(pathToFileURL(file).href);
      } catch (e) {
        findings.push({ rule: 'load-error', level: 'error', file: rel, line: 0, statement: '', message: `the migration does not load: ${(e as Error).message.split('\n')[0]}`, why: 'up would fail on it too.', fix: 'fix the file' });
        linted.push({ file: rel, kind: 'plain', statements: 0, captureError: (e as Error).message.split('\n')[0]! });
        continue;
      }
      const candidate = mod.default ?? mod;
      if (isDefinedMigration(candidate) || isDefinedMigration((candidate as Record<string, unknown> | null)?.default)) {
        linted.push({ file: rel, kind: 'typed', statements: 0 });
        continue;
      }
      kind = 'plain';
      const captured = await captureMigration(file, options.style);
      statements = captured.statements.map((s) => ({ ...s, file: rel }));
      captureError = captured.error;
    }
    const migration = await lintMigration(statements, allowComments(source), options, partitioned);
    partitioned = migration.partitioned;
    findings.push(...migration.findings);
    linted.push({ file: rel, kind, statements: statements.length, ...(captureError ? { captureError } : {}) });
  }
  return { files: linted, findings, ...tally(findings), ms: Math.round(performance.now() - started) };
}

/** Errors and warnings no allow comment accepts: what fails a lint and what it reports. */
function tally(findings: readonly LintFinding[]): { errors: number; warnings: number } {
  const live = findings.filter((f) => !f.allowed);
  return { errors: live.filter((f) => f.level === 'error').length, warnings: live.filter((f) => f.level === 'warn').length };
}

/** Rules whose cost grows with the table's rows (a scan, a rewrite, an index build, row locks). */
const SIZE_RULES = new Set([
  'adding-field-with-volatile-default',
  'changing-column-type',
  'require-concurrent-index-creation',
  'adding-foreign-key-constraint',
  'constraint-missing-not-valid',
  'disallowed-unique-constraint',
  'adding-primary-key-constraint',
  'setting-not-null',
  'unbatched-update',
  'vacuum-full-or-cluster',
]);

/**
 * Sharpens findings with what the server knows of their tables: each gets the table's size; a SET NOT NULL that a
 * validated CHECK (col IS NOT NULL) already proves is dropped (PostgreSQL skips its scan); a finding whose cost is
 * the table's rows, on a table that is empty, becomes a warning. Read-only catalog queries.
 */
export async function sharpenWithServer(db: Db, report: LintReport): Promise<LintReport> {
  const sizes = new Map<string, { rows: number; bytes: number } | null>();
  for (const table of new Set(report.findings.map((f) => f.table).filter((t): t is string => !!t))) {
    const r = await db.query<{ rows: number; pages: number; bytes: number }>(
      `SELECT c.reltuples::float8 AS rows, c.relpages::float8 AS pages, pg_total_relation_size(c.oid)::float8 AS bytes FROM pg_class c WHERE c.oid = to_regclass($1)`,
      [table],
    );
    const x = r.rows[0];
    sizes.set(table, x ? { rows: x.rows < 0 ? -1 : x.pages === 0 ? 0 : x.rows, bytes: x.bytes } : null);
  }
  const findings: LintFinding[] = [];
  for (const f of report.findings) {
    const size = f.table ? sizes.get(f.table) : undefined;
    if (size === undefined) {
      findings.push(f);
      continue;
    }
    if (size === null) {
      findings.push({ ...f, server: `${f.table} is not in the database yet` });
      continue;
    }
    if (f.rule === 'setting-not-null' && (await provenNotNull(db, f))) continue;
    const rows = size.rows < 0 ? 'never analyzed' : `~${Math.round(size.rows)} rows`;
    const server = `${f.table}: ${rows}, ${(size.bytes / 1048576).toFixed(1)} MB`;
    const empty = size.rows === 0 && SIZE_RULES.has(f.rule) && f.level === 'error';
    findings.push({ ...f, ...(empty ? { level: 'warn' as const } : {}), server: empty ? `${server} (empty: the lock is brief today)` : server });
  }
  return { ...report, findings, ...tally(findings) };
}

/** Whether a validated CHECK (col IS NOT NULL) on the finding's table proves its SET NOT NULL. */
async function provenNotNull(db: Db, f: LintFinding): Promise<boolean> {
  const cmds = parseSqlSync(f.statement).flatMap((st) => list(obj(st.node.AlterTableStmt).cmds).map((c) => obj(obj(c).AlterTableCmd)));
  const columns = cmds.filter((c) => str(c.subtype) === 'AT_SetNotNull').map((c) => str(c.name));
  if (columns.length === 0) return false;
  const r = await db.query<{ def: string }>(`SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'c' AND convalidated`, [f.table!]);
  // PostgreSQL prints such a CHECK as CHECK ((col IS NOT NULL)), the name quoted only where it must be.
  return columns.every((c) => r.rows.some((x) => x.def.replace(/"/g, '').includes(`(${c} IS NOT NULL)`)));
}

// ---- output ------------------------------------------------------------------------------------------------------

export function formatLintText(r: LintReport): string {
  const lines: string[] = [];
  for (const f of r.findings) {
    lines.push(`${f.file}:${f.line} ${f.allowed ? 'allowed' : f.level} ${f.rule}: ${f.message}`);
    lines.push(`  ${f.statement}`);
    lines.push(`  why: ${f.why}`);
    lines.push(`  instead: ${f.fix}`);
    if (f.server) lines.push(`  server: ${f.server}`);
    if (f.allowed) lines.push(`  allowed because ${f.allowed}`);
  }
  for (const f of r.files) if (f.captureError) lines.push(`${f.file}: its up() threw against the recorder (${f.captureError}); statements after that point were not linted`);
  const plain = r.files.filter((f) => f.kind !== 'typed').length;
  lines.push(`${r.files.length} migrations (${plain} plain or SQL, ${r.files.length - plain} typed: safe by construction), ${r.errors} errors, ${r.warnings} warnings, ${r.findings.length - r.errors - r.warnings} allowed, in ${r.ms} ms`);
  return lines.join('\n');
}

/** GitHub Actions workflow commands: each finding an annotation on its file and line. */
export function formatLintGithub(r: LintReport): string {
  const esc = (s: string) => s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
  return r.findings
    .filter((f) => !f.allowed)
    .map((f) => `::${f.level === 'error' ? 'error' : 'warning'} file=${f.file},line=${Math.max(1, f.line)},title=${f.rule}::${esc(`${f.message}. ${f.why} Instead: ${f.fix}`)}`)
    .join('\n');
}

/** SARIF 2.1.0, for code-scanning uploads. */
export function formatLintSarif(r: LintReport): string {
  return JSON.stringify({
    version: '2.1.0',
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    runs: [
      {
        tool: { driver: { name: 'umzug-zero-downtime lint', rules: RULES.map((x) => ({ id: x.id, shortDescription: { text: x.why }, defaultConfiguration: { level: x.level === 'warn' ? 'warning' : 'error' } })) } },
        results: r.findings.map((f) => ({
          ruleId: f.rule,
          level: f.allowed ? 'note' : f.level === 'warn' ? 'warning' : 'error',
          message: { text: `${f.message}. Instead: ${f.fix}${f.allowed ? ` (allowed because ${f.allowed})` : ''}` },
          locations: [{ physicalLocation: { artifactLocation: { uri: f.file.split(path.sep).join('/') }, region: { startLine: Math.max(1, f.line) } } }],
        })),
      },
    ],
  });
}

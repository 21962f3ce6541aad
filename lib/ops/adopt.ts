import { readFileSync } from 'node:fs';
import path from 'node:path';
import { relationExists } from '../postgres/catalog.js';
import { ident, qualified } from '../postgres/identifiers.js';
import type { MigrationEntry, Project } from './project.js';

/**
 * Where an Umzug project kept its history: Umzug's SequelizeStorage (`SequelizeMeta`, one `name` column), its
 * JSONStorage (a JSON array of names, `umzug.json` by default), or any table with one column of names.
 */
export type AdoptSource =
  | { readonly kind: 'sequelize-meta'; readonly table?: string; readonly schema?: string; readonly column?: string }
  | { readonly kind: 'json'; readonly path?: string }
  | { readonly kind: 'table'; readonly table: string; readonly schema?: string; readonly column: string };

export interface AdoptReport {
  readonly source: string;
  /** Names recorded as executed by this run, in file order. */
  readonly recorded: readonly string[];
  /** Names already recorded (by an earlier adopt or run): left as they were. */
  readonly alreadyExecuted: readonly string[];
  /** Names in the storage that match no file of the migrations folder: not recorded. */
  readonly unknown: readonly string[];
  /** Names that match a typed migration: not recorded (its expand must run through the engine; `umzug up` runs it). */
  readonly typed: readonly string[];
  readonly dryRun: boolean;
}

async function readNames(project: Project, source: AdoptSource): Promise<{ label: string; names: string[] }> {
  if (source.kind === 'json') {
    const file = path.resolve(project.config.cwd, source.path ?? 'umzug.json');
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`adopt: cannot read ${file} as Umzug's JSON storage (${(e as Error).message}). Nothing was recorded.`);
    }
    if (!Array.isArray(parsed) || !parsed.every((n) => typeof n === 'string')) throw new Error(`adopt: ${file} is not a JSON array of migration names. Nothing was recorded.`);
    return { label: file, names: parsed };
  }
  const table = source.table ?? 'SequelizeMeta';
  const column = source.column ?? 'name';
  const t = qualified({ schema: source.schema ?? project.config.schema, name: table });
  if (!(await relationExists(project.db, t))) throw new Error(`adopt: the table ${t} does not exist here. Nothing was recorded. Name the storage with --table/--schema (and --column).`);
  const r = await project.db.query<{ name: string }>(`SELECT ${ident(column)}::text AS name FROM ${t} WHERE ${ident(column)} IS NOT NULL`);
  return { label: `${t}.${ident(column)}`, names: r.rows.map((x) => x.name) };
}

/** A stored name matches a file by its name, or by its name without the extension (a resolver that strips it). */
function matchEntry(entries: readonly MigrationEntry[], name: string): MigrationEntry | undefined {
  const base = (e: MigrationEntry) => path.basename(e.file);
  return entries.find((e) => base(e) === name) ?? entries.find((e) => base(e).slice(0, -path.extname(base(e)).length) === name);
}

/**
 * Imports an Umzug project's history: each name its storage holds that matches a plain migration file is recorded
 * as executed, so `umzug up` does not run it again. Idempotent: names recorded already are left as they are.
 * Typed migrations are never recorded this way (their expand must run), and unknown names are reported, not guessed.
 */
export async function adoptHistory(project: Project, source: AdoptSource, options: { readonly dryRun?: boolean } = {}): Promise<AdoptReport> {
  const { label, names } = await readNames(project, source);
  const entries = await project.entries();
  const executed = new Set(await project.engine.state.executedNames());
  const stored = new Set(names);
  const unknown = names.filter((n) => !matchEntry(entries, n));
  const typed: string[] = [];
  const alreadyExecuted: string[] = [];
  const recorded: string[] = [];
  // File order, so `down` reverts the newest first.
  const seen = new Set<string>();
  for (const e of entries) {
    const name = path.basename(e.file);
    if (seen.has(name) || ![...stored].some((n) => matchEntry([e], n))) continue;
    seen.add(name);
    if (e.phase !== 'plain') typed.push(name);
    else if (executed.has(e.name)) alreadyExecuted.push(e.name);
    else recorded.push(e.name);
  }
  if (!options.dryRun) for (const name of recorded) await project.engine.state.logMigration(name);
  return { source: label, recorded, alreadyExecuted, unknown, typed, dryRun: options.dryRun === true };
}

export function formatAdoptReport(r: AdoptReport): string {
  const lines = [`From ${r.source}: ${r.dryRun ? 'would record' : 'recorded'} ${r.recorded.length} as executed${r.recorded.length ? `: ${r.recorded.join(', ')}` : ''}.`];
  if (r.alreadyExecuted.length) lines.push(`Already executed, left as they were: ${r.alreadyExecuted.join(', ')}.`);
  if (r.typed.length) lines.push(`Typed migrations, not recorded (their expand runs with \`umzug up\`): ${r.typed.join(', ')}.`);
  if (r.unknown.length) lines.push(`In the storage but not in the migrations folder, not recorded: ${r.unknown.join(', ')}.`);
  return lines.join('\n');
}

/**
 * What the `umzug` bin runs (bin.ts only calls `main` and sets the exit code): project loading (umzug.config.*, a
 * knexfile, DATABASE_URL), the options that choose it, `lint` without a database, and Umzug's parser for the rest.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { checkConnectionUrl } from '../db/connection-check.js';
import { freshProjectImports, importModule } from '../engine/import-module.js';
import { wantsJson, withJsonStdout } from './json-output.js';
import { zeroDowntimeCli } from './cli.js';
import { runLint, type LintFormat, type LintSettings } from './lint.js';
import type { CliProject } from '../ops/project.js';
import { serveMetrics, type MetricsServer } from '../monitor/metrics-server.js';
import { zeroDowntime, ZeroDowntimeUmzug } from '../zero-downtime.js';
import type { ZeroDowntimeConfig } from '../config.js';
import type { ZeroDowntimeMigrationsOptions } from '../knex-migration-source.js';

const CONFIG_NAMES = ['umzug.config.ts', 'umzug.config.mts', 'umzug.config.js', 'umzug.config.mjs', 'umzug.config.cjs'];
const KNEXFILE_NAMES = ['knexfile.ts', 'knexfile.mts', 'knexfile.js', 'knexfile.mjs', 'knexfile.cjs'];

async function importDefault(file: string): Promise<unknown> {
  const mod = (await importModule(pathToFileURL(file).href)) as { default?: unknown };
  let exported: unknown = mod.default ?? mod;
  // A CommonJS file compiled from ESM nests its export once more.
  if (exported && typeof exported === 'object' && 'default' in exported && Object.keys(exported).length === 1) exported = (exported as { default: unknown }).default;
  return exported;
}

/**
 * The project's knexfile, as the knex CLI reads it: one config, or one per environment picked by NODE_ENV
 * (default development); a function is called. Its migrations.directory becomes our migrations glob.
 */
interface Knexfile {
  readonly file: string;
  readonly knex: Record<string, unknown>;
  readonly migrations?: string | readonly string[];
  /**
   * What a knexfile implies: its migrations are Knex-style files, and its migrations table is the history; with
   * `migrationSource: zeroDowntimeMigrations({...})`, that source's options too, so both CLIs see one project.
   */
  readonly implied: Omit<ZeroDowntimeConfig, 'knex'>;
}

async function knexfileConfig(cwd: string, given?: string, envName?: string): Promise<Knexfile | null> {
  const file = given ? path.resolve(cwd, given) : KNEXFILE_NAMES.map((n) => path.join(cwd, n)).find((f) => existsSync(f));
  if (!file) return null;
  if (!existsSync(file)) throw new Error(`--knexfile ${given}: no such file (looked for ${file}).`);
  let config = await importDefault(file);
  if (typeof config === 'function') config = await (config as () => unknown)();
  if (!config || typeof config !== 'object') throw new Error(`${file} exports no Knex config`);
  let knex = config as Record<string, unknown>;
  if (!('client' in knex)) {
    const env = envName || process.env.NODE_ENV || 'development';
    const picked = knex[env];
    if (!picked || typeof picked !== 'object') {
      throw new Error(`${file} has no config for the environment ${env} (it has: ${Object.keys(knex).join(', ')}). Pass --env (or set NODE_ENV), or add that environment.`);
    }
    knex = picked as Record<string, unknown>;
  }
  const own = (knex.migrations ?? {}) as { directory?: unknown; tableName?: unknown; schemaName?: unknown; migrationSource?: { options?: unknown } };
  const { migrations: _knexOwn, seeds: _seeds, ...rest } = knex;
  const source = own.migrationSource?.options;
  // The source's paths are read from the knexfile's folder, where Knex's CLI runs it.
  const sourceOptions: ZeroDowntimeMigrationsOptions = source && typeof source === 'object' ? { cwd: path.dirname(file), ...(source as ZeroDowntimeMigrationsOptions) } : {};
  const implied: Knexfile['implied'] = {
    ...sourceOptions,
    plainMigrations: 'knex',
    knexHistory: {
      ...(typeof own.tableName === 'string' ? { tableName: own.tableName } : {}),
      ...(typeof own.schemaName === 'string' ? { schemaName: own.schemaName } : {}),
    },
  };
  // Knex's CLI reads a knexfile's paths from the knexfile's folder (it changes to it), not from where it was started.
  const directory = typeof own.directory === 'string' ? path.relative(cwd, path.resolve(path.dirname(file), own.directory)).split(path.sep).join('/') || '.' : null;
  const migrations = directory !== null ? `${directory.replace(/\/+$/, '')}/*.{ts,mts,cts,js,mjs,cjs}` : sourceOptions.migrations;
  return { file, knex: rest, implied, ...(migrations ? { migrations } : {}) };
}

/**
 * Options that choose the project (config file, database, migrations glob) are needed before Umzug's own parser
 * exists, because that parser is built from the configured instance. Node's parseArgs picks them out, with the
 * metrics endpoint that any command may serve; every other argument goes to Umzug's CLI untouched.
 */
interface GlobalOptions {
  config?: string;
  databaseUrl?: string;
  migrations?: string;
  metricsPort?: string;
  metricsHost?: string;
  /** As Knex's CLI takes them: the knexfile (default: knexfile.* in the current folder) and its environment (default NODE_ENV, else development). */
  knexfile?: string;
  env?: string;
}

const GLOBAL_OPTIONS = ['config', 'database-url', 'migrations', 'metrics-port', 'metrics-host', 'knexfile', 'env'];

function splitGlobalOptions(argv: string[]): { globals: GlobalOptions; rest: string[] } {
  const { tokens } = parseArgs({
    args: argv,
    strict: false,
    allowPositionals: true,
    tokens: true,
    options: Object.fromEntries(GLOBAL_OPTIONS.map((o) => [o, { type: 'string' as const }])),
  });
  const globals: GlobalOptions = {};
  const drop = new Set<number>();
  for (const t of tokens ?? []) {
    if (t.kind !== 'option' || !GLOBAL_OPTIONS.includes(t.name)) continue;
    if (t.value === undefined) throw new Error(`--${t.name} needs a value`);
    drop.add(t.index);
    if (!t.inlineValue) drop.add(t.index + 1);
    if (t.name === 'config') globals.config = t.value;
    else if (t.name === 'database-url') globals.databaseUrl = t.value;
    else if (t.name === 'metrics-port') globals.metricsPort = t.value;
    else if (t.name === 'metrics-host') globals.metricsHost = t.value;
    else if (t.name === 'knexfile') globals.knexfile = t.value;
    else if (t.name === 'env') globals.env = t.value;
    else globals.migrations = t.value;
  }
  return { globals, rest: argv.filter((_a, i) => !drop.has(i)) };
}

async function loadUmzug(globals: GlobalOptions): Promise<ZeroDowntimeUmzug> {
  const cwd = process.cwd();
  if (globals.databaseUrl !== undefined) {
    const problem = checkConnectionUrl(globals.databaseUrl, '--database-url');
    if (problem) throw new Error(problem);
  }
  const file = globals.config ? path.resolve(cwd, globals.config) : CONFIG_NAMES.map((n) => path.join(cwd, n)).find((f) => existsSync(f));
  if (globals.config && !existsSync(file!)) throw new Error(`config file ${file} does not exist`);
  const knexfile = await knexfileConfig(cwd, globals.knexfile, globals.env);
  if (file) {
    let exported = await importDefault(file);
    if (typeof exported === 'function' && !(exported as { client?: unknown }).client) exported = await (exported as () => unknown)();
    if (typeof (exported as { runAsCLI?: unknown }).runAsCLI === 'function') return exported as ZeroDowntimeUmzug;
    const config = exported as ZeroDowntimeConfig;
    // A config without `knex` reuses the project's knexfile.
    const knex = globals.databaseUrl ? { client: 'pg', connection: globals.databaseUrl } : (config.knex ?? knexfile?.knex);
    // A config that leans on the knexfile for its connection is a Knex project: its files and history, unless it says otherwise.
    const fromKnexfile = !config.knex && knexfile ? knexfile.implied : {};
    return zeroDowntime({
      ...fromKnexfile,
      ...config,
      ...(knex ? { knex: knex as ZeroDowntimeConfig['knex'] } : {}),
      ...(globals.migrations ? { migrations: globals.migrations } : !config.migrations && knexfile?.migrations ? { migrations: knexfile.migrations } : {}),
    });
  }
  const url = globals.databaseUrl ?? (knexfile ? undefined : process.env.DATABASE_URL);
  // An empty DATABASE_URL is a mistake of its own (often an unset CI secret), not the same as none at all.
  if (url !== undefined && globals.databaseUrl === undefined) {
    const problem = checkConnectionUrl(url, 'DATABASE_URL');
    if (problem) throw new Error(problem);
  }
  if (knexfile && !url) {
    return zeroDowntime({
      knex: knexfile.knex as ZeroDowntimeConfig['knex'],
      ...knexfile.implied,
      ...((globals.migrations ?? knexfile.migrations) ? { migrations: (globals.migrations ?? knexfile.migrations)! } : {}),
    });
  }
  if (url === undefined) {
    throw new Error(`no ${CONFIG_NAMES.join(' / ')} or ${KNEXFILE_NAMES.join(' / ')} in ${cwd}, and neither --database-url nor DATABASE_URL is set: nothing to connect to.`);
  }
  return zeroDowntime({ knex: { client: 'pg', connection: url, pool: { min: 0, max: 4 } }, ...(globals.migrations ? { migrations: globals.migrations } : {}) });
}

/** 0, or the parser's own code (2 for a usage error: an unknown command or flag), else 1. See the README's exit codes. */
function failureCode(ok: boolean): number {
  if (ok) return 0;
  return typeof process.exitCode === 'number' && process.exitCode !== 0 ? process.exitCode : 1;
}

function asksHelp(argv: readonly string[]): boolean {
  return argv.includes('--help') || argv.includes('-h');
}

function wantsHelp(argv: readonly string[]): boolean {
  return argv.length === 0 || asksHelp(argv);
}

/** A project for the help pages alone: the commands are defined on it, and any use of it says why it cannot run. */
function offlineProject(why: string): CliProject {
  return new Proxy({} as CliProject, {
    get(_target, key) {
      if (typeof key === 'symbol' || key === 'then') return undefined;
      throw new Error(`${why} (only --help works without a project)`);
    },
  });
}

/**
 * The `umzug` command line: `argv` without node and the script, the exit code returned (the bin sets it). It runs in
 * the current folder and writes to process.stdout/stderr. Called again in the same process, it loads the project's
 * config and migration files afresh, so each call sees them as they are on disk, as a new process would.
 */
export async function main(argv: readonly string[]): Promise<number> {
  freshProjectImports();
  const { globals, rest } = splitGlobalOptions([...argv]);
  // Loading the config and closing the pools print too (a user's config, Knex's warnings): under --json, to stderr.
  return wantsJson(rest) ? withJsonStdout(() => run(globals, rest)) : run(globals, rest);
}

/** `create --list` and `create --template NAME --help`: about the templates, so answered before any project loads. */
async function templateInfo(argv: readonly string[]): Promise<string | null> {
  if (argv[0] !== 'create') return null;
  const t = argv.indexOf('--template');
  const template = t >= 0 ? argv[t + 1] : undefined;
  if (!argv.includes('--list') && !(template && asksHelp(argv))) return null;
  const { formatTemplateHelp, formatTemplateList } = await import('../ops/create.js');
  return argv.includes('--list') ? formatTemplateList() : formatTemplateHelp(template!);
}

async function run(globals: GlobalOptions, rest: string[]): Promise<number> {
  try {
    const info = await templateInfo(rest);
    if (info !== null) {
      process.stdout.write(info + '\n');
      return 0;
    }
  } catch (e) {
    process.stderr.write(`umzug: ${(e as Error).message}\n`);
    return 2;
  }
  if (rest[0] === 'lint' && !asksHelp(rest)) return lintCommand(globals, rest.slice(1));
  let umzug: ZeroDowntimeUmzug;
  try {
    umzug = await loadUmzug(globals);
  } catch (e) {
    // Help describes the commands; it needs no project and no database.
    if (wantsHelp(rest)) return failureCode(await zeroDowntimeCli(offlineProject((e as Error).message)).execute(rest));
    process.stderr.write(`umzug: ${(e as Error).message}\n`);
    return 2;
  }
  let metrics: MetricsServer | null = null;
  try {
    if (globals.metricsPort !== undefined) {
      try {
        metrics = await serveMetrics(umzug.monitor.metrics.registry, globals.metricsPort, globals.metricsHost);
      } catch (e) {
        process.stderr.write(`umzug: ${(e as Error).message}\n`);
        return 2;
      }
      process.stderr.write(`umzug: Prometheus metrics on ${metrics.url}\n`);
    }
    return failureCode(await zeroDowntimeCli(umzug).execute(rest));
  } finally {
    await metrics?.close();
    await umzug.close();
  }
}

/**
 * `umzug lint` needs no database: the project's config is read when there is one (its migrations and lint rules),
 * else the defaults (the files in migrations/).
 */
async function lintCommand(globals: GlobalOptions, args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: { format: { type: 'string' }, json: { type: 'boolean' } } });
  } catch (e) {
    process.stderr.write(`umzug lint: ${(e as Error).message}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const format = values.json ? 'json' : (values.format ?? 'text');
  if (!['text', 'json', 'github', 'sarif'].includes(format)) {
    process.stderr.write(`umzug lint: --format must be text, json, github or sarif, not ${format}\n`);
    return 2;
  }
  const cwd = process.cwd();
  let settings: LintSettings;
  try {
    const umzug = await loadUmzug(globals);
    settings = umzug.config;
    await umzug.close();
  } catch {
    const knexfile = KNEXFILE_NAMES.some((n) => existsSync(path.join(cwd, n)));
    settings = { cwd, migrations: [globals.migrations ?? 'migrations/*.{ts,mts,cts,js,mjs,cjs,sql}'], plainMigrations: knexfile ? 'knex' : 'umzug', lint: { level: 'warn', rules: {} } };
  }
  try {
    return (await runLint(settings, positionals, format as LintFormat)).code;
  } catch (e) {
    process.stderr.write(`umzug: ${(e as Error).message}\n`);
    return 2;
  }
}

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Knex } from 'knex';
import { createKnex } from './db/knex-factory.js';
import { Umzug, type MigrationMeta, type RunnableMigration } from 'umzug';
import { glob } from 'tinyglobby';
import { checkKnexConnection, ConfigError, resolveConfig, type ResolvedConfig, type ZeroDowntimeConfig, type ZeroDowntimeLogger } from './config.js';
import { withMigrationLock } from './engine/migration-lock.js';
import { detectPooling } from './db/pooling.js';
import { Db, type PoolingMode } from './db/db.js';
import { Engine, type GateStatus } from './runner.js';
import { importModule } from './engine/import-module.js';
import { isDefinedMigration } from './migration.js';
import { ChangeInputError } from './postgres/identifiers.js';
import { LintFailedError } from './lint/lint.js';
import { runPlainLockSafe } from './engine/plain-migration.js';
import { loadSqlParser } from './postgres/sql-ast.js';
import type { GatedContract, MigrationEntry, Project, ZeroDowntimeUpOptions } from './ops/project.js';
import { buildStatus, type StatusReport } from './ops/status.js';
import { FlagStore } from './flags/store.js';
import { createMonitor } from './monitor/attach.js';
import { registerMongoTasks } from './mongo/tasks.js';
import type { Monitor } from './monitor/monitor.js';

export interface ZeroDowntimeContext {
  readonly knex: Knex;
  readonly db: Db;
  readonly engine: Engine;
}

/** Commands that change the schema or the data, and so take the migration lock. */
const LOCKED_COMMANDS = new Set(['up', 'down', 'backfill', 'verify', 'rehearse', 'purge', 'adopt']);
const READ_ONLY_WHEN_FRESH = new Set(['verify', 'purge']);

const isKnexInstance = (k: unknown): k is Knex => typeof k === 'function' && typeof (k as { client?: unknown }).client === 'object';

/** What runAsCLI needs of the command line (lib/cli/cli.ts). */
export interface CliModule {
  zeroDowntimeCli(project: ZeroDowntimeUmzug): { execute(argv?: string[]): Promise<boolean> };
}
let cliLoader: (() => Promise<CliModule>) | null = null;

/** Registers how runAsCLI loads the command line; the root export (lib/index.ts) and the bin call it. */
export function provideCli(loader: () => Promise<CliModule>): void {
  cliLoader = loader;
}

/**
 * Umzug, wired for phased migrations: its migration list interleaves expand and contract entries, its storage is
 * a table in the target database, and `up`/`down` hold the migration lock (a fenced lease: lib/engine/migration-lock.ts).
 */
export class ZeroDowntimeUmzug extends Umzug<ZeroDowntimeContext> implements Project {
  readonly config: ResolvedConfig;
  readonly knex: Knex;
  readonly db: Db;
  readonly engine: Engine;
  /** Contracts the last `up` left waiting, with the reasons. */
  lastGated: GatedContract[] = [];
  /** Read-cutover flags, in the state schema of the target database. */
  readonly flags: FlagStore;
  /** Metrics (prom-client registry in monitor.metrics.registry), canary and thresholds. */
  readonly monitor: Monitor;
  private readonly ownsKnex: boolean;
  private readonly zdLogger: ZeroDowntimeLogger | null;
  /** Set for `create`: list files without reading the state table. */
  private offline = false;
  /** Set by up({ bypassContractGates }) (rehearse): every pending contract runs, after every pending expand. */
  private bypassContractGates = false;

  constructor(input: ZeroDowntimeConfig) {
    const config = resolveConfig(input);
    checkKnexConnection(input.knex);
    const ownsKnex = !isKnexInstance(input.knex);
    const knex = isKnexInstance(input.knex) ? input.knex : createKnex(input.knex as Knex.Config);
    const db = new Db(knex);
    const engine = new Engine(db, {
      stateSchema: config.stateSchema,
      defaultSchema: config.schema,
      lock: config.lock,
      backfill: config.backfill,
      verifyChunkSize: 10_000,
      leaseTiming: config.leaseTiming,
      knexHistory: config.knexHistory,
      ...(input.onEvent ? { onEvent: input.onEvent } : {}),
    });
    const self: { ref?: ZeroDowntimeUmzug } = {};
    const logger = input.logger === undefined ? console : input.logger;
    super({
      migrations: async () => self.ref!.runnableMigrations(),
      context: () => ({ knex, db, engine }),
      storage: {
        executed: () => (self.ref?.offline ? Promise.resolve([]) : self.ref!.executedNames()),
        logMigration: ({ name }) => engine.state.logMigration(name),
        unlogMigration: ({ name }) => engine.state.unlogMigration(name),
      },
      logger: logger ?? undefined,
      create: {
        folder: path.resolve(config.cwd, config.createFolder),
        // Templates (ajv, the JSON schemas) load when `create` runs.
        template: async (filepath: string) => (await import('./ops/create.js')).creationTemplate(self.ref!, filepath),
      },
    });
    self.ref = this;
    this.config = config;
    this.knex = knex;
    this.db = db;
    if (config.pooling !== 'auto') db.pooling = config.pooling;
    this.engine = engine;
    this.ownsKnex = ownsKnex;
    this.zdLogger = logger;
    this.flags = new FlagStore(db, config.stateSchema);
    this.monitor = createMonitor(this, () => (this.options.logger ? logger : null));
    registerMongoTasks(engine, input.mongo);
  }

  /** Destroys the Knex instance if this object created it. */
  async close(): Promise<void> {
    await this.monitor.close();
    if (this.ownsKnex) await this.knex.destroy();
  }

  protected override async runCommand<T>(command: string, cb: (p: { context: ZeroDowntimeContext }) => Promise<T>): Promise<T> {
    // `create` needs no database: every file counts as pending (Umzug only checks that the new one is listed).
    if (command === 'create') {
      this.offline = true;
      try {
        return await super.runCommand(command, cb);
      } finally {
        this.offline = false;
      }
    }
    if (!LOCKED_COMMANDS.has(command)) return super.runCommand(command, cb);
    // A database this tool never ran on has nothing to verify or purge: no lock, and no state schema created.
    if (READ_ONLY_WHEN_FRESH.has(command) && !(await this.engine.state.readable())) return super.runCommand(command, cb);
    await this.engine.state.ensure();
    const pooling = await this.pooling();
    return withMigrationLock(this.db, this.config.stateSchema, { waitMs: this.config.lockWaitMs, pooling, timing: this.config.leaseTiming }, (lost) =>
      this.engine.withSignal(lost, () => super.runCommand(command, cb)),
    );
  }

  /** Whether a transaction pooler sits between us and PostgreSQL: from the config, else found out once. */
  async pooling(): Promise<PoolingMode> {
    if (this.db.pooling) return this.db.pooling;
    this.db.pooling = this.config.pooling === 'auto' ? await detectPooling(this.db) : this.config.pooling;
    return this.db.pooling;
  }

  /** Runs `fn` as the named command: Umzug's before/afterCommand events, and the migration lock for locked commands. */
  async asCommand<T>(command: string, fn: () => Promise<T>): Promise<T> {
    return this.runCommand(command, () => fn());
  }

  /**
   * The unsafe-DDL linter over the pending plain migrations (`lint` in the config): with `error`, an error-level
   * finding no allow comment accepts stops `up` before anything runs; with `warn`, findings are logged.
   */
  private async lintPending(): Promise<void> {
    if (this.config.lint.level === 'off') return;
    const executed = new Set(await this.engine.state.executedNames());
    const files = (await this.entries()).filter((e) => e.phase === 'plain' && !executed.has(e.name)).map((e) => e.file);
    if (files.length === 0) return;
    const { lintFiles, formatLintText, sharpenWithServer } = await import('./ops/lint.js');
    const report = await sharpenWithServer(this.db, await lintFiles(files, { cwd: this.config.cwd, style: this.config.plainMigrations, rules: this.config.lint.rules }));
    const live = report.findings.filter((f) => !f.allowed);
    if (this.config.lint.level === 'error' && report.errors > 0) {
      throw new LintFailedError(
        `lint: ${report.errors} unsafe statement${report.errors === 1 ? '' : 's'} in pending plain migrations. Nothing was run.\n${formatLintText(report)}\n` +
          'Write them as the typed changes named, or accept one with `-- umzug-zero-downtime: allow <rule> because <reason>` in the migration, or set lint: \'warn\'.',
      );
    }
    for (const f of live) this.zdLogger?.warn({ event: 'lint', rule: f.rule, level: f.level, file: f.file, line: f.line, message: f.message, fix: f.fix, ...(f.server ? { server: f.server } : {}) });
  }

  /** Umzug's create, with Knex's file names where the folder (or a Knex project) uses them. */
  override async create(options: Parameters<Umzug['create']>[0]): Promise<void> {
    const { knexMigrationName, usesKnexNames } = await import('./ops/create.js');
    const folder = options.folder ?? path.resolve(this.config.cwd, this.config.createFolder);
    if ((options.prefix === undefined || options.prefix === 'TIMESTAMP') && usesKnexNames(this.config.plainMigrations, folder)) {
      return super.create({ ...options, prefix: 'NONE', name: knexMigrationName(options.name) });
    }
    return super.create(options);
  }

  /**
   * The command line (its parser, progress bars and templates) is loaded only when a command runs, by the loader the
   * root export registers (provideCli): this layer never imports the cli above it.
   */
  override async runAsCLI(argv?: string[]): Promise<boolean> {
    if (!cliLoader) {
      throw new ConfigError(
        "runAsCLI: the command line is not loaded. Import ZeroDowntimeUmzug or zeroDowntime from 'umzug-zero-downtime' (the root export registers it), or run the `umzug` bin. Nothing was run.",
      );
    }
    const { zeroDowntimeCli } = await cliLoader();
    return zeroDowntimeCli(this).execute(argv);
  }

  override async up(options: ZeroDowntimeUpOptions = {}): Promise<MigrationMeta[]> {
    await this.lintPending();
    const { bypassContractGates, ...umzugOptions } = options;
    this.bypassContractGates = bypassContractGates === true;
    let applied: MigrationMeta[];
    try {
      applied = await super.up(await this.phaseNames(umzugOptions, 'up'));
    } finally {
      this.bypassContractGates = false;
    }
    for (const g of this.lastGated) {
      // Through Umzug's option, which `up --json` mutes for the length of the command.
      if (this.options.logger) this.zdLogger?.info({ event: 'contract-waiting', name: g.name, reasons: g.gate.reasons, opensAt: g.gate.opensAt?.toISOString() ?? null });
    }
    return applied;
  }

  /** Set by down(): expands that started but never finished count as executed, so that down undoes them. */
  private includeHalfApplied = false;

  /**
   * What Umzug takes as executed. During `down` this includes the expands that started (their changes are in the
   * state table) but are not logged, oldest first after the logged ones: Umzug reverts newest first, so a half-applied
   * expand, always newer than every logged entry, is the first to go, and is reported as reverted.
   */
  private async executedNames(): Promise<string[]> {
    const logged = await this.engine.state.executedNames();
    if (!this.includeHalfApplied) return logged;
    return [...logged, ...(await this.engine.state.halfAppliedExpands())];
  }

  override async down(options: Parameters<Umzug<ZeroDowntimeContext>['down']>[0] = {}): Promise<MigrationMeta[]> {
    this.includeHalfApplied = true;
    try {
      return await super.down(await this.phaseNames(options, 'down'));
    } finally {
      this.includeHalfApplied = false;
    }
  }

  /**
   * `--name`/`migrations` and `to` may name a typed file as written (`003.price.ts`) instead of one of its phases:
   * for `up` that is its expand while the expand is pending, then its contract; for `down --name` its newest applied
   * phase, and `down --to` reverts the whole file.
   */
  private async phaseNames<O extends { migrations?: string[]; to?: unknown }>(options: O, direction: 'up' | 'down'): Promise<O> {
    const names = [...(options.migrations ?? []), ...(typeof options.to === 'string' ? [options.to] : [])];
    if (names.length === 0) return options;
    const entries = await this.entries();
    const known = new Set(entries.map((e) => e.name));
    if (names.every((n) => known.has(n))) return options;
    const executed = new Set(await this.engine.state.executedNames());
    const phaseOf = (name: string): string => {
      if (known.has(name) || !known.has(`${name}:expand`)) return name;
      const expandDone = executed.has(`${name}:expand`);
      if (direction === 'up') return expandDone ? `${name}:contract` : `${name}:expand`;
      return executed.has(`${name}:contract`) ? `${name}:contract` : `${name}:expand`;
    };
    // `down --to <file>` reverts the whole file: down to, and including, its expand.
    const toPhase = (name: string) => (direction === 'down' && !known.has(name) && known.has(`${name}:expand`) ? `${name}:expand` : phaseOf(name));
    return {
      ...options,
      ...(options.migrations ? { migrations: options.migrations.map(phaseOf) } : {}),
      ...(typeof options.to === 'string' ? { to: toPhase(options.to) } : {}),
    };
  }

  async status(): Promise<StatusReport> {
    return buildStatus(this);
  }

  /** Every migration file, read and classified; typed files are imported (they are pure descriptions). */
  entries(): Promise<MigrationEntry[]> {
    return listMigrationEntries(this.config);
  }

  /**
   * The list Umzug runs from. Executed entries come first in the order they ran, so `down` reverts the newest
   * phase; then pending expands and plain migrations in file order; then the contracts whose gate is open.
   * A contract whose gate is closed is left out (Umzug would otherwise run it), and reported by `up`.
   */
  private async runnableMigrations(): Promise<RunnableMigration<ZeroDowntimeContext>[]> {
    const entries = await this.entries();
    if (this.offline) return entries.map((e) => this.runnable(e));
    const executed = await this.executedNames();
    const byName = new Map(entries.map((e) => [e.name, e]));
    const executedSet = new Set(executed);
    const ordered: MigrationEntry[] = executed.map((n) => byName.get(n)).filter((e): e is MigrationEntry => e !== undefined);
    const pending = entries.filter((e) => !executedSet.has(e.name));
    ordered.push(...pending.filter((e) => e.phase !== 'contract'));
    this.lastGated = [];
    for (const e of pending.filter((x) => x.phase === 'contract')) {
      if (this.bypassContractGates) {
        ordered.push(e);
        continue;
      }
      const gate = await this.gate(e);
      if (gate.open) ordered.push(e);
      else this.lastGated.push({ name: e.name, gate });
    }
    return ordered.map((e) => this.runnable(e));
  }

  async gate(entry: MigrationEntry): Promise<GateStatus> {
    const expandName = entry.name.replace(/:contract$/, ':expand');
    const executed = new Set(await this.engine.state.executedNames());
    if (!executed.has(expandName)) return { open: false, reasons: ['its expand must have finished in an earlier `up` (the contract runs at the next deploy at the earliest)'], opensAt: null };
    const gate = await this.engine.gate(expandName, entry.changes, {
      safetyWindowMs: this.config.contractAfterMs,
      flagPercent: async (name) => (await this.flags.get(name))?.percent,
      flagFullSince: async (name) => (await this.flags.get(name))?.fullSince ?? null,
    });
    const breaches = await this.monitor.store.listBreaches({ openOnly: true, migration: expandName });
    // contract.requireNoRefs: the application source must not mention what the contract removes. The scan lives in
    // the op layer (file system, TypeScript's parser, loaded only here), the engine's gate stays about the database.
    const refs = this.config.requireNoRefs ? await (await import('./ops/refs.js')).referenceGateReasons(this, entry) : [];
    // contract.requireNoQueries: no statement (not ours) used what the contract removes within the safety window,
    // as pg_stat_statements counts them (lib/ops/queries.ts); 'auto' where it is installed.
    const queries = this.config.requireNoQueries !== false ? await (await import('./ops/queries.js')).queryGateReasons(this, entry) : { reasons: [], opensAt: null };
    if (breaches.length === 0 && refs.length === 0 && queries.reasons.length === 0) return gate;
    const opensAt = queries.opensAt && (!gate.opensAt || queries.opensAt > gate.opensAt) ? queries.opensAt : gate.opensAt;
    return {
      open: false,
      reasons: [...gate.reasons, ...refs, ...queries.reasons, ...breaches.map((b) => `threshold breached (${b.threshold}, ${b.action}): ${b.message}`)],
      opensAt,
    };
  }

  private runnable(e: MigrationEntry): RunnableMigration<ZeroDowntimeContext> {
    const engine = this.engine;
    // State is keyed by the expand's name for both phases of a file.
    const key = e.name.replace(/:(expand|contract)$/, ':expand');
    switch (e.phase) {
      case 'expand':
        return {
          name: e.name,
          path: e.file,
          up: () => {
            if (e.draft !== undefined) {
              throw new ChangeInputError(`${e.file} is a draft (${e.draft}): fill in its TODO placeholders and delete its \`draft\` line, then run \`umzug up\` again. Nothing was run.`);
            }
            return this.monitor.runExpand(key, e.changes, async () => {
              const result = await engine.expand(key, e.changes);
              // The cutover for contract.requireNoQueries: every statement's pg_stat_statements calls now. Best effort:
              // the first look at the contract's gate takes it when this cannot.
              if (this.config.requireNoQueries !== false) {
                await (await import('./ops/queries.js')).takeQueryBaseline(this, key).catch((err: unknown) => {
                  if (this.options.logger) this.zdLogger?.warn({ event: 'query-baseline-failed', name: key, message: (err as Error).message });
                });
              }
              return result;
            });
          },
          down: () => engine.undoExpand(key, e.changes),
        };
      case 'contract':
        return { name: e.name, path: e.file, up: () => engine.contract(key, e.changes), down: () => engine.undoContract(key, e.changes) };
      case 'plain': {
        const mode = this.config.plainMigrations;
        const call = async (fnName: 'up' | 'down', params: { name: string; path?: string; context: ZeroDowntimeContext }) => {
          const mod = await importModule(pathToFileURL(e.file).href);
          const fn = plainFn(mod, fnName);
          if (typeof fn !== 'function') {
            if (fnName === 'down') throw new Error(`${e.name} has no down function: it cannot be reverted. Nothing was changed.`);
            return;
          }
          const config = (mod.config ?? (mod.default as Record<string, unknown> | undefined)?.config) as { transaction?: boolean } | undefined;
          await runPlainLockSafe(
            params.context.knex,
            this.config.lock,
            config?.transaction !== false,
            (k) => (fn as (arg: unknown) => Promise<unknown>)(mode === 'knex' ? k : { ...params, context: { ...params.context, knex: k } }),
            {
              onRetry: (r) => this.zdLogger?.warn({ event: 'plain-migration-retry', name: e.name, ...r }),
              onOutsideTransaction: (reason) => this.zdLogger?.warn({ event: 'plain-migration-outside-transaction', name: e.name, reason, note: 'no lock_timeout retry: it runs as written' }),
            },
          );
        };
        return { name: e.name, path: e.file, up: (p) => call('up', p), down: (p) => call('down', p) };
      }
    }
  }
}

function plainFn(mod: Record<string, unknown>, name: 'up' | 'down'): unknown {
  if (typeof mod[name] === 'function') return mod[name];
  const d = mod.default as Record<string, unknown> | undefined;
  return d && typeof d === 'object' ? d[name] : undefined;
}


/** The entry point for configs: `export default zeroDowntime({ knex: …, migrations: 'migrations/*.ts' })`. */
export function zeroDowntime(config: ZeroDowntimeConfig): ZeroDowntimeUmzug {
  return new ZeroDowntimeUmzug(config);
}

/**
 * The migration files of a project, each classified: a typed file gives an expand and a contract entry, a file with
 * up/down a plain one. Needs only the config, so Knex's migration source lists files before it has a Knex instance.
 */
export async function listMigrationEntries(config: Pick<ResolvedConfig, 'migrations' | 'cwd'>): Promise<MigrationEntry[]> {
  // Changes check their SQL (one expression, one type name) by PostgreSQL's grammar when they are built, on import.
  await loadSqlParser();
  const files = (await glob([...config.migrations], { cwd: config.cwd, absolute: true })).sort((a, b) =>
    path.basename(a).localeCompare(path.basename(b)),
  );
  const out: MigrationEntry[] = [];
  for (const file of files) {
    const mod = await importModule(pathToFileURL(file).href);
    const candidate = mod.default ?? mod;
    const base = path.basename(file);
    // A CommonJS file compiled from ESM nests the export one level deeper (module.exports.default).
    const nested = (candidate as Record<string, unknown> | null)?.default;
    const def = isDefinedMigration(candidate) ? candidate : isDefinedMigration(nested) ? nested : undefined;
    if (def) {
      const draft = typeof def.draft === 'string' ? { draft: def.draft } : {};
      out.push({ name: `${base}:expand`, file, phase: 'expand', changes: def.changes, ...draft });
      out.push({ name: `${base}:contract`, file, phase: 'contract', changes: def.changes, ...draft });
    } else if (typeof plainFn(mod, 'up') === 'function') {
      out.push({ name: base, file, phase: 'plain', changes: [] });
    } else {
      throw new Error(
        `${file}: not a migration. Export default defineMigration({ changes: [...] }) for a phased one, or export up/down functions for a plain one.`,
      );
    }
  }
  return out;
}

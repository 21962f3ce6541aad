import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Knex } from 'knex';
import { resolveConfig, type ZeroDowntimeConfig } from './config.js';
import { importModule } from './engine/import-module.js';
import { plainExports } from './engine/plain-migration.js';
import { listMigrationEntries, zeroDowntime, type ZeroDowntimeUmzug } from './zero-downtime.js';

/**
 * What `zeroDowntimeMigrations()` needs to find the project: the options of `zeroDowntime()` without `knex` (Knex
 * gives its own instance to each migration), and without `plainMigrations` / `knexHistory`: under Knex's migrator
 * plain files are called Knex's way, and Knex records every file in its own migrations table itself.
 */
export type ZeroDowntimeMigrationsOptions = Omit<ZeroDowntimeConfig, 'knex' | 'plainMigrations' | 'knexHistory'>;

/** One migration file as Knex's migrator sees it: named by the file, typed (expand/contract) or plain. */
export interface ZeroDowntimeKnexMigration {
  /** The file's name, as Knex records it in its migrations table. */
  readonly name: string;
  readonly file: string;
  readonly typed: boolean;
}

/** What Knex runs for one file. `config.transaction` is false for a typed file: the engine runs its own transactions. */
export interface ZeroDowntimeKnexMigrationModule {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
  readonly config?: { readonly transaction?: boolean };
}

/** A Knex `migrationSource` (knexfile `migrations.migrationSource`) over this package's migration files. */
export interface ZeroDowntimeMigrationSource extends Knex.MigrationSource<ZeroDowntimeKnexMigration> {
  getMigrations(loadExtensions?: readonly string[]): Promise<ZeroDowntimeKnexMigration[]>;
  getMigrationName(migration: ZeroDowntimeKnexMigration): string;
  getMigration(migration: ZeroDowntimeKnexMigration): Promise<ZeroDowntimeKnexMigrationModule>;
  /** The options it was made with, for a tool that builds the same project from the knexfile (the `umzug` bin). */
  readonly options: ZeroDowntimeMigrationsOptions;
}

/**
 * Lets `knex migrate:latest` / `migrate:up` / `migrate:rollback` / `migrate:down` run this package's migrations:
 *
 * ```js
 * // knexfile.js
 * const { zeroDowntimeMigrations } = require('umzug-zero-downtime');
 * module.exports = { client: 'pg', connection: process.env.DATABASE_URL,
 *   migrations: { migrationSource: zeroDowntimeMigrations({ migrations: 'migrations/*.js' }) } };
 * ```
 *
 * Each file appears to Knex under its own name. A typed file's `up` runs its expand (backfill and verify included)
 * through the engine, on Knex's pool, outside Knex's transaction (the engine keeps its lock timeouts, batches and
 * migration lock); its `down` reverts its contract if that ran, then its expand. A plain file is called as Knex
 * calls it (`exports.up = (knex) => …`, in Knex's transaction unless it exports `config.transaction = false`).
 * Knex records each file in its migrations table; the engine records a typed file's expand in its own, and
 * `umzug status` / `pending` (which read both, see lib/postgres/knex-history.ts) agree with Knex afterwards.
 * Contracts are not Knex migrations: they run with `npx umzug up` once their gate is open.
 */
export function zeroDowntimeMigrations(options: ZeroDowntimeMigrationsOptions = {}): ZeroDowntimeMigrationSource {
  // Checked now, when the knexfile loads, with the same schema as zeroDowntime() (the placeholder stands for the
  // Knex instance each migration is given later; it is never connected).
  const config = resolveConfig({ ...options, knex: { client: 'pg' } });
  const project = (knex: Knex): ZeroDowntimeUmzug => {
    if (knex.isTransaction) {
      throw new Error(
        'a typed migration runs its own transactions (lock timeouts, batches, its migration lock) and cannot run inside a Knex transaction: ' +
          'run the migrator on a Knex instance, not on a transaction. Nothing was run.',
      );
    }
    return zeroDowntime({ ...options, cwd: config.cwd, knex, plainMigrations: 'knex', knexHistory: false });
  };
  const withProject = async (knex: Knex, fn: (umzug: ZeroDowntimeUmzug) => Promise<void>): Promise<void> => {
    const umzug = project(knex);
    try {
      await fn(umzug);
    } finally {
      await umzug.close();
    }
  };

  return {
    options,
    async getMigrations() {
      const seen = new Set<string>();
      const out: ZeroDowntimeKnexMigration[] = [];
      for (const e of await listMigrationEntries(config)) {
        const name = path.basename(e.file);
        if (seen.has(name)) continue;
        seen.add(name);
        out.push({ name, file: e.file, typed: e.phase !== 'plain' });
      }
      return out;
    },
    getMigrationName: (migration) => migration.name,
    async getMigration(migration) {
      if (!migration.typed) return plainMigration(migration);
      const expand = `${migration.name}:expand`;
      const contract = `${migration.name}:contract`;
      return {
        config: { transaction: false },
        // Skipped when the engine has it as executed already (`umzug up` ran it): Knex then only records the file.
        up: (knex) => withProject(knex, async (umzug) => void (await umzug.up({ migrations: [expand], rerun: 'SKIP' }))),
        down: (knex) =>
          withProject(knex, async (umzug) => {
            const state = umzug.engine.state;
            // An expand that failed midway counts too: its down removes what it had built.
            const applied = new Set([...(await state.executedNames()), ...(await state.halfAppliedExpands())]);
            const phases = [contract, expand].filter((n) => applied.has(n));
            if (phases.length > 0) await umzug.down({ migrations: phases });
          }),
      };
    },
  };
}

type MigrationFn = (knex: Knex) => unknown;

/** A plain file, as Knex's own file source gives it: its up/down called with Knex's instance (or transaction). */
async function plainMigration(migration: ZeroDowntimeKnexMigration): Promise<ZeroDowntimeKnexMigrationModule> {
  const mod = await importModule(pathToFileURL(migration.file).href);
  const holder = plainExports(mod);
  const up = holder.up as MigrationFn;
  const down = typeof holder.down === 'function' ? (holder.down as MigrationFn) : undefined;
  const config = (holder.config ?? undefined) as { readonly transaction?: boolean } | undefined;
  return {
    ...(config && typeof config === 'object' ? { config } : {}),
    up: async (knex) => void (await up.call(holder, knex)),
    down: async (knex) => {
      if (!down) throw new Error(`${migration.name} has no down function: it cannot be reverted. Nothing was changed.`);
      await down.call(holder, knex);
    },
  };
}

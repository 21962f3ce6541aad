import type { Knex } from 'knex';
import type { Engine } from '../runner.js';
import type { Db } from '../db/db.js';
import type { Change } from '../migration.js';
import { Monitor, type MonitorSettings } from './monitor.js';
import { MonitorStore } from './store.js';

/** The logger methods the monitor calls (a ZeroDowntimeLogger has them). */
export interface MonitorLogger {
  readonly info?: (message: Record<string, unknown>) => void;
  readonly warn?: (message: Record<string, unknown>) => void;
}

/** What the monitor needs of ZeroDowntimeUmzug, structurally: this folder imports nothing of the layers above it. */
export interface MonitoredUmzug {
  readonly knex: Knex;
  readonly db: Db;
  readonly engine: Engine;
  readonly config: { readonly stateSchema: string; readonly monitor: MonitorSettings };
  entries(): Promise<readonly { readonly name: string; readonly phase: string; readonly changes: readonly Change[] }[]>;
  on(event: 'afterCommand', listener: (e: { command: string }) => Promise<void> | void): unknown;
}

/**
 * The monitor of a ZeroDowntimeUmzug: watches its engine, and stops its canaries when a command ends. `logger` is
 * asked at each event, not once: `up --json` mutes the logger for the command, and its stdout must hold the JSON
 * document alone (a breach logged there made it unparseable).
 */
export function createMonitor(umzug: MonitoredUmzug, logger: () => MonitorLogger | null): Monitor {
  const monitor = new Monitor(umzug.knex, new MonitorStore(umzug.db, umzug.config.stateSchema), umzug.config.monitor, undefined, (m) => {
    const l = logger();
    (m.event === 'threshold-breached' || m.event === 'auto-rollback' ? l?.warn : l?.info)?.(m);
  });
  monitor.attach(umzug.engine, async (migration) => (await umzug.entries()).find((e) => e.name === migration && e.phase === 'expand')?.changes ?? null);
  umzug.on('afterCommand', () => monitor.stopWatches());
  return monitor;
}

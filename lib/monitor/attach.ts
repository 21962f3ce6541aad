import type { Knex } from 'knex';
import type { ResolvedConfig, ZeroDowntimeLogger } from '../config.js';
import type { Engine } from '../engine/runner.js';
import type { Db } from '../db/db.js';
import type { Change } from '../migration.js';
import { Monitor } from './monitor.js';
import { MonitorStore } from './store.js';

/** What the monitor needs of ZeroDowntimeUmzug (a structural type: no import cycle). */
export interface MonitoredUmzug {
  readonly knex: Knex;
  readonly db: Db;
  readonly engine: Engine;
  readonly config: ResolvedConfig;
  entries(): Promise<readonly { readonly name: string; readonly phase: string; readonly changes: readonly Change[] }[]>;
  on(event: 'afterCommand', listener: (e: { command: string }) => Promise<void> | void): unknown;
}

/**
 * The monitor of a ZeroDowntimeUmzug: watches its engine, and stops its canaries when a command ends. `logger` is
 * asked at each event, not once: `up --json` mutes the logger for the command, and its stdout must hold the JSON
 * document alone (a breach logged there made it unparseable).
 */
export function createMonitor(umzug: MonitoredUmzug, logger: () => ZeroDowntimeLogger | null): Monitor {
  const monitor = new Monitor(umzug.knex, new MonitorStore(umzug.db, umzug.config.stateSchema), umzug.config.monitor, undefined, (m) => {
    const l = logger();
    (m.event === 'threshold-breached' || m.event === 'auto-rollback' ? l?.warn : l?.info)?.(m);
  });
  monitor.attach(umzug.engine, async (migration) => (await umzug.entries()).find((e) => e.name === migration && e.phase === 'expand')?.changes ?? null);
  umzug.on('afterCommand', () => monitor.stopWatches());
  return monitor;
}

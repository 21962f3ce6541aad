import { type ReportData } from '../monitor/report.js';
import { MonitorStore } from '../monitor/store.js';
import type { Project } from './project.js';

/** Samples, breaches and flag changes of the last `since` (all of them when null), from the state schema. */
export async function collectReport(umzug: Project, opts: { since?: Date | null; migration?: string } = {}): Promise<ReportData> {
  const store = new MonitorStore(umzug.db, umzug.config.stateSchema);
  const migration = opts.migration ? (opts.migration.endsWith(':expand') ? opts.migration : `${opts.migration}:expand`) : undefined;
  const filter = { ...(opts.since ? { since: opts.since } : {}), ...(migration ? { migration } : {}) };
  return {
    generatedAt: new Date(),
    samples: await store.listSamples(filter),
    breaches: await store.listBreaches(filter),
    flagHistory: await umzug.flags.history(undefined, opts.since ?? undefined),
    querySamples: await store.listQuerySamples(filter),
  };
}

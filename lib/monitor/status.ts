import type { Db } from '../db/db.js';
import { FlagStore } from '../flags/store.js';
import { ident } from '../postgres/identifiers.js';
import { MonitorStore, type BreachRecord, type MonitorSample } from './store.js';
import { checkStall, type ResolvedThresholds } from './thresholds.js';
import { pgStatStatements } from '../postgres/stat-statements.js';
import type { RelativeSettings } from './relative.js';

export interface BreachJson {
  readonly migration: string;
  readonly change: number | null;
  readonly threshold: string;
  readonly action: string;
  readonly message: string;
  readonly value: number;
  readonly limit: number;
  readonly at: string;
  readonly resolvedAt: string | null;
  readonly resolution: string | null;
}

export interface MonitorStatusReport {
  /** red while any breach is open. */
  readonly health: 'green' | 'red';
  readonly openBreaches: readonly BreachJson[];
  /** Breaches resolved in the last 7 days, newest first (at most 5). */
  readonly recentBreaches: readonly BreachJson[];
  /** The latest figures of each backfill the monitor watched. */
  readonly backfills: readonly (Omit<MonitorSample, 'at'> & { readonly at: string })[];
  readonly flags: readonly { readonly name: string; readonly percent: number; readonly fullSince: string | null }[];
  /**
   * The relative triggers: whether the application's query latency can be watched (pg_stat_statements readable here)
   * and where its error rate comes from; absent when monitor.relative is false.
   */
  readonly relative?: { readonly queryLatency: boolean; readonly errorRate: 'pg_stat_database' | 'monitor.errorRate'; readonly note?: string };
}

const toJson = (b: BreachRecord): BreachJson => ({
  migration: b.migration,
  change: b.changeIndex,
  threshold: b.threshold,
  action: b.action,
  message: b.message,
  value: b.value,
  limit: b.limit,
  at: b.at.toISOString(),
  resolvedAt: b.resolvedAt?.toISOString() ?? null,
  resolution: b.resolution,
});

export async function readMonitorStatus(umzug: {
  readonly db: Db;
  readonly config: { readonly stateSchema: string; readonly monitor: { readonly thresholds: ResolvedThresholds; readonly relative?: RelativeSettings | false } };
}): Promise<MonitorStatusReport> {
  const store = new MonitorStore(umzug.db, umzug.config.stateSchema);
  const recorded = (await store.listBreaches({ openOnly: true, limit: 50 })).map(toJson);
  const stalled = (await stalledBackfills(umzug)).filter((s) => !recorded.some((b) => b.threshold === s.threshold && b.migration === s.migration && b.change === s.change));
  const open = [...recorded, ...stalled];
  const recent = (await store.listBreaches({ since: new Date(Date.now() - 7 * 86_400_000), limit: 50 })).filter((b) => b.resolvedAt !== null).slice(0, 5);
  const samples = await store.latestSamples();
  const flags = await new FlagStore(umzug.db, umzug.config.stateSchema).list();
  const r = umzug.config.monitor.relative;
  let relative: MonitorStatusReport['relative'];
  if (r) {
    const pgss = await pgStatStatements(umzug.db).catch((e: unknown) => ({ ok: false as const, problem: (e as Error).message }));
    relative = {
      queryLatency: pgss.ok,
      errorRate: r.errorRate ? 'monitor.errorRate' : 'pg_stat_database',
      ...(pgss.ok ? {} : { note: `the query-latency trigger is off: ${pgss.problem}` }),
    };
  }
  return {
    health: open.length > 0 ? 'red' : 'green',
    openBreaches: open,
    recentBreaches: recent.map(toJson),
    backfills: samples.map((s) => ({ ...s, at: s.at.toISOString() })),
    flags: flags.map((f) => ({ name: f.name, percent: f.percent, fullSince: f.fullSince?.toISOString() ?? null })),
    ...(relative ? { relative } : {}),
  };
}

/**
 * Unfinished backfills whose progress row has not moved for longer than thresholds.noProgressFor. Read from the
 * backfill's own progress table, so a backfill whose process died (and so cannot report anything) still turns red.
 */
async function stalledBackfills(umzug: Parameters<typeof readMonitorStatus>[0]): Promise<BreachJson[]> {
  const t = umzug.config.monitor.thresholds;
  const table = `${ident(umzug.config.stateSchema)}.${ident('backfills')}`;
  let rows: { migration: string; change_index: number; rows_done: string; total_estimate: string | null; updated_at: Date; now: Date }[];
  try {
    rows = (
      await umzug.db.query<{ migration: string; change_index: number; rows_done: string; total_estimate: string | null; updated_at: Date; now: Date }>(
        `SELECT migration, change_index, rows_done, total_estimate, updated_at, now() AS now FROM ${table} WHERE NOT done AND phase = 'expand'`,
      )
    ).rows;
  } catch {
    return []; // no backfill has ever run here
  }
  const out: BreachJson[] = [];
  for (const r of rows) {
    const f = checkStall(
      {
        lastProgressAt: r.updated_at.getTime(),
        now: r.now.getTime(),
        rowsDone: Number(r.rows_done),
        totalEstimate: Number(r.total_estimate ?? 0),
        what: `${r.migration} change #${r.change_index + 1}`,
      },
      t,
    );
    if (!f) continue;
    out.push({ migration: r.migration, change: r.change_index, threshold: f.threshold, action: 'reported', message: f.message, value: f.value, limit: f.limit, at: r.now.toISOString(), resolvedAt: null, resolution: null });
  }
  return out;
}

const fmtMs = (x: number | null) => (x === null ? '–' : `${x < 10 ? x.toFixed(2) : x.toFixed(0)} ms`);

export function formatMonitorStatus(m: MonitorStatusReport, color = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR): string[] {
  const paint = (code: number, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const lines: string[] = [];
  lines.push(
    m.health === 'red'
      ? `Health: ${paint(31, 'RED')} — ${m.openBreaches.length} threshold breach${m.openBreaches.length === 1 ? '' : 'es'} open`
      : `Health: ${paint(32, 'green')} — no threshold breached`,
  );
  for (const b of m.openBreaches) {
    lines.push(`  ${paint(31, '✗')} ${b.threshold} (${b.action}) ${b.migration}${b.change === null ? '' : ` #${b.change + 1}`} at ${b.at}:`);
    lines.push(`      ${b.message}`);
  }
  for (const b of m.recentBreaches) lines.push(`  resolved: ${b.threshold} ${b.migration} at ${b.at} (${b.action}) — ${b.resolution ?? ''}`);
  for (const s of m.backfills) {
    const pct = s.totalEstimate > 0 ? ` ${Math.min(100, (100 * s.rowsDone) / s.totalEstimate).toFixed(1)} %` : '';
    const rate = s.rowsPerSecond === null ? '' : `, ${Math.round(s.rowsPerSecond)} rows/s`;
    const canary = s.canaryP99Ms === null ? '' : `, canary p50 ${fmtMs(s.canaryP50Ms)} p99 ${fmtMs(s.canaryP99Ms)} (baseline ${fmtMs(s.canaryBaselineMs)}, limit ${fmtMs(s.canaryLimitMs)})`;
    lines.push(`  monitor ${s.migration.replace(/:expand$/, '')} #${s.changeIndex + 1}: ${s.rowsDone} rows${pct}${rate}${canary}${s.paused ? ', PAUSED' : ''} at ${s.at}`);
  }
  if (m.relative) {
    lines.push(
      `  relative triggers: query latency ${m.relative.queryLatency ? 'on (pg_stat_statements)' : 'OFF'}, error rate from ${m.relative.errorRate}` +
        (m.relative.note ? ` — ${m.relative.note}` : ''),
    );
  }
  if (m.flags.length > 0) lines.push(`Flags: ${m.flags.map((f) => `${f.name} ${f.percent} %`).join(', ')}`);
  return lines;
}

import type { FlagChange } from '../flags/store.js';
import type { BreachRecord, MonitorSample, QuerySample } from './store.js';

export interface ReportData {
  readonly generatedAt: Date;
  readonly samples: readonly MonitorSample[];
  readonly breaches: readonly BreachRecord[];
  readonly flagHistory: readonly FlagChange[];
  /** The relative triggers' windows (the application's top queries and error ratio against their baselines). */
  readonly querySamples?: readonly QuerySample[];
}

interface Series {
  readonly name: string;
  readonly color: string;
  readonly points: readonly (readonly [number, number])[];
  readonly dash?: boolean;
  readonly step?: boolean;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function timeLabel(t: number, span: number): string {
  const iso = new Date(t).toISOString();
  return span > 86_400_000 ? iso.slice(5, 16).replace('T', ' ') : span > 600_000 ? iso.slice(11, 16) : iso.slice(11, 19);
}

/** One line chart as inline SVG: time on x, value on y; red vertical lines for breaches, grey bands for pauses. */
export function lineChart(o: {
  title: string;
  yLabel: string;
  series: readonly Series[];
  yMax?: number;
  markers?: readonly { t: number; label: string }[];
  bands?: readonly (readonly [number, number])[];
  t0: number;
  t1: number;
}): string {
  const W = 860;
  const H = 260;
  const L = 64;
  const R = 16;
  const T = 28;
  const B = 36;
  const all = o.series.flatMap((s) => s.points.map((p) => p[1]));
  const yMax = o.yMax ?? niceMax(Math.max(0, ...all) * 1.1);
  const span = Math.max(1, o.t1 - o.t0);
  const x = (t: number) => L + ((t - o.t0) / span) * (W - L - R);
  const y = (v: number) => T + (1 - Math.min(1, Math.max(0, v / yMax))) * (H - T - B);
  const parts: string[] = [];
  parts.push(`<text x="${L}" y="18" class="title">${esc(o.title)}</text>`);
  for (const [a, b] of o.bands ?? []) parts.push(`<rect x="${x(a).toFixed(1)}" y="${T}" width="${Math.max(1, x(b) - x(a)).toFixed(1)}" height="${H - T - B}" fill="#ddd"><title>paused</title></rect>`);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" class="tick">${esc(fmt(v))}</text>`);
  }
  for (let i = 0; i <= 4; i++) {
    const t = o.t0 + (span * i) / 4;
    parts.push(`<text x="${x(t).toFixed(1)}" y="${H - B + 16}" text-anchor="middle" class="tick">${esc(timeLabel(t, span))}</text>`);
  }
  parts.push(`<text x="14" y="${(T + (H - T - B) / 2).toFixed(0)}" transform="rotate(-90 14 ${(T + (H - T - B) / 2).toFixed(0)})" text-anchor="middle" class="tick">${esc(o.yLabel)}</text>`);
  parts.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#999"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#999"/>`);
  for (const s of o.series) {
    if (s.points.length === 0) continue;
    let d = '';
    s.points.forEach(([t, v], i) => {
      if (i === 0) d += `M${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      else if (s.step) d += `H${x(t).toFixed(1)}V${y(v).toFixed(1)}`;
      else d += `L${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    });
    if (s.step) d += `H${x(o.t1).toFixed(1)}`;
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"${s.dash ? ' stroke-dasharray="6 4"' : ''}><title>${esc(s.name)}</title></path>`);
  }
  for (const m of o.markers ?? []) {
    parts.push(`<line x1="${x(m.t).toFixed(1)}" x2="${x(m.t).toFixed(1)}" y1="${T}" y2="${H - B}" stroke="#d62728" stroke-width="1.5"><title>${esc(m.label)}</title></line>`);
  }
  const legend = o.series
    .map((s, i) => `<g transform="translate(${L + 8 + i * 190},${T + 4})"><line x1="0" x2="18" y1="6" y2="6" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="6 4"' : ''}/><text x="24" y="10" class="tick">${esc(s.name)}</text></g>`)
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}">${parts.join('')}${legend}</svg>`;
}

function fmt(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return `${(v / 1000).toFixed(v >= 10_000 ? 0 : 1)}k`;
  return Math.abs(v) < 10 ? v.toFixed(2).replace(/\.?0+$/, '') : v.toFixed(0);
}

/** Paused stretches of one backfill, from consecutive samples. */
function pauseBands(samples: readonly MonitorSample[]): [number, number][] {
  const out: [number, number][] = [];
  let start: number | null = null;
  for (const s of samples) {
    const t = s.at.getTime();
    if (s.paused && start === null) start = t;
    if (!s.paused && start !== null) {
      out.push([start, t]);
      start = null;
    }
  }
  if (start !== null && samples.length > 0) out.push([start, samples[samples.length - 1]!.at.getTime()]);
  return out;
}

const oneLine = (q: string, max = 48) => {
  const s = q.replace(/\s+/g, ' ').trim();
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
};

/**
 * The relative triggers' plots: each watched query's mean per call ÷ its baseline, window by window (the queries
 * that crossed their limit, or else the five that came closest), against the limit; and the application's error
 * ratio against its baseline and limit. The breaches are the same red lines (hover: the explanation).
 */
function relativeCharts(qs: readonly QuerySample[], t0: number, t1: number, markers: readonly { t: number; label: string }[], bands: readonly (readonly [number, number])[]): string[] {
  const out: string[] = [];
  const byQuery = new Map<string, QuerySample[]>();
  for (const q of qs) {
    if (q.kind !== 'query' || q.queryid === null || !(q.baseline > 0)) continue;
    if (!byQuery.has(q.queryid)) byQuery.set(q.queryid, []);
    byQuery.get(q.queryid)!.push(q);
  }
  if (byQuery.size > 0) {
    const worst = (xs: QuerySample[]) => Math.max(...xs.map((x) => x.value / x.limit));
    const ranked = [...byQuery.entries()].sort((a, b) => worst(b[1]) - worst(a[1]));
    const over = ranked.filter(([, xs]) => worst(xs) > 1);
    const shown = (over.length > 0 ? over : ranked).slice(0, 5);
    const factor = Math.min(...shown.flatMap(([, xs]) => xs.map((x) => x.limit / x.baseline)));
    const series: Series[] = shown.map(([id, xs], i) => ({
      name: `${oneLine(xs[0]!.query ?? id)} (${id})`,
      color: COLORS[(i + 1) % COLORS.length]!,
      points: xs.map((x) => [x.at.getTime(), x.value / x.baseline] as const),
    }));
    series.push({ name: `limit (${factor.toFixed(2)}×, or baseline + the minimum increase)`, color: '#d62728', dash: true, points: [[t0, factor], [t1, factor]] });
    out.push(lineChart({ title: 'Application queries: mean latency ÷ baseline (pg_stat_statements; the mean stands in for the p99)', yLabel: '× baseline', t0, t1, markers, bands, series }));
  }
  const errs = qs.filter((q) => q.kind === 'errors');
  if (errs.length > 0) {
    const pts = (f: (q: QuerySample) => number) => errs.map((q) => [q.at.getTime(), 100 * f(q)] as const);
    out.push(
      lineChart({
        title: "Application error rate vs its baseline",
        yLabel: '% of transactions',
        t0,
        t1,
        markers,
        bands,
        series: [
          { name: 'error rate', color: COLORS[1]!, points: pts((q) => q.value) },
          { name: 'baseline', color: '#555', dash: true, points: pts((q) => q.baseline) },
          { name: 'limit', color: '#d62728', dash: true, points: pts((q) => q.limit) },
        ],
      }),
    );
  }
  return out;
}

/**
 * A self-contained HTML page (inline SVG, inline CSS, no script, nothing fetched): for each backfill, progress and
 * rate over time and the canary against its baseline and limit; the flags' rollout over time; every breach with
 * its explanation.
 */
export function renderHtml(data: ReportData): string {
  const groups = new Map<string, MonitorSample[]>();
  for (const s of data.samples) {
    const k = `${s.migration}#${s.changeIndex}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(s);
  }
  const sections: string[] = [];
  for (const [k, samples] of groups) {
    const [migration] = k.split('#');
    const changeIndex = samples[0]!.changeIndex;
    const t0 = samples[0]!.at.getTime();
    const t1 = Math.max(t0 + 1000, samples[samples.length - 1]!.at.getTime());
    const breaches = data.breaches.filter((b) => b.migration === migration && (b.changeIndex === null || b.changeIndex === changeIndex));
    const markers = breaches.map((b) => ({ t: Math.min(t1, Math.max(t0, b.at.getTime())), label: `${b.threshold}: ${b.message}` }));
    const bands = pauseBands(samples);
    const pts = (f: (s: MonitorSample) => number | null) =>
      samples.flatMap((s) => {
        const v = f(s);
        return v === null || !Number.isFinite(v) ? [] : [[s.at.getTime(), v] as const];
      });
    const title = `${migration!.replace(/:expand$/, '')} — change #${changeIndex + 1}`;
    const charts = [
      lineChart({ title: 'Backfill progress', yLabel: '% of rows', yMax: 100, t0, t1, markers, bands, series: [{ name: 'progress %', color: COLORS[0]!, points: pts((s) => (s.totalEstimate > 0 ? Math.min(100, (100 * s.rowsDone) / s.totalEstimate) : null)) }] }),
      lineChart({ title: 'Backfill rate', yLabel: 'rows/s', t0, t1, markers, bands, series: [{ name: 'rows/s', color: COLORS[2]!, points: pts((s) => s.rowsPerSecond) }] }),
    ];
    if (samples.some((s) => s.canaryP99Ms !== null)) {
      charts.push(
        lineChart({
          title: 'Canary latency vs baseline',
          yLabel: 'ms',
          t0,
          t1,
          markers,
          bands,
          series: [
            { name: 'canary p99', color: COLORS[1]!, points: pts((s) => s.canaryP99Ms) },
            { name: 'canary p50', color: COLORS[0]!, points: pts((s) => s.canaryP50Ms) },
            { name: 'baseline p99', color: '#555', dash: true, points: pts((s) => s.canaryBaselineMs) },
            { name: 'limit', color: '#d62728', dash: true, points: pts((s) => s.canaryLimitMs) },
          ],
        }),
      );
    }
    charts.push(...relativeCharts((data.querySamples ?? []).filter((q) => q.migration === migration && q.changeIndex === changeIndex), t0, t1, markers, bands));
    const last = samples[samples.length - 1]!;
    sections.push(
      `<section><h2>${esc(title)}</h2><p>${last.rowsDone} rows walked of about ${last.totalEstimate}; ${samples.length} samples from ${esc(samples[0]!.at.toISOString())} to ${esc(last.at.toISOString())}.` +
        `${bands.length ? ` Paused ${bands.length} time(s) (grey).` : ''}${markers.length ? ' Red lines: threshold breaches (hover for the reason).' : ''}</p>${charts.join('\n')}</section>`,
    );
  }
  if (data.flagHistory.length > 0) {
    const byFlag = new Map<string, FlagChange[]>();
    for (const h of data.flagHistory) {
      if (!byFlag.has(h.name)) byFlag.set(h.name, []);
      byFlag.get(h.name)!.push(h);
    }
    const t0 = Math.min(...data.flagHistory.map((h) => h.at.getTime()));
    const t1 = Math.max(t0 + 1000, data.generatedAt.getTime());
    const series = [...byFlag.entries()].map(([name, hs], i) => ({ name, color: COLORS[i % COLORS.length]!, step: true, points: hs.map((h) => [h.at.getTime(), h.percent] as const) }));
    sections.push(`<section><h2>Read-cutover flags</h2>${lineChart({ title: 'Rollout over time', yLabel: '% of keys', yMax: 100, t0, t1, series })}</section>`);
  }
  const rows = data.breaches
    .map(
      (b) =>
        `<tr class="${b.resolvedAt ? 'resolved' : 'open'}"><td>${esc(b.at.toISOString())}</td><td>${esc(b.migration.replace(/:expand$/, ''))}${b.changeIndex === null ? '' : ` #${b.changeIndex + 1}`}</td>` +
        `<td>${esc(b.threshold)}</td><td>${esc(b.action)}</td><td>${esc(b.message)}</td><td>${b.resolvedAt ? esc(`${b.resolvedAt.toISOString()}: ${b.resolution ?? ''}`) : '<b>open</b>'}</td></tr>`,
    )
    .join('');
  const open = data.breaches.filter((b) => !b.resolvedAt).length;
  const health = open > 0 ? `<p class="red">RED: ${open} threshold breach(es) open.</p>` : '<p class="green">Green: no threshold breach open.</p>';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>umzug-zero-downtime report</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:920px}h1{font-size:20px}h2{font-size:16px;margin-top:28px}
svg{display:block;margin:8px 0;background:#fff;border:1px solid #eee}.title{font-weight:600;font-size:13px}.tick{font-size:11px;fill:#555}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left;font-size:12px}
tr.open td{background:#fdecea}.red{color:#b71c1c;font-weight:600}.green{color:#1b5e20;font-weight:600}</style></head>
<body><h1>umzug-zero-downtime — migration report</h1><p>Generated ${esc(data.generatedAt.toISOString())}.</p>${health}
${sections.join('\n') || '<p>No backfill has been watched in this period.</p>'}
<section><h2>Threshold breaches</h2>${rows ? `<table><tr><th>at</th><th>migration</th><th>threshold</th><th>action</th><th>what happened</th><th>resolved</th></tr>${rows}</table>` : '<p>None.</p>'}</section>
</body></html>
`;
}

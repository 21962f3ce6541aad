// umzug-zero-downtime/monitor: the monitor, its Prometheus metrics and the HTML report.
export { Monitor, ThresholdBreachedError, type MonitorEvent, type MonitorSettings, type OpenBreach } from '../monitor/monitor.js';
export { MonitorMetrics } from '../monitor/metrics.js';
export type { ThresholdName, Finding } from '../monitor/thresholds.js';
export type { MonitorConfig, ThresholdsConfig } from '../config/monitor.js';
export type { BreachRecord, MonitorSample, BreachAction } from '../monitor/store.js';
export type { MonitorStatusReport } from '../monitor/status.js';
export { renderHtml, type ReportData } from '../monitor/report.js';

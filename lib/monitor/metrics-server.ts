import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';

export interface MetricsServer {
  /** Where Prometheus scrapes, e.g. http://127.0.0.1:9464/metrics. */
  readonly url: string;
  close(): Promise<void>;
}

export class MetricsServerError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'metrics-server';
  override name = 'MetricsServerError';
}

/**
 * Serves a registry on GET /metrics while a long command runs — a backfill in a deploy job lives minutes to hours,
 * longer than a Pushgateway push is worth — and nothing else. Bound to loopback unless a host is given.
 */
export async function serveMetrics(registry: Registry, portGiven: number | string, host = '127.0.0.1'): Promise<MetricsServer> {
  // A string is the command line's text: digits only, so "80x" or "1e3" is not silently read as a number.
  const port = typeof portGiven === 'number' ? portGiven : /^\d{1,5}$/.test(portGiven) ? Number(portGiven) : Number.NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new MetricsServerError(`--metrics-port must be a port number from 0 to 65535, not ${JSON.stringify(portGiven)}; nothing was run.`);
  }
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Only GET /metrics is served here.\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics failed: ${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new MetricsServerError(`cannot serve metrics on ${host}:${port} (${err.code ?? err.message}); nothing was run. Pick a free port, or 0 for any.`)),
    );
    server.listen(port, host, () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${bound}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

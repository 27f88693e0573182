import { createServer, type Server } from 'node:http';
import { listen } from '../shared/listen.js';
import type { ProxyMetrics } from './metrics.js';

/** The admin listener: `GET /metrics` (Prometheus) and `GET /health`, apart from the proxied traffic. */
export async function startAdmin(
  address: { host: string; port: number },
  metrics: ProxyMetrics,
  health: () => object,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
      return;
    }
    if (req.url === '/health') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', ...health() }));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const url = await listen(server, address.host, address.port, {
    port: '--admin-port or "admin"',
    host: '"admin"',
  });
  return { server, url };
}

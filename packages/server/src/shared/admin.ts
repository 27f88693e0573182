import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { listen } from './listen.js';

/** The admin listener: `GET /metrics` (Prometheus) and `GET /health`, apart from the traffic it serves. */
export async function startAdmin(
  address: { host: string; port: number },
  metrics: { readonly registry: Registry },
  health: () => object,
  /** How the command's flags and settings name the admin port and host, for a port in use. */
  names: { port: string; host: string } = { port: '--admin-port or "admin"', host: '"admin"' },
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
  const url = await listen(server, address.host, address.port, names);
  return { server, url };
}

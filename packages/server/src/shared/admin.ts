import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { listen } from './listen.js';

/** The admin listener: `GET /metrics` (Prometheus) and `GET /health`, apart from the traffic it serves. */
export async function startAdmin(
  address: { host: string; port: number },
  metrics: { readonly registry: Registry },
  health: () => object,
  /** How the command's flags and settings name the admin port and host, for a port in use. */
  names: { port: string; host: string } = { port: '--admin-port or "admin"', host: '"admin"' },
  /** Everything else the listener answers (the admin API and the dashboard); it calls `next` for a 404. */
  more?: (req: IncomingMessage, res: ServerResponse, next: () => void) => void,
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
    const notFound = () => {
      res.writeHead(404);
      res.end();
    };
    if (more === undefined) notFound();
    else more(req, res, notFound);
  });
  const url = await listen(server, address.host, address.port, names);
  return { server, url };
}

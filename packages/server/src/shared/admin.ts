import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { listen } from './listen.js';

/** Answers one path of the admin listener. */
export type AdminHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The admin listener's routes, by exact path; a command or a later feature adds its own. */
export type AdminRoutes = ReadonlyMap<string, AdminHandler>;

/** `GET /metrics`: the registry in Prometheus's text format. */
export function metricsRoute(registry: Registry): AdminHandler {
  return (_req, res) => {
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': registry.contentType });
        res.end(text);
      },
      () => {
        res.writeHead(500);
        res.end();
      },
    );
  };
}

/** `GET /health`: `{ "status": "ok" }` and what the command adds. */
export function healthRoute(health: () => object): AdminHandler {
  return (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', ...health() }));
  };
}

/** The admin listener's server, apart from the traffic the command serves: its routes, and 404 for the rest. */
export function adminServer(
  routes: AdminRoutes,
  /** Everything the route table does not name (the admin API and the dashboard); it calls `next` for a 404. */
  more?: (req: IncomingMessage, res: ServerResponse, next: () => void) => void,
): Server {
  return createServer((req, res) => {
    const url = req.url ?? '';
    const query = url.indexOf('?');
    const route = routes.get(query === -1 ? url : url.slice(0, query));
    if (route !== undefined) return route(req, res);
    const notFound = () => {
      res.writeHead(404);
      res.end();
    };
    if (more === undefined) notFound();
    else more(req, res, notFound);
  });
}

/** The admin listener, listening on `address`. */
export async function startAdmin(
  address: { host: string; port: number },
  routes: AdminRoutes,
  /** How the command's flags and settings name the admin port and host, for a port in use. */
  names: { port: string; host: string },
  more?: (req: IncomingMessage, res: ServerResponse, next: () => void) => void,
): Promise<{ server: Server; url: string }> {
  const server = adminServer(routes, more);
  const url = await listen(server, address.host, address.port, names);
  return { server, url };
}

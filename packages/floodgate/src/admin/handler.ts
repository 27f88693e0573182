import type { Shedder } from '../limiter/shedder.js';
import { isLoopback, isLoopbackHost, tokenChecker } from './access.js';
import { act } from './actions.js';
import { type Answer, send } from './answer.js';
import { serveAsset } from './assets.js';
import { type AdminHandler, type AdminOptions, checkOptions, limitersOf } from './options.js';
import { read } from './reads.js';
import { routeOf } from './routes.js';
import { Sampler } from './sampler.js';

export type { AdminAction, AdminHandler, AdminOptions, LimiterSource } from './options.js';

/**
 * The admin API and the dashboard as a `node:http` handler (see `AdminHandler`): who may ask what (reads
 * from loopback, the rest with the token), then the page's files, the reads and the actions.
 */
export function adminHandler(options: AdminOptions): AdminHandler {
  checkOptions(options);
  const { limiters, token, base = '', labels, onAction, fleet, clock = { now: Date.now } } = options;
  const authorized = tokenChecker(token);
  const shedderOf =
    typeof options.shedder === 'function' ? options.shedder : () => options.shedder as Shedder | undefined;
  // What no request shows by itself, sampled each second whether or not the page is open.
  const sampler = new Sampler();
  const sample = () => sampler.sample(clock.now(), shedderOf(), limitersOf(limiters));
  setInterval(sample, 1000).unref();

  return (req, res, next) => {
    const route = routeOf(req.method ?? 'GET', req.url ?? '/', base);
    if (route === undefined) {
      if (next !== undefined) return next();
      return send(res, 404, { error: 'no such endpoint' });
    }
    if (route === null) return send(res, 400, { error: 'the path is not valid percent-encoding' });
    // The page's links are relative: below a base, it must be read as the base's folder.
    if (base !== '' && (req.url === base || req.url?.startsWith(`${base}?`))) {
      res.writeHead(308, { Location: `${base}/` });
      res.end();
      return;
    }
    // Reads are open to this machine, asked for by a loopback name (a rebound DNS name is not one);
    // actions, and anything else, need the token.
    const local = isLoopback(req.socket.remoteAddress) && isLoopbackHost(req.headers.host);
    const reading = route.method === 'GET' || route.method === 'HEAD';
    if ((!reading || !local) && !authorized(req.headers.authorization)) {
      const error =
        token === undefined
          ? 'this handler has no admin token configured: it answers only reads from loopback, addressed to localhost, 127.0.0.1 or [::1]'
          : 'a valid admin token is needed (Authorization: Bearer TOKEN)';
      return send(
        res,
        token === undefined ? 403 : 401,
        { error },
        token === undefined ? [] : [['WWW-Authenticate', 'Bearer']],
      );
    }
    const [first, ...rest] = route.segments;
    if (reading && first !== 'api') {
      if (serveAsset(res, route.segments.join('/'), route.method === 'HEAD')) return;
      return next === undefined ? send(res, 404, { error: 'no such endpoint' }) : next();
    }
    if (first !== 'api') return send(res, 405, { error: 'only GET and HEAD here' });
    let answer: Answer | Promise<Answer>;
    try {
      const found = limitersOf(limiters);
      answer = reading
        ? read(rest, route.query, { now: clock.now(), found, sampler, shedderOf, labels, fleet })
        : act(req, rest, { found, labels, onAction });
    } catch (error) {
      answer = Promise.reject(error);
    }
    Promise.resolve(answer).then(
      (a) => send(res, a.status, a.body, [], a.closeAfter),
      (error: unknown) =>
        send(res, 503, { error: `the store failed: ${(error as Error)?.message ?? String(error)}` }),
    );
  };
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { invalidOption, isInvalidOption, knownKeys } from '../core/errors.js';
import type { PolicySpec } from '../core/policy.js';
import { Limiter } from '../limiter/limiter.js';
import type { Shedder } from '../limiter/shedder.js';
import { displayClient } from '../observe/client.js';
import { isLoopback, isLoopbackHost, tokenChecker } from './access.js';
import { BODY_LIMIT, isJson, readBody } from './body.js';
import type { Fleet } from './fleet.js';
import { PAGE } from './page/index.js';
import { routeOf } from './routes.js';
import { Sampler } from './sampler.js';
import {
  dashboardView,
  fleetView,
  isWindow,
  limiterView,
  overrideOf,
  shedderView,
  stateView,
  topView,
} from './views.js';

/** The limiters an admin handler shows, by name: fixed, or asked for on each request (a reloaded configuration). */
export type LimiterSource =
  | Readonly<Record<string, Limiter>>
  | ReadonlyMap<string, Limiter>
  | (() => Iterable<readonly [string, Limiter]>);

/** An action taken through the admin API, for the application's log. */
export interface AdminAction {
  readonly action: 'reset' | 'set-override' | 'remove-override';
  readonly limiter: string;
  /** The identifier acted on, and how an operator reads it. */
  readonly key: string;
  readonly client: string;
  /** Who asked: the socket address and user agent of the request that carried the token. */
  readonly by: { readonly address: string | undefined; readonly userAgent: string | undefined };
  readonly policies?: unknown;
}

export interface AdminOptions {
  readonly limiters: LimiterSource;
  /** The server's own shedder, whose limit and in-flight count the dashboard shows. */
  readonly shedder?: Shedder | (() => Shedder | undefined);
  /**
   * The token every action needs (`Authorization: Bearer TOKEN`), and every request from another machine.
   * Without it, the handler only answers reads from loopback.
   */
  readonly token?: string;
  /** The path the handler is mounted at, e.g. `/admin`. Default: the root. */
  readonly base?: string;
  /** A readable name for an identifier (an API key's label from the application's table), if it has one. */
  readonly labels?: (key: string) => string | undefined;
  /** Called after each action that changed something, with who and what. */
  readonly onAction?: (action: AdminAction) => void;
  /** The processes sharing a Redis store (`new Fleet(...).start()`): `GET /api/fleet` merges their traffic. */
  readonly fleet?: Fleet;
  /** Time for the views. Default: `Date.now`. */
  readonly clock?: { now(): number };
}

/**
 * A `node:http` handler with the admin API and the dashboard; unknown paths go to `next`, or get 404.
 * Mount it on a port of its own, never on the public one:
 *
 *     const limiter = new Limiter({ policies: { limit: 100, window: '1m' } });
 *     http.createServer(adminHandler({ limiters: { api: limiter }, token: process.env.ADMIN_TOKEN }))
 *       .listen(9090, '127.0.0.1');
 */
export type AdminHandler = (req: IncomingMessage, res: ServerResponse, next?: () => void) => void;

interface Answer {
  readonly status: number;
  readonly body: unknown;
  /** A request whose body is still coming in (and being dropped): the connection closes once it is in. */
  readonly closeAfter?: IncomingMessage;
}

const notFound = (what: string): Answer => ({ status: 404, body: { error: `no ${what}` } });
const badRequest = (error: string): Answer => ({ status: 400, body: { error } });

function limitersOf(source: LimiterSource): Map<string, Limiter> {
  if (typeof source === 'function') return new Map(source());
  if (source instanceof Map) return new Map(source);
  return new Map(Object.entries(source as Record<string, Limiter>));
}

/** The identifier as the limiter is given it, from the one the summaries hold (bounded by `boundKey`). */
function unbound(key: string): string | undefined {
  if (key.startsWith('~~')) return key.slice(1);
  return key.startsWith('~#') ? undefined : key;
}

export function adminHandler(options: AdminOptions): AdminHandler {
  if (typeof options !== 'object' || options === null)
    throw invalidOption('options', 'an object such as { limiters: { api: limiter } }', options, 'type');
  knownKeys(options, ['limiters', 'shedder', 'token', 'base', 'labels', 'onAction', 'fleet', 'clock']);
  const { limiters, token, base = '', labels, onAction, clock = { now: Date.now } } = options;
  if (typeof limiters !== 'function' && (typeof limiters !== 'object' || limiters === null))
    throw invalidOption(
      'limiters',
      'a record or Map of limiters by name, or a function answering one',
      limiters,
      'type',
    );
  if (typeof limiters === 'object')
    for (const [name, limiter] of limitersOf(limiters))
      if (!(limiter instanceof Limiter))
        throw invalidOption(`limiters.${name}`, 'a Limiter', limiter, 'type');
  if (token !== undefined && (typeof token !== 'string' || token.length < 16))
    throw invalidOption(
      'token',
      'a string of at least 16 characters',
      token === undefined ? token : '(hidden)',
    );
  if (typeof base !== 'string' || (base !== '' && (!base.startsWith('/') || base.endsWith('/'))))
    throw invalidOption('base', 'a path such as "/admin" (no trailing slash), or ""', base);
  for (const [name, value] of [
    ['labels', labels],
    ['onAction', onAction],
  ] as const)
    if (value !== undefined && typeof value !== 'function')
      throw invalidOption(name, 'a function', value, 'type');
  const authorized = tokenChecker(token);
  const shedderOf =
    typeof options.shedder === 'function' ? options.shedder : () => options.shedder as Shedder | undefined;
  // What no request shows by itself, sampled each second whether or not the page is open.
  const sampler = new Sampler();
  const sample = () => sampler.sample(clock.now(), shedderOf(), limitersOf(limiters));
  setInterval(sample, 1000).unref();

  const reads = (
    segments: readonly string[],
    query: URLSearchParams,
    found: Map<string, Limiter>,
  ): Answer | Promise<Answer> => {
    const now = clock.now();
    if (segments.length === 0)
      return {
        status: 200,
        body: { limiters: [...found].map(([n, l]) => limiterView(n, l)), shedder: shedderView(shedderOf()) },
      };
    if (segments[0] === 'dashboard' && segments.length === 1) {
      const seconds = Math.min(900, Math.max(10, Number(query.get('seconds') ?? 300) || 300));
      sampler.sample(now, shedderOf(), found);
      const shedder = shedderView(shedderOf());
      return {
        status: 200,
        body: {
          now,
          limiters: [...found].map(([n, l]) => dashboardView(n, l, seconds, labels, now)),
          shedder: shedder && { ...shedder, series: sampler.shedderSeries(now, seconds) },
          stores: sampler.storesView(now, seconds, found),
        },
      };
    }
    if (segments[0] === 'fleet' && segments.length === 1) {
      const window = query.get('window') ?? '1m';
      if (!isWindow(window)) return badRequest('window must be 1m or 15m');
      if (options.fleet === undefined) return notFound('fleet: this handler was given none');
      const n = Math.min(1000, Math.max(1, Number(query.get('n') ?? 10) || 10));
      return fleetView(options.fleet, window, n, labels).then((body) => ({ status: 200, body }));
    }
    if (segments[0] !== 'limiters' || segments.length < 2) return notFound('such endpoint');
    const name = segments[1]!;
    const limiter = found.get(name);
    if (limiter === undefined) return notFound(`limiter named ${JSON.stringify(name)}`);
    const what = segments[2];
    if (what === undefined) return { status: 200, body: limiterView(name, limiter) };
    if (what === 'top' && segments.length === 3) {
      const window = query.get('window') ?? '1m';
      if (!isWindow(window)) return badRequest('window must be 1m or 15m');
      const n = Math.min(1000, Math.max(1, Number(query.get('n') ?? 10) || 10));
      if (limiter.traffic === undefined) return notFound('traffic: the limiter was made with traffic: false');
      return { status: 200, body: topView(limiter.traffic.top(window, n), n, labels) };
    }
    if (what === 'series' && segments.length === 3) {
      const seconds = Math.min(900, Math.max(1, Number(query.get('seconds') ?? 900) || 900));
      if (limiter.traffic === undefined) return notFound('traffic: the limiter was made with traffic: false');
      return { status: 200, body: { seconds, points: limiter.traffic.points(seconds) } };
    }
    if (what === 'clients' && segments.length === 4) {
      const key = unbound(segments[3]!);
      if (key === undefined)
        return badRequest('a long identifier (~#) is known only by its digest; ask by its full value');
      return limiter
        .peek(key)
        .then((d) => ({ status: 200, body: stateView(segments[3]!, limiter, d, labels, now) }));
    }
    return notFound('such endpoint');
  };

  const act = async (
    req: IncomingMessage,
    segments: readonly string[],
    found: Map<string, Limiter>,
  ): Promise<Answer> => {
    if (segments[0] !== 'limiters' || (segments.length !== 4 && segments.length !== 5))
      return notFound('such endpoint');
    const name = segments[1]!;
    const limiter = found.get(name);
    if (limiter === undefined) return notFound(`limiter named ${JSON.stringify(name)}`);
    const stored = segments[3]!;
    const key = unbound(stored);
    if (key === undefined)
      return badRequest('a long identifier (~#) is known only by its digest; act on it by its full value');
    const by = { address: req.socket.remoteAddress, userAgent: req.headers['user-agent'] };
    const done = (action: AdminAction['action'], body: unknown, policies?: unknown): Answer => {
      onAction?.({
        action,
        limiter: name,
        key: stored,
        client: displayClient(stored, labels).label,
        by,
        ...(policies === undefined ? {} : { policies }),
      });
      return { status: 200, body };
    };
    if (req.method === 'POST' && segments[2] === 'clients' && segments[4] === 'reset') {
      await limiter.reset(key);
      return done('reset', { reset: stored });
    }
    if (segments[2] !== 'overrides' || segments.length !== 4) return notFound('such endpoint');
    if (req.method === 'DELETE') return done('remove-override', { removed: limiter.removeOverride(key) });
    if (req.method !== 'PUT') return { status: 405, body: { error: 'PUT or DELETE an override' } };
    // A body only as JSON, so that no form of another site (text/plain, urlencoded) could be one.
    if (!isJson(req.headers['content-type']))
      return { status: 415, body: { error: 'the body must be sent as Content-Type: application/json' } };
    const body = await readBody(req);
    if (body === 'too-large')
      return {
        status: 413,
        body: { error: `the body must be at most ${BODY_LIMIT} bytes` },
        closeAfter: req,
      };
    if (body === 'failed') return badRequest('the body broke off');
    let policies: PolicySpec | PolicySpec[];
    try {
      policies = JSON.parse(body.text);
    } catch {
      return badRequest('the body must be JSON: a policy or a list of policies');
    }
    try {
      limiter.setOverride(key, policies);
    } catch (error) {
      if (isInvalidOption(error)) return badRequest((error as Error).message);
      throw error;
    }
    return done('set-override', { override: stored, policies: overrideOf(limiter, key) }, policies);
  };

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
    const read = route.method === 'GET' || route.method === 'HEAD';
    if ((!read || !local) && !authorized(req.headers.authorization)) {
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
    if (read && first !== 'api') {
      const asset = PAGE[route.segments.join('/')];
      if (asset === undefined)
        return next === undefined ? send(res, 404, { error: 'no such endpoint' }) : next();
      res.writeHead(200, {
        'Content-Type': asset.type,
        'Cache-Control': 'no-cache',
        'X-Content-Type-Options': 'nosniff',
      });
      res.end(route.method === 'HEAD' ? undefined : asset.body);
      return;
    }
    if (first !== 'api') return send(res, 405, { error: 'only GET and HEAD here' });
    let answer: Answer | Promise<Answer>;
    try {
      const found = limitersOf(limiters);
      answer = read ? reads(rest, route.query, found) : act(req, rest, found);
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

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  503: 'Service Unavailable',
};

/**
 * Writes an answer: JSON, or for an error an RFC 9457 problem (`detail`, and `error` as the page reads it).
 * With `closeAfter`, a request whose body is still coming: the answer is written at once, and the
 * connection closed once the body is all in. Closed earlier, with the client still sending, the connection
 * would be reset under it, which may lose the answer.
 */
function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: [string, string][] = [],
  closeAfter?: IncomingMessage,
): void {
  if (res.headersSent) return;
  const error = status >= 400 ? (body as { error?: unknown } | null)?.error : undefined;
  const text = JSON.stringify(
    typeof error === 'string'
      ? { type: 'about:blank', title: TITLES[status] ?? 'Error', status, detail: error, error }
      : body,
  );
  const type = typeof error === 'string' ? 'application/problem+json' : 'application/json';
  const fields: [string, string][] = [
    ['Content-Type', type],
    ['Content-Length', String(Buffer.byteLength(text))],
    ['Cache-Control', 'no-store'],
    ...headers,
  ];
  if (closeAfter === undefined) {
    res.writeHead(status, fields.flat());
    res.end(text);
    return;
  }
  res.writeHead(status, [...fields, ['Connection', 'close']].flat());
  res.write(text);
  if (closeAfter.complete) res.end();
  else {
    closeAfter.once('end', () => res.end());
    closeAfter.once('close', () => res.end());
  }
}

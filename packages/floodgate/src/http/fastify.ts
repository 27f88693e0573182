import type { Decision } from '../core/decision.js';
import { invalidOption } from '../core/errors.js';
import { deliver } from '../core/maybe.js';
import { HttpGuard, type Verdict } from './guard.js';
import { mergedValue, type NodeRequestLike, nodeView, settleWhenDone } from './node-common.js';
import { type HttpLimitOptions, shedderOf } from './options.js';

export type { WithRateLimit } from './node-common.js';

/** The parts of a Fastify request the plugin reads. */
export interface FastifyRequestLike {
  readonly raw: NodeRequestLike;
  /** The decision, for the route's handler; typed for it by `WithRateLimit<FastifyRequest>`. */
  rateLimit?: Decision | null;
  /** No route matched: Fastify's not-found handler answers it. */
  readonly is404?: boolean;
}

/** The parts of a Fastify reply the plugin writes. */
export interface FastifyReplyLike {
  readonly statusCode: number;
  readonly raw: {
    readonly statusCode: number;
    once(event: 'finish' | 'close', listener: () => void): unknown;
  };
  code(status: number): FastifyReplyLike;
  header(name: string, value: string): FastifyReplyLike;
  getHeader(name: string): unknown;
  send(body: string): FastifyReplyLike;
}

/** A callback-style hook: no promise on the memory store's path. */
type Hook = (request: FastifyRequestLike, reply: FastifyReplyLike, next: (error?: Error) => void) => void;

/** The parts of a route's options the plugin reads and extends, as Fastify's `onRoute` hook gives them. */
export interface FastifyRouteOptionsLike {
  readonly config?: unknown;
  onRequest?: unknown;
}

/** The parts of a Fastify instance the plugin registers on. */
export interface FastifyInstanceLike {
  addHook(name: 'onRequest', hook: Hook): unknown;
  addHook(name: 'onRoute', hook: (route: FastifyRouteOptionsLike) => void): unknown;
  decorateRequest?(name: 'rateLimit', value: null): unknown;
  hasRequestDecorator?(name: string): boolean;
}

/** Route-level settings, under the route's `config.rateLimit`: `false` turns limiting off for the route. */
export type FastifyRouteLimit = false | Partial<HttpLimitOptions<FastifyRequestLike>>;

export interface FastifyLimitOptions extends HttpLimitOptions<FastifyRequestLike> {
  /** Limit every route (default), or only routes whose `config.rateLimit` is set. */
  readonly global?: boolean;
}

/**
 * Fastify plugin (Fastify 4 and 5). Register it at the top level; routes may override with
 * `{ config: { rateLimit: { cost: 5 } } }`, their own `policies`, or `false`.
 *
 *     await app.register(floodgate, { policies: { limit: 100, window: '1m' } });
 */
export function floodgate(
  fastify: FastifyInstanceLike,
  options: FastifyLimitOptions,
  done: (error?: Error) => void,
): void {
  try {
    const { global = true, ...common } = options;
    if (typeof global !== 'boolean') throw invalidOption('global', 'a boolean', global, 'type');
    // One shedder for the whole server, however many routes have guards of their own.
    const shedder = shedderOf(common.shed);
    const base = new HttpGuard<FastifyRequestLike>(
      shedder === undefined ? common : { ...common, shed: shedder },
    );
    // Declared up front, as Fastify asks of request properties, so every request keeps one shape.
    if (fastify.hasRequestDecorator?.('rateLimit') === false) fastify.decorateRequest?.('rateLimit', null);
    const { policies: _p, store: _s, shed: _shed, ...rest } = common;
    const shared = shedder === undefined ? rest : { ...rest, shed: shedder };
    const inherited = base.limiter === undefined ? shared : { ...shared, limiter: base.limiter };
    // Each route's guard is made once, when the route is declared (so a bad route setting fails at start),
    // and its hook added to that route alone: a request does not look its route's settings up.
    // One guard per route setting: the HEAD route Fastify adds for a GET route carries the GET's setting,
    // and must spend from its budget, not get one of its own.
    const guards = new WeakMap<object, HttpGuard<FastifyRequestLike>>();
    fastify.addHook('onRoute', (route) => {
      const limit = (route.config as { rateLimit?: FastifyRouteLimit | null } | undefined)?.rateLimit;
      if (limit === false || ((limit === undefined || limit === null) && !global)) return;
      let guard = base;
      if (limit !== undefined && limit !== null) {
        const made = guards.get(limit);
        // The route's own policies make its own limiter; otherwise it shares the plugin's.
        const own = limit.policies !== undefined || limit.limiter !== undefined;
        guard = made ?? new HttpGuard({ ...(own ? shared : inherited), ...limit });
        guards.set(limit, guard);
      }
      const hook = limitWith(guard);
      const existing = route.onRequest;
      route.onRequest =
        existing === undefined || existing === null
          ? [hook]
          : [...(Array.isArray(existing) ? existing : [existing]), hook];
    });
    if (global) {
      // Requests no route matches (404s) are limited too: a scan of unknown paths is traffic like any other.
      const notFound = limitWith(base);
      fastify.addHook('onRequest', (request, reply, next) => {
        if (request.is404 === true) notFound(request, reply, next);
        else next();
      });
    }
    done();
  } catch (error) {
    done(error as Error);
  }
}

/** The hook that limits a route's requests with `guard`. */
function limitWith(guard: HttpGuard<FastifyRequestLike>): Hook {
  return (request, reply, next) =>
    deliver(
      () => guard.decide(request, nodeView(request.raw)),
      (verdict) => apply(request, reply, verdict, next),
      (error) => next(error as Error),
    );
}

/** Writes the verdict's fields; a refusal answers the request here, anything else goes on to the route. */
function apply(
  request: FastifyRequestLike,
  reply: FastifyReplyLike,
  verdict: Verdict,
  next: (error?: Error) => void,
): void {
  for (const [name, value] of verdict.headers)
    reply.header(name, mergedValue(name, value, reply.getHeader(name)));
  if (verdict.kind === 'respond') {
    // Answered: the route is not run, so \`next\` is not called.
    reply.code(verdict.status).send(verdict.body);
    return;
  }
  if (verdict.decision !== undefined) request.rateLimit = verdict.decision;
  // On the raw response, not an onResponse hook: requests that need no settling pay nothing.
  if (verdict.settle !== undefined) settleWhenDone(reply.raw, verdict.settle);
  next();
}

// Registered once at the top level, the plugin's hooks apply to every route (fastify-plugin's convention).
Object.assign(floodgate, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'floodgate',
  [Symbol.for('plugin-meta')]: { name: 'floodgate', fastify: '>=4' },
});

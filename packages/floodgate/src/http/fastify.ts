import { invalidOption } from '../core/errors.js';
import { HttpGuard, type HttpLimitOptions, type Verdict } from './guard.js';
import { mergedValue, type NodeRequestLike, nodeView } from './node-common.js';

export * from './exports.js';

/** The parts of a Fastify request the plugin reads. */
export interface FastifyRequestLike {
  readonly raw: NodeRequestLike;
  readonly routeOptions?: { readonly config?: unknown };
}

/** The parts of a Fastify reply the plugin writes. */
export interface FastifyReplyLike {
  readonly statusCode: number;
  readonly raw: { once(event: 'finish' | 'close', listener: () => void): unknown };
  code(status: number): FastifyReplyLike;
  header(name: string, value: string): FastifyReplyLike;
  getHeader(name: string): unknown;
  send(body: string): FastifyReplyLike;
}

type Hook = (request: FastifyRequestLike, reply: FastifyReplyLike) => Promise<unknown>;

/** The parts of a Fastify instance the plugin registers on. */
export interface FastifyInstanceLike {
  addHook(name: 'onRequest', hook: Hook): unknown;
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
    const base = new HttpGuard<FastifyRequestLike>(common);
    const perRoute = new WeakMap<object, HttpGuard<FastifyRequestLike>>();
    const guardFor = (request: FastifyRequestLike): HttpGuard<FastifyRequestLike> | undefined => {
      const config = request.routeOptions?.config as { rateLimit?: FastifyRouteLimit } | undefined;
      const route = config?.rateLimit;
      if (route === false) return undefined;
      if (route === undefined || route === null) return global ? base : undefined;
      let guard = perRoute.get(route);
      if (guard === undefined) {
        // The route's own policies make its own limiter; otherwise it shares the plugin's.
        const own = route.policies !== undefined || route.limiter !== undefined;
        const { policies: _p, store: _s, ...shared } = common;
        guard = new HttpGuard({ ...(own ? shared : { ...shared, limiter: base.limiter }), ...route });
        perRoute.set(route, guard);
      }
      return guard;
    };
    fastify.addHook('onRequest', async (request, reply) => {
      const guard = guardFor(request);
      if (guard === undefined) return;
      const decided = guard.decide(request, nodeView(request.raw));
      const verdict: Verdict = decided instanceof Promise ? await decided : decided;
      for (const [name, value] of verdict.headers)
        reply.header(name, mergedValue(name, value, reply.getHeader(name)));
      if (verdict.kind === 'respond') {
        reply.code(verdict.status).send(verdict.body);
        return reply;
      }
      const settle = verdict.settle;
      if (settle !== undefined) {
        // On the raw response, not an onResponse hook: requests that need no settling pay nothing.
        reply.raw.once('finish', () => settle(reply.statusCode));
        reply.raw.once('close', () => settle(reply.statusCode));
      }
      return;
    });
    done();
  } catch (error) {
    done(error as Error);
  }
}

// Registered once at the top level, the plugin's hooks apply to every route (fastify-plugin's convention).
Object.assign(floodgate, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'floodgate',
  [Symbol.for('plugin-meta')]: { name: 'floodgate', fastify: '>=4' },
});

import type { Decision } from '../core/decision.js';
import { HttpGuard } from './guard.js';
import {
  mergedValue,
  type NodeRequestLike,
  type NodeResponseLike,
  nodeView,
  settleWhenDone,
} from './node-common.js';
import type { HttpLimitOptions } from './options.js';

/** The parts of a Koa context the middleware uses. */
export interface KoaContextLike {
  readonly req: NodeRequestLike;
  /** Node's response: the verdict is settled when it ends, not when the middleware chain returns. */
  readonly res: Pick<NodeResponseLike, 'statusCode' | 'once' | 'closed'>;
  status: number;
  body: unknown;
  type: string;
  set(name: string, value: string): void;
  response: { get(name: string): unknown };
  /** Koa's state for the request: the decision is put at `ctx.state.rateLimit`. */
  state: Record<string, unknown>;
}

/** `ctx.state` once the limiter let the request on. */
export interface RateLimitState {
  rateLimit?: Decision;
}

export type KoaRateLimit = ((ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void>) & {
  readonly limiter: HttpGuard<KoaContextLike>['limiter'];
};

/**
 * Koa middleware (Koa 2 and 3): `app.use(rateLimit({ policies: { limit: 100, window: '1m' } }))`. Later
 * middleware finds the decision at `ctx.state.rateLimit` (typed by `RateLimitState`).
 */
export function rateLimit(options: HttpLimitOptions<KoaContextLike>): KoaRateLimit {
  const guard = new HttpGuard(options);
  const middleware = async (ctx: KoaContextLike, next: () => Promise<unknown>): Promise<void> => {
    const verdict = await guard.decide(ctx, nodeView(ctx.req));
    for (const [name, value] of verdict.headers)
      ctx.set(name, mergedValue(name, value, ctx.response.get(name)));
    if (verdict.kind === 'respond') {
      ctx.status = verdict.status;
      ctx.body = verdict.body;
      const type = verdict.headers.find(([n]) => n === 'Content-Type');
      if (type !== undefined) ctx.type = type[1];
      return;
    }
    if (verdict.decision !== undefined) ctx.state.rateLimit = verdict.decision;
    // The response ends after the chain returns (a streamed body later still), or never if a handler hangs:
    // settled by the response itself, as on every other adapter. A thrown error ends as Koa's error response.
    if (verdict.settle !== undefined) settleWhenDone(ctx.res, verdict.settle);
    await next();
  };
  return Object.assign(middleware, { limiter: guard.limiter });
}

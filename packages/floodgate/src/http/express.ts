import { HttpGuard, type HttpLimitOptions, type Verdict } from './guard.js';
import { applyToNodeResponse, type NodeRequestLike, type NodeResponseLike, nodeView } from './node-common.js';

export * from './exports.js';

/** An Express request as the middleware reads it (Express 4 and 5). */
export interface ExpressRequestLike extends NodeRequestLike {
  readonly path?: string;
}

export type ExpressRateLimit = ((
  req: ExpressRequestLike,
  res: NodeResponseLike,
  next: (error?: unknown) => void,
) => void) & { readonly limiter: HttpGuard<ExpressRequestLike>['limiter'] };

/**
 * Express middleware (Express 5, and 4):
 *
 *     app.use(rateLimit({ policies: { limit: 100, window: '1m' } }));
 *     app.post('/login', rateLimit({ policies: { limit: 5, window: '15m' }, countOnly: 'failed' }), login);
 */
export function rateLimit(options: HttpLimitOptions<ExpressRequestLike>): ExpressRateLimit {
  const guard = new HttpGuard(options);
  const middleware = (
    req: ExpressRequestLike,
    res: NodeResponseLike,
    next: (error?: unknown) => void,
  ): void => {
    let verdict: Verdict | Promise<Verdict>;
    try {
      verdict = guard.decide(req, nodeView(req));
    } catch (error) {
      next(error);
      return;
    }
    if (verdict instanceof Promise) {
      verdict.then((v) => {
        if (applyToNodeResponse(res, v)) next();
      }, next);
    } else if (applyToNodeResponse(res, verdict)) {
      next();
    }
  };
  return Object.assign(middleware, { limiter: guard.limiter });
}

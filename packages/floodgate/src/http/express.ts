import { HttpGuard, type HttpLimitOptions } from './guard.js';
import { type NodeRequestLike, type NodeResponseLike, nodeView, setNodeHeaders } from './node-common.js';

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
    guard.check(req, nodeView(req)).then((verdict) => {
      setNodeHeaders(res, verdict.headers);
      if (verdict.kind === 'respond') {
        res.statusCode = verdict.status;
        res.end(verdict.body);
        return;
      }
      const settle = verdict.settle;
      if (settle !== undefined) {
        res.once('finish', () => settle(res.statusCode));
        res.once('close', () => settle(res.statusCode));
      }
      next();
    }, next);
  };
  return Object.assign(middleware, { limiter: guard.limiter });
}

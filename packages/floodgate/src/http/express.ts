import type { Decision } from '../core/decision.js';
import { deliver } from '../core/maybe.js';
import { HttpGuard } from './guard.js';
import { applyToNodeResponse, type NodeRequestLike, type NodeResponseLike, nodeView } from './node-common.js';
import type { HttpLimitOptions } from './options.js';

export type { WithRateLimit } from './node-common.js';

declare global {
  // Express's own request type, where @types/express is in use: `req.rateLimit` in handlers.
  namespace Express {
    interface Request {
      /** The decision of the last Floodgate limiter the request passed. */
      rateLimit?: Decision;
    }
  }
}

/** An Express request as the middleware reads it (Express 4 and 5). */
export interface ExpressRequestLike extends NodeRequestLike {
  readonly path?: string;
  /** The client address by Express's `trust proxy` setting. */
  readonly ip?: string | undefined;
  readonly app?: { get(setting: string): unknown } | undefined;
}

export type ExpressRateLimit = ((
  req: ExpressRequestLike,
  res: NodeResponseLike,
  next: (error?: unknown) => void,
) => void) & { readonly limiter: HttpGuard<ExpressRequestLike>['limiter'] };

/**
 * Whether the app has set Express's `trust proxy`: then `req.ip` is the client as the app's owner has
 * said to find it, and Floodgate uses it unless its own `trustProxy` is given.
 */
function expressTrustsProxies(req: ExpressRequestLike): boolean {
  const setting = req.app?.get('trust proxy');
  return setting !== undefined && setting !== false && setting !== 0;
}

/**
 * Express middleware (Express 5, and 4). Handlers find the decision at `req.rateLimit`.
 *
 *     app.use(rateLimit({ policies: { limit: 100, window: '1m' } }));
 *     app.post('/login', rateLimit({ policies: { limit: 5, window: '15m' }, countOnly: 'failed' }), login);
 */
export function rateLimit(options: HttpLimitOptions<ExpressRequestLike>): ExpressRateLimit {
  const guard = new HttpGuard(options);
  const ownTrust = options.trustProxy !== undefined;
  const middleware = (
    req: ExpressRequestLike,
    res: NodeResponseLike,
    next: (error?: unknown) => void,
  ): void => {
    const view = !ownTrust && expressTrustsProxies(req) ? nodeView(req, req.ip) : nodeView(req);
    deliver(
      () => guard.decide(req, view),
      (verdict) => {
        if (applyToNodeResponse(req, res, verdict)) next();
      },
      next,
    );
  };
  return Object.assign(middleware, { limiter: guard.limiter });
}

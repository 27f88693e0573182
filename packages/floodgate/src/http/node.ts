import { andThen, promised } from '../core/maybe.js';
import { HttpGuard } from './guard.js';
import { applyToNodeResponse, type NodeRequestLike, type NodeResponseLike, nodeView } from './node-common.js';
import type { HttpLimitOptions } from './options.js';

export type { NodeRequestLike, NodeResponseLike, WithRateLimit } from './node-common.js';

/** Resolves true when the request may go on; false when the limiter has already answered it (429, 403...). */
export type NodeRateLimit = ((req: NodeRequestLike, res: NodeResponseLike) => Promise<boolean>) & {
  readonly limiter: HttpGuard<NodeRequestLike>['limiter'];
};

/**
 * Rate limiting for plain `node:http` handlers; the decision is then at `req.rateLimit` (typed by
 * `WithRateLimit<IncomingMessage>`):
 *
 *     const limit = rateLimit({ policies: { limit: 100, window: '1m' } });
 *     http.createServer(async (req, res) => {
 *       if (!(await limit(req, res))) return;
 *       res.end('hello');
 *     });
 */
export function rateLimit(options: HttpLimitOptions<NodeRequestLike>): NodeRateLimit {
  const guard = new HttpGuard(options);
  const limit = (req: NodeRequestLike, res: NodeResponseLike): Promise<boolean> =>
    promised(() =>
      andThen(guard.decide(req, nodeView(req)), (verdict) => applyToNodeResponse(req, res, verdict)),
    );
  return Object.assign(limit, { limiter: guard.limiter });
}

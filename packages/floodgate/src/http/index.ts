/**
 * `floodgate/http`: the framework-neutral pieces every adapter is made of: the guard (the pipeline), key
 * extractors, header fields and problem bodies. Each adapter's entry exports only its own middleware.
 */

// For adapters of other frameworks: the guard answers at once when it can, and these carry on either way.
export { allOf, andThen, attempt, deliver, type MaybePromise } from '../core/maybe.js';
export { clientIpResolver, groupIp, normalizeIp, type TrustProxy } from './client-ip.js';
export { HttpGuard, type Verdict } from './guard.js';
export { type HeaderList, type HeaderMode, rateLimitHeaders } from './headers.js';
export { basicCredentials, byApiKey, byBasicUser, byHeader, byIp, type KeyExtractor } from './keys.js';
export {
  type DecisionEvent,
  type HttpLimitOptions,
  type ResolvedHttpOptions,
  resolveHttpOptions,
} from './options.js';
export { type HttpResponse, limited, problem, unavailable, waitMessage } from './problem.js';
export type { RequestView } from './request.js';

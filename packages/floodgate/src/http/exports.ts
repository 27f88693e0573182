// What every HTTP adapter module exports besides its own middleware.
export type { TrustProxy } from './client-ip.js';
export {
  type DecisionEvent,
  HttpGuard,
  type HttpLimitOptions,
  type HttpResponse,
  type Verdict,
  waitMessage,
} from './guard.js';
export { type HeaderList, type HeaderMode, rateLimitHeaders } from './headers.js';
export { basicCredentials, byApiKey, byBasicUser, byHeader, byIp, type KeyExtractor } from './keys.js';
export { type LoginAttempt, LoginGuard, type LoginGuardOptions } from './login.js';
export type { RequestView } from './request.js';

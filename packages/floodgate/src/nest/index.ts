/**
 * `floodgate/nest`: Floodgate as a Nest module, on Nest's Express and Fastify platforms, for HTTP routes,
 * GraphQL resolvers and WebSocket gateways. `@nestjs/common` and `@nestjs/core` are optional peer
 * dependencies of this entry alone; @nestjs/graphql and @nestjs/websockets are loaded only by applications
 * that have resolvers or gateways.
 */
export { byApiKey, byHeader, byIp } from '../http/keys.js';
export type { LimitedContext, RequestResponse } from './context.js';
export { RATE_LIMIT, RateLimit, RateLimitDecision, SKIP_RATE_LIMIT, SkipRateLimit } from './decorators.js';
export { FloodgateException } from './exception.js';
export { FloodgateGuard } from './guard.js';
export { byUser } from './keys.js';
export { FloodgateLimits, type LimitedRoute } from './limits.js';
export { FLOODGATE_OPTIONS, FloodgateModule } from './module.js';
export type {
  FloodgateModuleAsyncOptions,
  FloodgateModuleOptions,
  FloodgateOptionsFactory,
  LimitScope,
  NestRequest,
  RouteLimitOptions,
} from './options.js';

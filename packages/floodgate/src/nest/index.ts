/**
 * `floodgate/nest`: Floodgate as a Nest module, on Nest's Express and Fastify platforms. `@nestjs/common`
 * and `@nestjs/core` are optional peer dependencies of this entry alone.
 */
export { byApiKey, byHeader, byIp } from '../http/keys.js';
export { RATE_LIMIT, RateLimit, RateLimitDecision, SKIP_RATE_LIMIT, SkipRateLimit } from './decorators.js';
export { FloodgateException, FloodgateGuard } from './guard.js';
export { byUser } from './keys.js';
export { FloodgateLimits } from './limits.js';
export { FLOODGATE_OPTIONS, FloodgateModule } from './module.js';
export type {
  FloodgateModuleAsyncOptions,
  FloodgateModuleOptions,
  NestRequest,
  RouteLimitOptions,
} from './options.js';

import {
  type CustomDecorator,
  createParamDecorator,
  type ExecutionContext,
  SetMetadata,
} from '@nestjs/common';
import { invalidOption } from '../core/errors.js';
import { resolveHttpOptions } from '../http/options.js';
import { decisionOf } from './context.js';
import { type NestRequest, ownsLimiter, type RouteLimitOptions, scopeOption } from './options.js';

/** Metadata keys of the decorators, read by `FloodgateGuard`. */
export const RATE_LIMIT = 'floodgate:rate-limit';
export const SKIP_RATE_LIMIT = 'floodgate:skip-rate-limit';

/** Stands in for the policies of settings that borrow the module's, so that the rest can be checked. */
const CHECK_ONLY = { limit: 1, window: 1000 } as const;

/**
 * A controller's or a route's own limits, on top of the module's: own `policies` (a budget of their own,
 * shared by a controller's routes), or only a `cost`, `key`, `countOnly`... spent from the module's policies.
 * `scope: "route"` gives each route its own budget. Checked where it is written, and with the module's
 * options when the application starts, so a bad setting fails then, never on a request.
 *
 *     @RateLimit({ policies: { limit: 5, window: '15m' }, countOnly: 'failed' })
 */
export function RateLimit<Req = NestRequest>(options: RouteLimitOptions<Req>): CustomDecorator<string> {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption(
      '@RateLimit',
      'an object such as { policies: { limit: 5, window: "15m" } }',
      options,
      'type',
    );
  }
  for (const name of ['store', 'shed'] as const) {
    if (name in options)
      throw invalidOption(name, "absent in @RateLimit: routes use the module's", undefined);
  }
  const { scope, ...http } = options;
  scopeOption(scope);
  resolveHttpOptions(ownsLimiter(http) ? http : { ...http, policies: CHECK_ONLY });
  return SetMetadata(RATE_LIMIT, Object.freeze({ ...options }));
}

/** Leaves a controller or a route unlimited (no headers either); `@SkipRateLimit(false)` on a route undoes a controller's. */
export function SkipRateLimit(skip = true): CustomDecorator<string> {
  if (typeof skip !== 'boolean') throw invalidOption('@SkipRateLimit', 'a boolean', skip, 'type');
  return SetMetadata(SKIP_RATE_LIMIT, skip);
}

/** The handler's parameter that receives the limiter's decision (undefined when nothing was decided). */
export const RateLimitDecision = createParamDecorator((_data: unknown, context: ExecutionContext) =>
  decisionOf(context),
);

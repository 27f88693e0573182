import {
  type CustomDecorator,
  createParamDecorator,
  type ExecutionContext,
  SetMetadata,
} from '@nestjs/common';
import { invalidOption, isInvalidOption } from '../core/errors.js';
import type { PolicySpec } from '../core/policy.js';
import { resolveHttpOptions } from '../http/options.js';
import { decisionOf } from './context.js';
import { relocated } from './option-errors.js';
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
  const { scope, tiers, tier, ...http } = options;
  scopeOption(scope);
  if (tiers === undefined && tier === undefined) {
    resolveHttpOptions(ownsLimiter(http) ? http : { ...http, policies: CHECK_ONLY });
  } else {
    for (const [name, policies] of tierEntries(tiers, tier, http)) {
      try {
        resolveHttpOptions({ ...http, policies });
      } catch (error) {
        throw inTier(name, error);
      }
    }
  }
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

/** `tiers` and `tier`, checked: both or neither, a non-empty record, and no `policies` or `limiter` beside. */
export function tierEntries(
  tiers: unknown,
  tier: unknown,
  beside: { readonly policies?: unknown; readonly limiter?: unknown },
): [string, PolicySpec | readonly PolicySpec[]][] {
  if (typeof tier !== 'function')
    throw invalidOption('tier', 'a function of the request that names a tier', tier, 'type');
  if (
    typeof tiers !== 'object' ||
    tiers === null ||
    Array.isArray(tiers) ||
    Object.keys(tiers).length === 0
  ) {
    throw invalidOption(
      'tiers',
      'policy sets by name, such as { free: { limit: 10, window: "1m" } }',
      tiers,
      'type',
    );
  }
  if (beside.policies !== undefined || beside.limiter !== undefined)
    throw invalidOption('policies', 'absent when tiers are given', beside.policies ?? beside.limiter);
  return Object.entries(tiers as Record<string, PolicySpec | readonly PolicySpec[]>);
}

/** An option error of one tier's policies, named by the tier. */
export function inTier(name: string, error: unknown): unknown {
  if (!isInvalidOption(error) || !error.option.startsWith('policies')) return error;
  return relocated(error, { option: `tiers.${name}${error.option.slice('policies'.length)}` });
}

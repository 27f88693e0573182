import type { Decision } from '../core/decision.js';
import { invalidOption } from '../core/errors.js';
import type { NodeRequestLike } from '../http/node-common.js';
import type { HttpLimitOptions } from '../http/options.js';

/**
 * A request as Nest hands it to guards, on either HTTP platform: Express's request (a node request), or
 * Fastify's (whose node request is `raw`). `ip` is the client by the platform's own trust-proxy setting.
 */
export interface NestRequest {
  readonly ip?: string | undefined;
  readonly user?: unknown;
  readonly headers: NodeRequestLike['headers'];
  readonly raw?: NodeRequestLike;
  /** The decision of the limiter the request passed, for handlers (also `@RateLimitDecision()`). */
  rateLimit?: Decision;
}

/** `FloodgateModule.forRoot`'s options: those of every HTTP adapter, and where the guard applies. */
export interface FloodgateModuleOptions<Req = NestRequest> extends HttpLimitOptions<Req> {
  /**
   * Limit every route of the application (the guard is registered as `APP_GUARD`, the default), or only
   * controllers and routes that ask for it with `@UseGuards(FloodgateGuard)`.
   */
  readonly global?: boolean;
}

/**
 * A controller's or a route's own settings (`@RateLimit(...)`): any adapter option but the store, which is
 * the module's. Own `policies` make a budget of the route's (or the controller's) own; without them the
 * route spends from the module's policies, with its own cost, key or headers.
 */
export type RouteLimitOptions<Req = NestRequest> = Omit<Partial<HttpLimitOptions<Req>>, 'store' | 'shed'>;

/** Options of `forRootAsync`: a factory of the options, with what it injects. */
export interface FloodgateModuleAsyncOptions<Req = NestRequest> {
  // biome-ignore lint/suspicious/noExplicitAny: the factory's arguments are whatever `inject` provides
  readonly useFactory: (...args: any[]) => HttpLimitOptions<Req> | Promise<HttpLimitOptions<Req>>;
  readonly inject?: readonly unknown[];
  readonly imports?: readonly unknown[];
  /** As in `forRoot`; known before the factory runs, since it decides whether the guard is global. */
  readonly global?: boolean;
}

/** The option `global`, checked: a boolean, true by default. */
export function globalOption(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw invalidOption('global', 'a boolean', value, 'type');
  return value;
}

/** The limiter a route's settings bring, if they bring one (their own `policies` or `limiter`). */
export function ownsLimiter<T extends { readonly policies?: unknown; readonly limiter?: unknown }>(
  options: T | undefined,
): boolean {
  return options !== undefined && (options.policies !== undefined || options.limiter !== undefined);
}

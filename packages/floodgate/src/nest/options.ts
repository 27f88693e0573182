import type { ExecutionContext } from '@nestjs/common';
import type { Decision } from '../core/decision.js';
import { invalidOption } from '../core/errors.js';
import type { PolicySpec } from '../core/policy.js';
import type { NodeRequestLike } from '../http/node-common.js';
import type { HttpLimitOptions } from '../http/options.js';

/**
 * A request as Nest hands it to guards, on either HTTP platform: Express's request (a node request), or
 * Fastify's (whose node request is `raw`). `ip` is the client by the platform's own trust-proxy setting.
 * In a WebSocket gateway it stands for the connection: its handshake's `headers` and the client's `ip`.
 */
export interface NestRequest {
  readonly ip?: string | undefined;
  readonly user?: unknown;
  readonly headers: NodeRequestLike['headers'];
  readonly raw?: NodeRequestLike;
  /** The decision of the limiter the request passed, for handlers (also `@RateLimitDecision()`). */
  rateLimit?: Decision;
}

/**
 * What a budget is shared across: `"app"`, one budget per client for every route it applies to (the
 * module's policies across the application, a controller's own across its routes); `"route"`, one per
 * client for each route apart, as @nestjs/throttler counts.
 */
export type LimitScope = 'app' | 'route';

/** The options only the Nest module reads, beside those of every HTTP adapter. */
interface NestOnlyOptions {
  /** What a budget is shared across. Default `"app"`; `"route"` counts as @nestjs/throttler does. */
  readonly scope?: LimitScope;
}

/** `FloodgateModule.forRoot`'s options: those of every HTTP adapter, and where the guard applies. */
export interface FloodgateModuleOptions<Req = NestRequest> extends HttpLimitOptions<Req>, NestOnlyOptions {
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
export type RouteLimitOptions<Req = NestRequest> = Omit<Partial<HttpLimitOptions<Req>>, 'store' | 'shed'> &
  NestOnlyOptions & {
    /**
     * Policy sets by name, instead of `policies`, one of which `tier` picks for each call: limits that depend
     * on the caller (a user's plan), each set checked at start and counted in a budget of its own.
     */
    readonly tiers?: Readonly<Record<string, PolicySpec | readonly PolicySpec[]>>;
    /** The name of a call's tier, from its request and context; a name `tiers` lacks refuses the call (400). */
    readonly tier?: (request: Req, context: ExecutionContext) => string | Promise<string>;
  };

/** What `forRootAsync`'s `useClass` or `useExisting` provides: a factory of the module's options. */
export interface FloodgateOptionsFactory<Req = NestRequest> {
  createFloodgateOptions(): FloodgateModuleOptions<Req> | Promise<FloodgateModuleOptions<Req>>;
}

/** Options of `forRootAsync`: a factory of the options (a function, or a class), with what it injects. */
export interface FloodgateModuleAsyncOptions<Req = NestRequest> {
  readonly useFactory?: (
    // biome-ignore lint/suspicious/noExplicitAny: the factory's arguments are whatever `inject` provides
    ...args: any[]
  ) => FloodgateModuleOptions<Req> | Promise<FloodgateModuleOptions<Req>>;
  readonly inject?: readonly unknown[];
  /** A class implementing `FloodgateOptionsFactory`, made by the module. */
  readonly useClass?: new (
    ...args: never[]
  ) => FloodgateOptionsFactory<Req>;
  /** A `FloodgateOptionsFactory` provider that another module already provides. */
  readonly useExisting?: unknown;
  readonly imports?: readonly unknown[];
  /** As in `forRoot`; a `global` the factory returns wins over this one. */
  readonly global?: boolean;
}

/** The option `global`, checked: a boolean, true by default. */
export function globalOption(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw invalidOption('global', 'a boolean', value, 'type');
  return value;
}

/** The option `scope`, checked (undefined when not given). */
export function scopeOption(value: unknown, option = 'scope'): LimitScope | undefined {
  if (value !== undefined && value !== 'app' && value !== 'route')
    throw invalidOption(option, 'one of "app", "route"', value);
  return value;
}

/** Whether a route's settings bring limits of their own (`policies`, a `limiter`, or `tiers`). */
export function ownsLimiter<
  T extends { readonly policies?: unknown; readonly limiter?: unknown; readonly tiers?: unknown },
>(options: T | undefined): boolean {
  return (
    options !== undefined &&
    (options.policies !== undefined || options.limiter !== undefined || options.tiers !== undefined)
  );
}

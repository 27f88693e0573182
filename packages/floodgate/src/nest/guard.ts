import {
  type CanActivate,
  type ExecutionContext,
  Inject,
  Injectable,
  type OnModuleInit,
  Optional,
} from '@nestjs/common';
import { ModulesContainer, Reflector } from '@nestjs/core';
import { describe, FloodgateError } from '../core/errors.js';
import { andThen, type MaybePromise } from '../core/maybe.js';
import { HttpGuard, type Verdict } from '../http/guard.js';
import {
  type NodeRequestLike,
  type NodeResponseLike,
  nodeView,
  settleWhenDone,
} from '../http/node-common.js';
import { problem } from '../http/problem.js';
import {
  keepDecision,
  type LimitedContext,
  type NestResponse,
  noRequest,
  type RequestResponse,
  requestResponse,
  writeHeaders,
} from './context.js';
import { RATE_LIMIT, SKIP_RATE_LIMIT } from './decorators.js';
import { FloodgateException } from './exception.js';
import {
  at,
  FloodgateLimits,
  type LimitedRoute,
  mappedKey,
  type RoutePlan,
  type RouteSite,
} from './limits.js';
import type { NestRequest, RouteLimitOptions } from './options.js';
import { kindOf, type RouteClass, type RouteKind, routeClasses } from './routes.js';

/** A route's guard, and the route as the `generateKey` hook sees it; null when the route is skipped. */
type RouteGuard = {
  readonly http: HttpGuard<NestRequest>;
  readonly route: LimitedRoute;
  /** With `tiers`: each tier's guard, and the function that names a call's tier. */
  readonly tiers?: {
    readonly pick: NonNullable<RouteLimitOptions['tier']>;
    readonly guards: ReadonlyMap<string, HttpGuard<NestRequest>>;
    readonly onError: ((error: unknown, request: NestRequest) => void) | undefined;
  };
} | null;

/** Calls a Floodgate guard has decided (by their arguments): a guard both global and a route's decides once. */
const decided = new WeakSet<object>();

/** The contexts of requests whose key a subclass's `getTracker` makes, for that hook. */
const tracked = new WeakMap<object, ExecutionContext>();

type Class = RouteClass['type'];
type Handler = LimitedRoute['handler'];

/**
 * The guard: global when the module's `global` is true (the default), or per controller or route with
 * `@UseGuards(FloodgateGuard)`. It reads `@RateLimit` and `@SkipRateLimit` on the controller and the
 * route, of HTTP controllers, GraphQL resolvers and WebSocket gateways alike; every route's settings are
 * checked when the application starts.
 *
 * Extend it to change how it keys, skips or refuses, through its protected hooks, and register the subclass
 * instead (`global: false`, then `{ provide: APP_GUARD, useClass: MyGuard }`):
 *
 *     @Injectable()
 *     class TenantGuard extends FloodgateGuard {
 *       protected override getTracker(request: NestRequest) {
 *         return request.headers['x-tenant'] as string | undefined;
 *       }
 *     }
 */
export class FloodgateGuard implements CanActivate, OnModuleInit {
  protected readonly limits: FloodgateLimits;
  protected readonly reflector = new Reflector();
  readonly #modules: ModulesContainer | undefined;
  /** Per class, per handler: its guard. Made for every route at start; later only for one not seen then. */
  readonly #routes = new WeakMap<object, WeakMap<object, RouteGuard>>();
  readonly #classes = new WeakMap<object, RouteClass>();
  /** Which hooks a subclass overrides: those that are not run nothing on the request path. */
  readonly #hooks: {
    readonly skip: boolean;
    readonly tracker: boolean;
    readonly key: boolean;
    readonly io: boolean;
  };
  /** `WsException`, loaded when the application has a gateway (a refusal in a gateway must be one). */
  #wsException: (new (error: object) => Error) | undefined;

  constructor(limits: FloodgateLimits, modules?: ModulesContainer) {
    this.limits = limits;
    this.#modules = modules;
    const base = FloodgateGuard.prototype;
    this.#hooks = {
      skip: this.shouldSkip !== base.shouldSkip,
      tracker: this.getTracker !== base.getTracker,
      key: this.generateKey !== base.generateKey,
      io: this.getRequestResponse !== base.getRequestResponse,
    };
  }

  /** Makes every route's guard now, so that a bad setting fails the application's start, naming it. */
  async onModuleInit(): Promise<void> {
    if (this.#modules === undefined) return;
    let gateways = false;
    for (const found of routeClasses(this.#modules)) {
      this.#classes.set(found.type, found);
      gateways ||= found.kind === 'gateway';
      const prototype = found.type.prototype as Record<string, unknown>;
      for (const name of found.methods) {
        const handler = prototype[name];
        if (typeof handler === 'function') this.#guardOf(found.type, handler as Handler, found.kind);
      }
    }
    if (gateways && this.#wsException === undefined) {
      // Only an application with a gateway loads @nestjs/websockets (it has it, then).
      this.#wsException = (await import('@nestjs/websockets')).WsException as never;
    }
  }

  canActivate(context: ExecutionContext): MaybePromise<boolean> {
    const type = context.getType<string>();
    if (type !== 'http' && type !== 'graphql' && type !== 'ws') return true;
    const guard = this.#guardOf(context.getClass(), context.getHandler() as Handler, kindOf(type));
    if (guard === null) return true;
    const call = context.getArgs();
    if (decided.has(call)) return true;
    decided.add(call);
    if (!this.#hooks.skip) return this.#decide(context, type, guard);
    return andThen(this.shouldSkip(context), (skip) => skip || this.#decide(context, type, guard));
  }

  /**
   * Whether to leave this call unlimited (no headers either), before anything else is looked at. Default:
   * never (`@SkipRateLimit` and the `skip` option still apply).
   */
  protected shouldSkip(_context: ExecutionContext): boolean | Promise<boolean> {
    return false;
  }

  /**
   * Who a call counts against, instead of the `key` option: a string, or undefined for none (the
   * `onMissingKey` option decides then; by IP, by default). Default: the `key` option decides.
   */
  protected getTracker(
    _request: NestRequest,
    _context: ExecutionContext,
  ): string | undefined | Promise<string | undefined> {
    return undefined;
  }

  /**
   * The identifier stored for a key on a route: by default the key itself in the module's budget across the
   * application, and `<budget>:<key>` in a budget of the route's (or its controller's) own.
   */
  protected generateKey(route: LimitedRoute, key: string): string {
    return route.budget === '' ? key : `${route.budget}:${key}`;
  }

  /** The request and response of a call: HTTP's, GraphQL's context's `req`/`res`, a gateway's connection. */
  protected getRequestResponse(context: ExecutionContext): RequestResponse {
    return requestResponse(context, context.getType<LimitedContext>());
  }

  /**
   * Refuses a call: throws the refusal as it is (an `HttpException`), or in a gateway as a `WsException`
   * whose error is its body (Nest's gateways answer that with an `exception` event).
   */
  protected throwThrottlingException(context: ExecutionContext, refusal: FloodgateException): never {
    if (context.getType() === 'ws' && this.#wsException !== undefined)
      throw new this.#wsException(refusal.getResponse() as object);
    throw refusal;
  }

  #decide(context: ExecutionContext, type: string, guard: NonNullable<RouteGuard>): MaybePromise<boolean> {
    // An HTTP call's request and response are its first two arguments: read without building an object.
    const own = this.#hooks.io || type !== 'http' ? this.getRequestResponse(context) : undefined;
    const request = own === undefined ? context.getArgByIndex<NestRequest>(0) : own.request;
    const response = own === undefined ? context.getArgByIndex<unknown>(1) : own.response;
    if (request === undefined) throw noRequest();
    if (this.#hooks.tracker) tracked.set(request, context);
    const raw = request.raw ?? (request as NestRequest & NodeRequestLike);
    // The platform's `ip` follows the application's trust-proxy setting, unless Floodgate was given its own.
    const view = this.limits.ownTrust
      ? nodeView(raw)
      : nodeView(raw, request.ip ?? raw.socket?.remoteAddress);
    const tiers = guard.tiers;
    if (tiers === undefined)
      return this.#verdict(context, type, request, response, guard.http.decide(request, view));
    return andThen(tiers.pick(request, context), (name) => {
      const http = typeof name === 'string' ? tiers.guards.get(name) : undefined;
      if (http !== undefined)
        return this.#verdict(context, type, request, response, http.decide(request, view));
      // A tier nobody configured is the application's bug: loud, and never admitted.
      tiers.onError?.(
        new FloodgateError(
          'ERR_FLOODGATE_INVALID_REQUEST_VALUE',
          `floodgate: the request's tier must be one of ${[...tiers.guards.keys()].join(', ')}; got ${describe(name)}`,
        ),
        request,
      );
      this.throwThrottlingException(
        context,
        new FloodgateException(problem(400, 'Bad Request', "This request's rate-limit tier is not valid.")),
      );
    });
  }

  #verdict(
    context: ExecutionContext,
    type: string,
    request: NestRequest,
    response: unknown,
    decided: MaybePromise<Verdict>,
  ): MaybePromise<boolean> {
    return andThen(decided, (verdict) => {
      const res = typeof response === 'object' && response !== null ? (response as NestResponse) : undefined;
      if (res !== undefined) writeHeaders(res, verdict);
      if (verdict.kind === 'respond') this.throwThrottlingException(context, new FloodgateException(verdict));
      if (verdict.decision !== undefined) {
        if (type === 'http') request.rateLimit = verdict.decision;
        else keepDecision(context, verdict.decision);
      }
      if (verdict.settle === undefined) return true;
      if (res === undefined)
        verdict.settle(undefined); // a message has no end to wait for: its slot is free at once
      else settleWhenDone(res.raw ?? (res as unknown as NodeResponseLike), verdict.settle);
      return true;
    });
  }

  #guardOf(controller: Class, handler: Handler, kind: RouteKind): RouteGuard {
    let routes = this.#routes.get(controller);
    if (routes === undefined) {
      routes = new WeakMap();
      this.#routes.set(controller, routes);
    }
    let guard = routes.get(handler);
    if (guard === undefined) {
      guard = this.#make(controller, handler, kind);
      routes.set(handler, guard);
    }
    return guard;
  }

  #make(controller: Class, handler: Handler, kind: RouteKind): RouteGuard {
    const skip =
      this.reflector.get<boolean | undefined>(SKIP_RATE_LIMIT, handler) ??
      this.reflector.get<boolean | undefined>(SKIP_RATE_LIMIT, controller);
    if (skip === true) return null;
    const known = this.#classes.get(controller);
    const site: RouteSite = {
      controller,
      handler,
      classId: known?.id ?? controller.name,
      kind: known?.kind ?? kind,
    };
    const plan = this.limits.plan(
      site,
      this.reflector.get<RouteLimitOptions | undefined>(RATE_LIMIT, controller),
      this.reflector.get<RouteLimitOptions | undefined>(RATE_LIMIT, handler),
    );
    const { route } = plan;
    if (plan.plain && !this.#hooks.tracker && !this.#hooks.key) return { http: this.limits.base, route };
    if (plan.tiers === undefined) return { http: this.#http(plan), route };
    const guards = new Map<string, HttpGuard<NestRequest>>();
    for (const [name, tier] of plan.tiers.plans) guards.set(name, this.#http(tier));
    const onError = plan.options.onError;
    return { http: this.limits.base, route, tiers: { pick: plan.tiers.pick, guards, onError } };
  }

  /** A route's (or a tier's) own `HttpGuard`, its keys made by the hooks a subclass overrides. */
  #http({ options, route }: Pick<RoutePlan, 'options' | 'route'>): HttpGuard<NestRequest> {
    const key = this.#hooks.tracker
      ? (request: NestRequest) => this.getTracker(request, tracked.get(request)!)
      : options.key;
    const mapped =
      route.budget === '' && !this.#hooks.key ? key : mappedKey(key, (k) => this.generateKey(route, k));
    try {
      return new HttpGuard<NestRequest>(mapped === undefined ? options : { ...options, key: mapped });
    } catch (error) {
      throw at(route.id, error);
    }
  }
}

// Nest's dependency injection, applied as functions: the library is compiled without decorator syntax.
Inject(FloodgateLimits)(FloodgateGuard, undefined, 0);
Inject(ModulesContainer)(FloodgateGuard, undefined, 1);
Optional()(FloodgateGuard, undefined, 1);
Injectable()(FloodgateGuard);

import { systemClock } from '../core/clock.js';
import { invalidOption } from '../core/errors.js';
import { andThen } from '../core/maybe.js';
import { HttpGuard } from '../http/guard.js';
import { byIp, type KeyExtractor } from '../http/keys.js';
import { type HttpLimitOptions, shedderOf } from '../http/options.js';
import { Limiter } from '../limiter/limiter.js';
import { Shedder } from '../limiter/shedder.js';
import { relocated } from './option-errors.js';
import {
  type FloodgateModuleOptions,
  globalOption,
  type LimitScope,
  type NestRequest,
  ownsLimiter,
  type RouteLimitOptions,
  scopeOption,
} from './options.js';
import type { RouteKind } from './routes.js';

type Key = NonNullable<HttpLimitOptions<NestRequest>['key']>;

/** A limited handler, as the guard's `generateKey` hook sees it. */
export interface LimitedRoute {
  readonly controller: abstract new (...args: never[]) => unknown;
  readonly handler: (...args: never[]) => unknown;
  /** `Module.Controller.handler`: the same in every process, and apart for same-named classes. */
  readonly id: string;
  /**
   * The budget its keys count in: `""` for the module's budget across the application, otherwise the id
   * of where a budget of its own applies (`Module.Controller`, or the route's id).
   */
  readonly budget: string;
}

/** What a route is limited by: options for its `HttpGuard` (with the limiter), and the budget it counts in. */
export interface RoutePlan {
  readonly options: HttpLimitOptions<NestRequest>;
  readonly route: LimitedRoute;
  /** True when the route is limited exactly as the module's own guard limits (which it can then share). */
  readonly plain: boolean;
  /** With `tiers`: the function that names a call's tier, and each tier's options and budget. */
  readonly tiers?: {
    readonly pick: NonNullable<RouteLimitOptions['tier']>;
    readonly plans: ReadonlyMap<string, Pick<RoutePlan, 'options' | 'route'>>;
  };
}

/** Where a route is, for `plan`: its class and handler, their ids, and how its requests arrive. */
export interface RouteSite {
  readonly controller: LimitedRoute['controller'];
  readonly handler: LimitedRoute['handler'];
  /** `Module.Controller`. */
  readonly classId: string;
  readonly kind: RouteKind;
}

/**
 * The module's limits, checked once at start: the guard of routes with no settings of their own, and the
 * plan of each route that has some (made for every route when the application starts). Injectable as
 * `FloodgateLimits`. On application shutdown it closes what the module opened.
 */
export class FloodgateLimits {
  /** The module's limiter (also injectable as `Limiter`); none when the module only sheds. */
  readonly limiter: Limiter | undefined;
  /** Whether Floodgate's own `trustProxy` is set; otherwise the platform's `request.ip` is the client. */
  readonly ownTrust: boolean;
  /** Whether the guard limits every route (`APP_GUARD`), as the options say; true by default. */
  readonly global: boolean;
  /** What the module's budgets are shared across. */
  readonly scope: LimitScope;
  /** The guard of every route limited exactly by the module's options, in the `"app"` scope. */
  readonly base: HttpGuard<NestRequest>;
  readonly #shared: HttpLimitOptions<NestRequest>;
  readonly #clock: HttpLimitOptions<NestRequest>['clock'];
  /** The limiters of each `@RateLimit` that brings its own policies: one per settings object (and tier). */
  readonly #limiters = new WeakMap<object, Map<string, Limiter>>();
  /** Which class each budget belongs to, so that two classes never count under one name. */
  readonly #budgets = new Map<string, unknown>();
  readonly #opened: { close(): unknown }[] = [];

  constructor(options: FloodgateModuleOptions<NestRequest>) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption(
        'options',
        'an object such as { policies: { limit: 100, window: "1m" } }',
        options,
        'type',
      );
    }
    const { global, scope, shed, ...rest } = options;
    this.global = globalOption(global);
    this.scope = scopeOption(scope) ?? 'app';
    // One shedder for the whole application, however many routes have guards of their own.
    const shedder = shedderOf(shed);
    const common = shedder === undefined ? rest : { ...rest, shed: shedder };
    this.base = new HttpGuard(common);
    this.limiter = this.base.limiter;
    this.ownTrust = options.trustProxy !== undefined;
    this.#clock = options.clock;
    const { policies: _p, store: _s, limiter: _l, ...shared } = common;
    this.#shared = shared;
    // What the module made or was handed to hold: a limiter given whole is the application's to close.
    if (shedder !== undefined && !(shed instanceof Shedder)) this.#opened.push(shedder);
    const store = options.store as { close?: () => unknown } | undefined;
    if (store !== undefined && typeof store.close === 'function') this.#opened.push(store as never);
  }

  /**
   * The plan for a route, from the controller's and the handler's `@RateLimit` settings (the handler's
   * win). A bad combination of them and of the module's options throws here, naming the route.
   */
  plan(
    site: RouteSite,
    controller: RouteLimitOptions | undefined,
    handler: RouteLimitOptions | undefined,
  ): RoutePlan {
    const id = `${site.classId}.${site.handler.name}`;
    try {
      return this.#plan(site, id, controller, handler);
    } catch (error) {
      throw at(id, error);
    }
  }

  #plan(
    site: RouteSite,
    id: string,
    controller: RouteLimitOptions | undefined,
    handler: RouteLimitOptions | undefined,
  ): RoutePlan {
    const scope = handler?.scope ?? controller?.scope ?? this.scope;
    const owner = ownsLimiter(handler) ? handler : ownsLimiter(controller) ? controller : undefined;
    const budget =
      scope === 'route'
        ? id
        : owner === undefined || owner.limiter !== undefined
          ? ''
          : owner === handler
            ? id
            : site.classId;
    if (budget !== '') this.#claim(budget, site.controller);
    const route: LimitedRoute = { controller: site.controller, handler: site.handler, id, budget };
    const plain = controller === undefined && handler === undefined;
    if (plain && budget === '' && site.kind === 'controller')
      return { options: { ...this.#shared, ...this.#moduleLimiter() }, route, plain };
    const {
      policies: _cp,
      limiter: _cl,
      scope: _cs,
      tiers: _ct,
      tier: _ck,
      ...fromController
    } = controller ?? {};
    const { policies: _hp, limiter: _hl, scope: _hs, tiers: _ht, tier: _hk, ...fromHandler } = handler ?? {};
    const options = { ...this.#shared, ...fromController, ...fromHandler };
    if (options.countOnly !== undefined && site.kind !== 'controller') {
      // A message or a GraphQL field has no status of its own to tell a failure by.
      const what = site.kind === 'gateway' ? 'a WebSocket gateway' : 'a GraphQL resolver';
      throw invalidOption(
        'countOnly',
        `absent on ${what}: its answers have no HTTP status`,
        options.countOnly,
      );
    }
    if (owner?.tiers !== undefined) {
      const plans = new Map<string, Pick<RoutePlan, 'options' | 'route'>>();
      for (const name of Object.keys(owner.tiers)) {
        const tier = { ...route, budget: `${budget}/${name}` };
        plans.set(name, { options: { ...options, limiter: this.#limiterOf(owner, name) }, route: tier });
      }
      return {
        options: { ...options, ...this.#moduleLimiter() },
        route,
        plain: false,
        tiers: { pick: owner.tier!, plans },
      };
    }
    return {
      options: {
        ...options,
        ...(owner === undefined ? this.#moduleLimiter() : { limiter: this.#limiterOf(owner) }),
      },
      route,
      plain: false,
    };
  }

  /** Budgets are named by module and class: two classes of one name in one module cannot be told apart. */
  #claim(budget: string, owner: unknown): void {
    const claimed = this.#budgets.get(budget);
    if (claimed === undefined) this.#budgets.set(budget, owner);
    else if (claimed !== owner) {
      throw invalidOption(
        '@RateLimit',
        `given to one of two classes both named ${budget} (rename one, or move it to a module of its own)`,
        budget,
      );
    }
  }

  /**
   * The limiter of a `@RateLimit` that brings its own policies: one per settings object, on the module's
   * store. Classes that inherit the settings share the limiter, never the budget: their keys are apart.
   */
  /** The module's limiter as route options: none when the module only sheds. */
  #moduleLimiter(): { limiter?: Limiter } {
    return this.limiter === undefined ? {} : { limiter: this.limiter };
  }

  #limiterOf(owner: RouteLimitOptions, tier?: string): Limiter {
    if (owner.limiter !== undefined) return owner.limiter;
    let limiters = this.#limiters.get(owner);
    if (limiters === undefined) {
      limiters = new Map();
      this.#limiters.set(owner, limiters);
    }
    let limiter = limiters.get(tier ?? '');
    if (limiter === undefined) {
      const clock = this.#clock;
      limiter = new Limiter({
        policies: tier === undefined ? owner.policies! : owner.tiers![tier]!,
        traffic: true,
        // The module's store; a module that only sheds has none, and the route's budget its own.
        ...(this.limiter === undefined ? {} : { store: this.limiter.store }),
        ...(clock === undefined ? {} : { clock: { ...systemClock, now: () => clock.now() } }),
      });
      limiters.set(tier ?? '', limiter);
    }
    return limiter;
  }

  /** Gives back the store's quota leases (a `store` given to the module) and stops a shedder it made. */
  async onApplicationShutdown(): Promise<void> {
    const opened = this.#opened.splice(0);
    await Promise.all(opened.map((o) => o.close()));
  }
}

/** An option error from a route's settings, saying which route. */
export function at(route: string, error: unknown): unknown {
  return relocated(error, { route });
}

/** `key`, with what it extracts passed through `map` (nothing stays nothing, for `onMissingKey`). */
export function mappedKey(key: Key | undefined, map: (key: string) => string): Key {
  const from = key ?? byIp();
  if (typeof from === 'function') {
    return (request) => andThen(from(request), (k) => mapOne(k, map)) as string;
  }
  const extractor: KeyExtractor = {
    kind: 'floodgate-key',
    describes: from.describes,
    extract: (view, ip) => {
      const k = from.extract(view, ip);
      return k === undefined || k === '' ? k : map(k);
    },
  };
  return extractor;
}

/** A key as the guard would count it, mapped; anything else is left for the guard to refuse (400). */
function mapOne(key: unknown, map: (key: string) => string): unknown {
  if (typeof key === 'string') return key === '' ? key : map(key);
  return typeof key === 'number' && Number.isFinite(key) ? map(String(key)) : key;
}

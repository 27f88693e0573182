import { systemClock } from '../core/clock.js';
import { invalidOption } from '../core/errors.js';
import { andThen } from '../core/maybe.js';
import { HttpGuard } from '../http/guard.js';
import { byIp, type KeyExtractor } from '../http/keys.js';
import { type HttpLimitOptions, shedderOf } from '../http/options.js';
import { Limiter } from '../limiter/limiter.js';
import { globalOption, type NestRequest, ownsLimiter, type RouteLimitOptions } from './options.js';

type Key = NonNullable<HttpLimitOptions<NestRequest>['key']>;

/** A route's budget of its own: the limiter its `policies` made, and the prefix that keeps its keys apart. */
interface OwnBudget {
  readonly limiter: Limiter | undefined;
  readonly prefix: string | undefined;
}

/**
 * The module's limits, checked once at start: the guard of routes with no settings of their own, and, made
 * on a route's first request, the guard of each route that has some. Injectable as `FloodgateLimits`.
 */
export class FloodgateLimits {
  /** The module's limiter (also injectable as `Limiter`); none when the module only sheds. */
  readonly limiter: Limiter | undefined;
  /** Whether Floodgate's own `trustProxy` is set; otherwise the platform's `request.ip` is the client. */
  readonly ownTrust: boolean;
  readonly #base: HttpGuard<NestRequest>;
  readonly #shared: HttpLimitOptions<NestRequest>;
  readonly #clock: HttpLimitOptions<NestRequest>['clock'];
  readonly #budgets = new WeakMap<object, OwnBudget>();

  constructor(options: HttpLimitOptions<NestRequest> & { readonly global?: boolean }) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption(
        'options',
        'an object such as { policies: { limit: 100, window: "1m" } }',
        options,
        'type',
      );
    }
    const { global, shed, ...rest } = options;
    globalOption(global);
    // One shedder for the whole application, however many routes have guards of their own.
    const shedder = shedderOf(shed);
    const common = shedder === undefined ? rest : { ...rest, shed: shedder };
    this.#base = new HttpGuard(common);
    this.limiter = this.#base.limiter;
    this.ownTrust = options.trustProxy !== undefined;
    this.#clock = options.clock;
    const { policies: _p, store: _s, limiter: _l, ...shared } = common;
    this.#shared = shared;
  }

  /**
   * The guard for a route, from the controller's and the handler's `@RateLimit` settings (the handler's win);
   * the module's own guard when neither has any.
   */
  guard(
    controller: RouteLimitOptions | undefined,
    handler: RouteLimitOptions | undefined,
    label: { controller: string; handler: string },
  ): HttpGuard<NestRequest> {
    if (controller === undefined && handler === undefined) return this.#base;
    const owner = ownsLimiter(handler) ? handler : ownsLimiter(controller) ? controller : undefined;
    const budget =
      owner === undefined
        ? { limiter: this.limiter, prefix: undefined }
        : this.#budget(owner, owner === handler ? `${label.controller}.${label.handler}` : label.controller);
    const { policies: _cp, limiter: _cl, ...fromController } = controller ?? {};
    const { policies: _hp, limiter: _hl, ...fromHandler } = handler ?? {};
    const merged = { ...this.#shared, ...fromController, ...fromHandler };
    const key = merged.key ?? byIp();
    return new HttpGuard<NestRequest>({
      ...merged,
      ...(budget.limiter === undefined ? {} : { limiter: budget.limiter }),
      key: budget.prefix === undefined ? key : prefixed(key, budget.prefix),
    });
  }

  /**
   * The budget of a `@RateLimit` that brings its own policies: one per settings object, so a controller's
   * handlers share their controller's. Its keys are prefixed with where it was declared, because it shares
   * the module's store with the module's policies and with other routes'.
   */
  #budget(owner: RouteLimitOptions, label: string): OwnBudget {
    let budget = this.#budgets.get(owner);
    if (budget === undefined) {
      const clock = this.#clock;
      budget =
        owner.limiter !== undefined
          ? { limiter: owner.limiter, prefix: undefined }
          : {
              limiter: new Limiter({
                policies: owner.policies!,
                // The module's store; a module that only sheds has none, and the route's budget its own.
                ...(this.limiter === undefined ? {} : { store: this.limiter.store }),
                ...(clock === undefined ? {} : { clock: { ...systemClock, now: () => clock.now() } }),
              }),
              prefix: `${label}:`,
            };
      this.#budgets.set(owner, budget);
    }
    return budget;
  }
}

/** `key`, with `prefix` before what it extracts (nothing stays nothing, for `onMissingKey`). */
function prefixed(key: Key, prefix: string): Key {
  if (typeof key === 'function') {
    return (request) =>
      andThen(key(request), (k) => (k === undefined || k === '' ? k : prefix + k)) as string;
  }
  const extractor: KeyExtractor = {
    kind: 'floodgate-key',
    describes: key.describes,
    extract: (view, ip) => {
      const k = key.extract(view, ip);
      return k === undefined || k === '' ? k : prefix + k;
    },
  };
  return extractor;
}

import { type Clock, systemClock } from '../core/clock.js';
import { type Decision, decide } from '../core/decision.js';
import { FloodgateError, invalidOption, knownKeys } from '../core/errors.js';
import { boundKey } from '../core/keys.js';
import { allOf, andThen, type MaybePromise, promised } from '../core/maybe.js';
import { type Policy, type PolicySet, type PolicySpec, policySet, resolvePolicies } from '../core/policy.js';
import { Traffic, type TrafficOptions } from '../observe/traffic.js';
import type { GroupMember } from '../stores/group.js';
import { MemoryStore } from '../stores/memory.js';
import type { Store, StoreMode } from '../stores/store.js';
import { type StorePath, storePath } from './store-path.js';

/** An identifier: whom a limit applies to (a user id, an IP, a hashed API key). Numbers are converted. */
export type Key = string | number;

export interface LimiterOptions {
  /** The default policies, applied to every identifier without an override (all of them, all or nothing). */
  readonly policies: PolicySpec | readonly PolicySpec[];
  /**
   * Per-identifier policies on top of the defaults: a policy with a default's name replaces it for that
   * identifier, others are added. E.g. `{ 'user:42': [{ name: 'minute', limit: 1000, window: '1m' }] }`.
   */
  readonly overrides?: Readonly<Record<string, PolicySpec | readonly PolicySpec[]>>;
  /** Where state lives. Default: a new `MemoryStore` on `clock`. */
  readonly store?: Store;
  /** Time for the default store and for `waitFor`'s sleeps. Default: the system clock. */
  readonly clock?: Clock;
  /** Cost of a request when the call does not say (token-throttler's `cost`). Default: 1. */
  readonly cost?: number;
  /** Identifiers longer than this are replaced by their SHA-256 digest. Default: 256. */
  readonly maxKeyLength?: number;
  /**
   * Who is limited: per-second counts and the heavy hitters of the last 15 minutes, in bounded memory, read
   * by `floodgate/admin` (`limiter.traffic`). `true` or options turn it on. Off by default on a limiter of
   * your own: it costs about a tenth of a bare decision and up to a megabyte per busy limiter, which a
   * request's handling hides but a loop of decisions or thousands of limiters would not. The HTTP
   * middleware, Nest, `LoginGuard` and the commands turn it on for the limiters they make.
   */
  readonly traffic?: TrafficOptions | boolean;
}

/** The plain-data form of a limiter's configuration, as a JSON or YAML file would hold it. */
export interface LimiterConfig {
  readonly policies: PolicySpec | readonly PolicySpec[];
  readonly overrides?: Readonly<Record<string, PolicySpec | readonly PolicySpec[]>>;
  readonly cost?: number;
}

export interface CostOptions {
  /** Cost of this request, a non-negative integer. Default: the limiter's `cost`. */
  readonly cost?: number;
}

/** One identifier of a `Limiter.consumeAll` group: which limiter, which identifier, and its cost. */
export interface GroupRequest {
  readonly limiter: Limiter;
  readonly key: Key;
  /** Default: the limiter's `cost`. */
  readonly cost?: number;
}

export interface WaitOptions extends CostOptions {
  /** Longest time to wait, as ms. If the wait would be longer, rejects at once with `RateLimitedError`. Default: no bound. */
  readonly maxWait?: number;
  /** Aborts the wait: the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

export interface WrapOptions<A extends unknown[], R> extends CostOptions {
  /** The identifier for a call: a fixed key or a function of the call's arguments. */
  readonly key: Key | ((...args: A) => Key);
  /** What a refused call returns instead of throwing `RateLimitedError`. */
  readonly onLimited?: (decision: Decision, ...args: A) => R | Promise<R>;
}

/** Thrown by `wrap`ped functions and `waitFor` when a request is refused; `decision` says for how long. */
export class RateLimitedError extends FloodgateError {
  readonly decision: Decision;
  constructor(decision: Decision) {
    const wait = Number.isFinite(decision.retryAfter)
      ? `retry in ${Math.ceil(decision.retryAfter / 1000)} s`
      : 'the cost exceeds the limit';
    super('ERR_FLOODGATE_RATE_LIMITED', `rate limited by policy "${decision.policy}": ${wait}`);
    this.name = 'RateLimitedError';
    this.decision = decision;
  }
}

function trafficOf(option: TrafficOptions | boolean | undefined): Traffic | undefined {
  if (option === false || option === undefined) return undefined;
  if (option !== true && (typeof option !== 'object' || option === null))
    throw invalidOption('traffic', 'true, false, or an object such as { clients: 64 }', option, 'type');
  const settings: TrafficOptions = option === true ? {} : option;
  const clients = settings.clients;
  if (clients !== undefined && (!Number.isSafeInteger(clients) || clients < 1 || clients > 10_000))
    throw invalidOption('traffic.clients', 'an integer from 1 to 10000', clients);
  const clock = settings.clock ?? systemClock;
  if (typeof clock?.now !== 'function')
    throw invalidOption('traffic.clock', 'an object with a now() method', clock, 'type');
  return new Traffic(() => clock.now(), clients === undefined ? {} : { clients });
}

function checkCost(cost: unknown, option: string): number {
  if (typeof cost !== 'number') throw invalidOption(option, 'a non-negative integer', cost, 'type');
  if (!Number.isSafeInteger(cost) || cost < 0) throw invalidOption(option, 'a non-negative integer', cost);
  return cost;
}

/**
 * Decides whether requests may proceed, under policies declared once for every identifier.
 *
 * @example
 * const limiter = new Limiter({ policies: [
 *   { name: 'burst', limit: 10, window: '10s' },
 *   { name: 'sustained', algorithm: 'sliding-window-counter', limit: 20, window: '30s' },
 * ] });
 * const decision = await limiter.consume('user:42');
 * if (!decision.allowed) console.log(`retry in ${decision.retryAfter} ms`);
 */
export class Limiter {
  readonly store: Store;
  /** What this limiter decided, per second and per client (see `LimiterOptions.traffic`); undefined when off. */
  readonly traffic: Traffic | undefined;
  readonly #path: StorePath;
  readonly #clock: Clock;
  readonly #cost: number;
  readonly #maxKeyLength: number;
  #defaults: Policy[] = [];
  #overrideSpecs = new Map<string, Policy[]>();
  #defaultSet!: PolicySet;
  #overrides = new Map<string, PolicySet>();
  /** Why this limiter takes no concurrency policy (see `refuseConcurrency`); undefined when it may. */
  #noConcurrency: string | undefined;

  constructor(options: LimiterOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption(
        'options',
        'an object such as { policies: [{ limit: 5, window: "10s" }] }',
        options,
        'type',
      );
    }
    knownKeys(options, ['policies', 'overrides', 'store', 'clock', 'cost', 'maxKeyLength', 'traffic']);
    const { clock = systemClock, cost = 1, maxKeyLength = 256 } = options;
    if (typeof clock?.now !== 'function' || typeof clock.sleep !== 'function') {
      throw invalidOption('clock', 'an object with now() and sleep(ms) methods', clock, 'type');
    }
    if (!Number.isSafeInteger(maxKeyLength) || maxKeyLength < 16) {
      throw invalidOption('maxKeyLength', 'an integer of at least 16', maxKeyLength);
    }
    const store = options.store ?? new MemoryStore({ clock });
    if (typeof store?.apply !== 'function' || typeof store.reset !== 'function') {
      throw invalidOption('store', 'a Store (an object with apply() and reset() methods)', store, 'type');
    }
    this.#clock = clock;
    this.traffic = trafficOf(options.traffic);
    this.#cost = checkCost(cost, 'cost');
    this.#maxKeyLength = maxKeyLength;
    this.store = store;
    this.#path = storePath(store);
    this.configure({
      policies: options.policies,
      ...(options.overrides ? { overrides: options.overrides } : {}),
    });
  }

  /**
   * Decides several identifiers, of one limiter or of several sharing a store, together: all are charged,
   * or none. A request that must pass a per-user and a per-route limit spends neither when one refuses.
   * Decisions come back in the order asked; when the group is refused, those that would have allowed say
   * so and report their state as it stays. Decided in one step on the memory store and on Redis (on a
   * Cluster, when the identifiers share a hash slot); a store that cannot, each is charged and what was
   * charged is given back at once on a refusal. Concurrency policies are refused here: a slot is held
   * for a request's duration, which a group decision does not know.
   *
   *     const [user, route] = await Limiter.consumeAll([
   *       { limiter: perUser, key: 'user:42' },
   *       { limiter: perRoute, key: 'POST /orders', cost: 2 },
   *     ]);
   */
  static consumeAll(requests: readonly GroupRequest[]): MaybePromise<Decision[]> {
    if (!Array.isArray(requests)) {
      throw invalidOption('requests', 'a list of { limiter, key, cost }', requests, 'type');
    }
    if (requests.length === 0) return [];
    const store = (requests[0] as GroupRequest | undefined)?.limiter?.store;
    const members: GroupMember[] = [];
    const owners: Limiter[] = [];
    const index: number[] = [];
    const seen = new Map<string, number>();
    requests.forEach((request, i) => {
      const limiter = request?.limiter;
      if (!(limiter instanceof Limiter)) {
        throw invalidOption(`requests[${i}].limiter`, 'a Limiter', limiter, 'type');
      }
      if (limiter.store !== store) {
        throw invalidOption(`requests[${i}].limiter`, "a limiter on requests[0]'s store", 'another store');
      }
      const cost = limiter.#prepare(request.key, request.cost);
      const id = typeof request.key === 'string' ? request.key : String(request.key);
      const set = limiter.#setFor(id);
      if (set.concurrent) {
        throw invalidOption(
          `requests[${i}].limiter`,
          'a limiter without concurrency policies',
          'one with them',
        );
      }
      const key = boundKey(id, limiter.#maxKeyLength);
      // The same state asked for twice is one member at the summed cost: two would each see it uncharged.
      // JSON keeps it injective: a key holding a newline cannot pass for another key and policy list.
      const same = JSON.stringify([key, ...set.policies.map((p) => p.id)]);
      const at = seen.get(same);
      if (at !== undefined) {
        members[at] = { ...members[at]!, cost: members[at]!.cost + cost };
        index.push(at);
        return;
      }
      seen.set(same, members.length);
      index.push(members.length);
      members.push({ key, set, cost });
      owners.push(limiter);
    });
    const inOrder = (decisions: readonly Decision[]) => {
      const out = index.map((m) => decisions[m]!);
      // Each member's limiter counts its own identifier's decision, as a single consume would.
      for (let i = 0; i < out.length; i++)
        owners[index[i]!]!.traffic?.decided(members[index[i]!]!.key, out[i]!);
      return out;
    };
    const grouped = members.length > 1 ? store!.applyGroup?.(members) : undefined;
    if (grouped !== undefined) {
      return andThen(grouped, (results) =>
        inOrder(results.map((r, m) => decide(members[m]!.set.policies, r))),
      );
    }
    const charged = members.map((m, i) => owners[i]!.#path.decide(m.key, m.set, m.cost, 'consume'));
    return andThen(allOf(charged), (decisions) => {
      if (decisions.every((d) => d.allowed)) return inOrder(decisions);
      // Given back while the state it was charged to lasts (a window that has ended keeps its count).
      const back = decisions.map((d, i) => {
        const m = members[i]!;
        return d.allowed && owners[i]!.#clock.now() < d.resetAt
          ? owners[i]!.#path.decide(m.key, m.set, m.cost, 'refund')
          : d;
      });
      return andThen(allOf(back), inOrder);
    });
  }

  /** Builds a limiter from plain configuration data (e.g. parsed JSON or YAML). */
  static fromConfig(
    config: LimiterConfig,
    options: Omit<LimiterOptions, 'policies' | 'overrides' | 'cost'> = {},
  ): Limiter {
    if (typeof config !== 'object' || config === null)
      throw invalidOption('config', 'an object', config, 'type');
    knownKeys(config, ['policies', 'overrides', 'cost'], 'config.');
    return new Limiter({ ...options, ...config });
  }

  /**
   * Replaces all policies and overrides at once (validated first: on error nothing changes). State of
   * policies whose name and parameters are unchanged is kept.
   */
  configure(config: Omit<LimiterConfig, 'cost'>): void {
    const defaults = this.#resolve(config.policies, 'policies');
    const overrides = new Map<string, Policy[]>();
    for (const [key, specs] of Object.entries(config.overrides ?? {})) {
      overrides.set(key, this.#resolve(specs, `overrides[${JSON.stringify(key)}]`));
    }
    this.#defaults = defaults;
    this.#overrideSpecs = overrides;
    this.#rebuild();
  }

  /** The current configuration as plain data. */
  config(): LimiterConfig {
    const overrides: Record<string, PolicySpec[]> = {};
    // Defined, not assigned: an identifier such as "__proto__" is then a key like any other, listed.
    for (const [key, policies] of this.#overrideSpecs)
      Object.defineProperty(overrides, key, {
        value: policies.map((p) => p.spec),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return { policies: this.#defaults.map((p) => p.spec), overrides, cost: this.#cost };
  }

  /** Adds a default policy (or replaces the one with the same name). */
  addPolicy(spec: PolicySpec): void {
    const [policy] = this.#resolve(spec, 'policy');
    this.#defaults = [...this.#defaults.filter((p) => p.name !== policy!.name), policy!];
    this.#rebuild();
  }

  /** Removes a default policy by name; returns whether it existed. The last default cannot be removed. */
  removePolicy(name: string): boolean {
    if (!this.#defaults.some((p) => p.name === name)) return false;
    if (this.#defaults.length === 1) {
      throw invalidOption('policies', 'at least one policy: the last default cannot be removed', name);
    }
    this.#defaults = this.#defaults.filter((p) => p.name !== name);
    this.#rebuild();
    return true;
  }

  /** Sets the policies of one identifier on top of the defaults (see `LimiterOptions.overrides`). */
  setOverride(key: Key, specs: PolicySpec | readonly PolicySpec[]): void {
    const id = String(key);
    this.#overrideSpecs.set(id, this.#resolve(specs, `overrides[${JSON.stringify(id)}]`));
    this.#rebuild();
  }

  /**
   * From now on, refuses concurrency policies: in the defaults and in every override set later
   * (`setOverride`, `configure`, `addPolicy`, the admin API's), with `reason` in the error. For a limiter
   * whose callers cannot hold a slot for a request's duration: one decided in a `consumeAll` group, or by
   * outcome (`countOnly`), which an override with a concurrency policy would otherwise leave unenforced.
   * Throws, and changes nothing, when the limiter already has one.
   */
  refuseConcurrency(reason: string): void {
    if (typeof reason !== 'string' || reason === '')
      throw invalidOption('reason', 'a string saying why', reason, 'type');
    const sets: [string, readonly Policy[]][] = [['policies', this.#defaults]];
    for (const [key, policies] of this.#overrideSpecs)
      sets.push([`overrides[${JSON.stringify(key)}]`, policies]);
    for (const [path, policies] of sets) refuseConcurrent(policies, path, reason);
    this.#noConcurrency = reason;
  }

  /** Returns the identifier to the default policies; returns whether it had an override. */
  removeOverride(key: Key): boolean {
    const removed = this.#overrideSpecs.delete(String(key));
    if (removed) this.#rebuild();
    return removed;
  }

  /** The policies that apply to `key`. */
  policiesFor(key: Key): readonly Policy[] {
    return this.#setFor(String(key)).policies;
  }

  /** Decides a request and, if every policy allows it, charges its cost to all of them. */
  consume(key: Key, options?: CostOptions): Promise<Decision> {
    return promised(() => this.#decide(key, options?.cost, 'consume'));
  }

  /** Decides as `consume` would, without charging anything. */
  peek(key: Key, options?: CostOptions): Promise<Decision> {
    return promised(() => this.#decide(key, options?.cost, 'peek'));
  }

  /** Gives `cost` back to every policy of `key` (e.g. a request that turned out not to count). */
  refund(key: Key, cost?: number): Promise<Decision> {
    return promised(() => this.#decide(key, cost, 'refund'));
  }

  /** Releases the slots a concurrency policy granted to `leaseId`. */
  release(key: Key, leaseId: string): Promise<Decision> {
    return promised(() => this.#decide(key, 0, 'refund', leaseId));
  }

  /** Forgets all state of `key`. */
  async reset(key: Key): Promise<void> {
    const id = String(key);
    await this.store.reset(boundKey(id, this.#maxKeyLength), this.#setFor(id));
  }

  /** `consume`, answering only whether the request is allowed (token-throttler's `consume`). */
  allow(key: Key, options?: CostOptions): Promise<boolean> {
    return promised(() => this.#allow(key, options?.cost));
  }

  /** `consume` answered at once: for a store whose state is in this process (the memory store). */
  /**
   * `consume`, answered without a promise whenever the store can: always over a memory store, and over a
   * Redis store when the decision is made from a quota lease; otherwise a promise. For callers that can go
   * on at once (the HTTP guard). Invalid input throws (or rejects).
   */
  decide(key: Key, options?: CostOptions): MaybePromise<Decision> {
    return this.#decide(key, options?.cost, 'consume');
  }

  consumeSync(key: Key, options?: CostOptions): Decision {
    this.#mustBeSync();
    return this.#decide(key, options?.cost, 'consume') as Decision;
  }

  /** `allow` answered at once: the fastest path, a boolean. */
  allowSync(key: Key, options?: CostOptions): boolean {
    this.#mustBeSync();
    return this.#allow(key, options?.cost) as boolean;
  }

  /** Whether this limiter's store answers at once, so `consumeSync` and `allowSync` may be used. */
  get synchronous(): boolean {
    return this.#path.sync;
  }

  /**
   * Waits until the request is allowed, then consumes it: for callers that would rather wait than be
   * refused, such as clients throttling their own outgoing calls. Rejects with `RateLimitedError` at
   * once when the wait would exceed `maxWait` or the cost can never fit, and with the signal's reason when
   * aborted.
   */
  async waitFor(key: Key, options: WaitOptions = {}): Promise<Decision> {
    const { maxWait = Number.POSITIVE_INFINITY, signal } = options;
    if (typeof maxWait !== 'number' || !(maxWait >= 0))
      throw invalidOption('maxWait', 'a number of ms >= 0', maxWait);
    const deadline = this.#clock.now() + maxWait;
    for (;;) {
      signal?.throwIfAborted();
      const decision = await this.#decide(key, options.cost, 'consume');
      if (decision.allowed) return decision;
      // Infinity (a cost that can never fit) must refuse even without a deadline.
      const retryAt = this.#clock.now() + decision.retryAfter;
      if (retryAt > deadline || retryAt === Number.POSITIVE_INFINITY) throw new RateLimitedError(decision);
      await this.#clock.sleep(decision.retryAfter, signal);
    }
  }

  /**
   * Wraps a function so each call first consumes from the limiter (the token-throttler decorator's
   * equivalent). A refused call throws `RateLimitedError`, or returns what `onLimited` returns. Slots of a
   * concurrency policy are released when the call settles.
   */
  wrap<A extends unknown[], R>(
    fn: (...args: A) => R | Promise<R>,
    options: WrapOptions<A, R>,
  ): (...args: A) => Promise<R> {
    if (typeof fn !== 'function') throw invalidOption('fn', 'a function', fn, 'type');
    const { key, onLimited } = options;
    if (typeof key !== 'function' && typeof key !== 'string' && typeof key !== 'number') {
      throw invalidOption('key', 'a string, a number, or a function of the arguments', key, 'type');
    }
    if (onLimited !== undefined && typeof onLimited !== 'function') {
      throw invalidOption('onLimited', 'a function', onLimited, 'type');
    }
    const cost = options.cost === undefined ? undefined : checkCost(options.cost, 'cost');
    const keyOf = typeof key === 'function' ? key : () => key;
    return async (...args: A): Promise<R> => {
      const id = keyOf(...args);
      const decision = await this.#decide(id, cost, 'consume');
      if (!decision.allowed) {
        if (onLimited) return onLimited(decision, ...args);
        throw new RateLimitedError(decision);
      }
      if (decision.leaseId === undefined) return fn(...args);
      try {
        return await fn(...args);
      } finally {
        await this.release(id, decision.leaseId);
      }
    };
  }

  #resolve(specs: unknown, path: string): Policy[] {
    const policies = resolvePolicies(specs, path);
    if (this.#noConcurrency !== undefined) refuseConcurrent(policies, path, this.#noConcurrency, specs);
    return policies;
  }

  #rebuild(): void {
    this.#defaultSet = policySet(this.#defaults);
    const sets = new Map<string, PolicySet>();
    for (const [key, policies] of this.#overrideSpecs) sets.set(key, policySet(this.#defaults, policies));
    this.#overrides = sets;
  }

  #setFor(id: string): PolicySet {
    return this.#overrides.size === 0 ? this.#defaultSet : (this.#overrides.get(id) ?? this.#defaultSet);
  }

  #mustBeSync(): void {
    if (!this.#path.sync) {
      throw new FloodgateError(
        'ERR_FLOODGATE_STORE_NOT_SYNC',
        'floodgate: consumeSync and allowSync need a store with a synchronous path (MemoryStore); use consume or allow',
      );
    }
  }

  #prepare(key: Key, cost: number | undefined) {
    if (typeof key !== 'string' && typeof key !== 'number') {
      throw invalidOption('key', 'a string or a number', key, 'type');
    }
    return cost === undefined ? this.#cost : checkCost(cost, 'cost');
  }

  /** The one pipeline: validate, find the key's policies, bound the key, ask the store by the chosen path. */
  #decide(key: Key, cost: number | undefined, mode: StoreMode, lease?: string): MaybePromise<Decision> {
    const n = this.#prepare(key, cost);
    const id = typeof key === 'string' ? key : String(key);
    const bounded = boundKey(id, this.#maxKeyLength);
    const decided = this.#path.decide(bounded, this.#setFor(id), n, mode, lease);
    const traffic = this.traffic;
    if (traffic === undefined || mode !== 'consume') return decided;
    return counted(decided, (d) => traffic.decided(bounded, d));
  }

  #allow(key: Key, cost: number | undefined): MaybePromise<boolean> {
    const n = this.#prepare(key, cost);
    const id = typeof key === 'string' ? key : String(key);
    const bounded = boundKey(id, this.#maxKeyLength);
    const allowed = this.#path.allow(bounded, this.#setFor(id), n);
    const traffic = this.traffic;
    if (traffic === undefined) return allowed;
    return counted(allowed, (a) => traffic.allowed(bounded, a));
  }
}

/** `value`, once `count` has seen it: at once when it is there, else when the promise settles. */
function counted<T>(value: MaybePromise<T>, count: (value: T) => void): MaybePromise<T> {
  if (value instanceof Promise)
    return value.then((v) => {
      count(v);
      return v;
    });
  count(value);
  return value;
}

/** Throws, naming the policy's `algorithm`, when one of `policies` is a concurrency limit. */
export function refuseConcurrent(
  policies: readonly Policy[],
  path: string,
  reason: string,
  specs?: unknown,
): void {
  const at = policies.findIndex((p) => p.algorithm === 'concurrency');
  if (at === -1) return;
  // As resolvePolicies names a policy: by its index when the specs were a list (stored ones always are).
  const listed = specs === undefined || Array.isArray(specs);
  throw invalidOption(
    `${listed ? `${path}[${at}]` : path}.algorithm`,
    `another algorithm than "concurrency": ${reason}`,
    'concurrency',
  );
}

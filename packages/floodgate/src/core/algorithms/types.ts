import type { FlatAlgorithm } from './flat.js';

/**
 * The numbers every algorithm reports for one policy. Times are integer milliseconds.
 * - `remaining`: cost that could still be consumed right now (after this request, when it was allowed).
 * - `resetAt`: epoch ms at which the policy is fully replenished if nothing else is consumed, on the clock
 *   the decision was made by (the store's: Redis's own time for the Redis store).
 * - `retryAfter`: ms until a request of the same cost would be allowed; 0 when allowed, `Infinity` when the
 *   cost exceeds what the policy can ever allow.
 */
export interface PolicyNumbers {
  readonly allowed: boolean;
  readonly remaining: number;
  readonly resetAt: number;
  readonly retryAfter: number;
}

/**
 * What a store reports for one policy: the algorithm's numbers, and `resetAfter`, the ms from the
 * decision to `resetAt` on the store's own clock. Durations are what may cross to another machine's clock
 * (an HTTP client's, an app server's): `resetAt` minus a local `Date.now()` would mix two clocks.
 */
export interface PolicyResult extends PolicyNumbers {
  readonly resetAfter: number;
  /** Set when the store could not decide and its outage policy did instead: which policy. */
  readonly outage?: OutagePolicy;
}

/**
 * What a decision does while a shared store cannot answer: `open` allows, `closed` refuses, `fallback`
 * decides in this process's memory.
 */
export type OutagePolicy = 'open' | 'closed' | 'fallback';

/**
 * One step of an algorithm: its result plus the state to keep. `state` is the input state, unchanged (the
 * same reference), whenever the request was denied or only peeked at. `expiresAt` is when the state becomes
 * equivalent to having no state at all, so stores can drop it.
 */
export interface Outcome<S> extends PolicyNumbers {
  readonly state: S | undefined;
  readonly expiresAt: number;
}

/** The parameters of a policy as the algorithms read them: integers, validated once. */
export interface AlgorithmParams {
  /** Requests (or cost units) per window; for concurrency, the number of slots. */
  readonly limit: number;
  /** Window length in ms; for token bucket and GCRA the time to refill `limit`; for concurrency the lease timeout. */
  readonly window: number;
  /** Largest cost allowed at once: the bucket capacity for token bucket and GCRA, `limit` for the others. */
  readonly burst: number;
}

export type AlgorithmName =
  | 'token-bucket'
  | 'gcra'
  | 'fixed-window'
  | 'sliding-window-log'
  | 'sliding-window-counter'
  | 'concurrency';

/**
 * An algorithm is defined once as pure functions of `(state, now, cost, params)`. Stores call them (the
 * memory store directly) or mirror them (the Redis store, in Lua) and must agree on the shared vectors.
 */
export interface Algorithm<S> {
  readonly name: AlgorithmName;
  /** Decides a request of `cost` at `now`. Allowed: the new state. Denied: the same state. */
  consume(
    state: S | undefined,
    now: number,
    cost: number,
    params: AlgorithmParams,
    lease?: string,
  ): Outcome<S>;
  /**
   * Gives back `cost` previously consumed (never more than was taken; never below an empty state). For the
   * concurrency limiter, releases the lease `lease` when given.
   */
  refund(
    state: S | undefined,
    now: number,
    cost: number,
    params: AlgorithmParams,
    lease?: string,
  ): S | undefined;
  /** The flat form, when the state is a few numbers: stores may keep those and call it directly. */
  readonly flat?: FlatAlgorithm;
}

/** The outcome of a cost no policy state could ever allow (cost > burst). */
export function never<S>(state: S | undefined, remaining: number, resetAt: number): Outcome<S> {
  return {
    allowed: false,
    remaining,
    resetAt,
    retryAfter: Number.POSITIVE_INFINITY,
    state,
    expiresAt: resetAt,
  };
}

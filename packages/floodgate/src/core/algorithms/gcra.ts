import { type Algorithm, never, type Outcome, type Writable } from './types.js';

/**
 * GCRA state: the theoretical arrival time (TAT) held exactly as `t + r / limit` milliseconds, with `t` an
 * integer and `0 <= r < limit`. The emission interval `window / limit` is rarely a whole number of ms; a
 * float TAT would drift and could refuse a request retried exactly at its `retryAfter`. Scaling time by
 * `limit` makes every step integer arithmetic (exact below 2^53, which policy validation enforces).
 */
export interface GcraState {
  readonly t: number;
  readonly r: number;
}

/**
 * Generic Cell Rate Algorithm: `limit` per `window`, with bursts of up to `burst`.
 *
 * Guarantee: over any interval of length `d` ms, the allowed cost is at most `burst + d * limit / window`.
 * A request is allowed when, after adding its cost, the bucket would not overflow; a denied request changes
 * nothing. `retryAfter` is exact: the same request is allowed at `now + retryAfter` if nothing else happens.
 */
export const gcra: Algorithm<GcraState> = {
  name: 'gcra',
  consume(state, now, cost, { limit, window, burst }): Outcome<GcraState> {
    // Debt: how far the TAT lies ahead of now, in units of 1/limit ms (a token costs `window` units).
    const t = state !== undefined && state.t >= now ? state.t : now;
    const r = state !== undefined && state.t >= now ? state.r : 0;
    const debt = (t - now) * limit + r;
    const capacity = burst * window;
    const resetAt = r > 0 ? t + 1 : t;
    if (cost > burst) return never(state, Math.floor((capacity - debt) / window), resetAt);
    const needed = debt + cost * window;
    if (needed > capacity) {
      return {
        allowed: false,
        remaining: Math.floor((capacity - debt) / window),
        resetAt,
        retryAfter: Math.ceil((needed - capacity) / limit),
        state,
        expiresAt: resetAt,
      };
    }
    const sum = r + cost * window;
    const nt = t + Math.floor(sum / limit);
    const nr = sum % limit;
    const nextReset = nr > 0 ? nt + 1 : nt;
    return {
      allowed: true,
      remaining: Math.floor((capacity - needed) / window),
      resetAt: nextReset,
      retryAfter: 0,
      state: cost === 0 ? state : { t: nt, r: nr },
      expiresAt: nextReset,
    };
  },
  refund(state, now, cost, { limit, window }) {
    if (state === undefined || state.t < now) return undefined;
    const debt = (state.t - now) * limit + state.r - cost * window;
    if (debt <= 0) return undefined;
    return { t: now + Math.floor(debt / limit), r: debt % limit };
  },
  assign(target, source) {
    const t = target as Writable<GcraState>;
    t.t = source.t;
    t.r = source.r;
  },
};

import { type Algorithm, never, type Outcome, type Writable } from './types.js';

/** Sliding-counter state: the start of the current clock-aligned window and the counts of it and the one before. */
export interface SlidingCounterState {
  readonly start: number;
  readonly previous: number;
  readonly current: number;
}

/**
 * Sliding window counter: estimates the last `window` ms as the current window's count plus the previous
 * window's count weighted by how much of it still overlaps, `previous * (window - elapsed) / window`.
 * Windows are aligned to the clock (multiples of `window` since the epoch). All arithmetic is scaled by
 * `window`, so the estimate is compared exactly, without rounding.
 *
 * Guarantee: within each aligned window the allowed cost is at most `limit`, and over any interval of
 * length `window` at most `2 * limit`; it is exact when traffic is spread evenly, and O(1) in memory.
 */
export const slidingWindowCounter: Algorithm<SlidingCounterState> = {
  name: 'sliding-window-counter',
  consume(state, now, cost, { limit, window }): Outcome<SlidingCounterState> {
    const start = now - (now % window);
    let previous = 0;
    let current = 0;
    if (state !== undefined) {
      if (state.start === start) {
        previous = state.previous;
        current = state.current;
      } else if (state.start + window === start) {
        previous = state.current;
      }
    }
    const elapsed = now - start;
    const weighted = previous * (window - elapsed); // previous window's share, scaled by `window`
    const capacity = limit * window;
    const resetFor = (count: number) =>
      count > 0 ? start + 2 * window : previous > 0 ? start + window : now;
    const available = Math.max(0, Math.floor((capacity - weighted - current * window) / window));
    if (cost > limit) return never(state, available, resetFor(current));
    if (weighted + (current + cost) * window > capacity) {
      let retryAt: number;
      if (current + cost <= limit) {
        // This window suffices once enough of the previous one has slid out.
        retryAt = start + window - Math.floor(((limit - current - cost) * window) / previous);
      } else {
        // Next window: this window's count becomes the weighted one.
        // (limit - cost < current here, so this lands inside the next window.)
        retryAt = start + window + window - Math.floor(((limit - cost) * window) / current);
      }
      const resetAt = resetFor(current);
      return {
        allowed: false,
        remaining: available,
        resetAt,
        retryAfter: retryAt - now,
        state,
        expiresAt: resetAt,
      };
    }
    if (cost === 0) {
      const resetAt = resetFor(current);
      return { allowed: true, remaining: available, resetAt, retryAfter: 0, state, expiresAt: resetAt };
    }
    const next = current + cost;
    const resetAt = resetFor(next);
    return {
      allowed: true,
      remaining: Math.floor((capacity - weighted - next * window) / window),
      resetAt,
      retryAfter: 0,
      state: { start, previous, current: next },
      expiresAt: resetAt,
    };
  },
  refund(state, now, cost, { window }) {
    if (state === undefined) return undefined;
    const start = now - (now % window);
    if (state.start === start) {
      const current = Math.max(0, state.current - cost);
      return current > 0 || state.previous > 0 ? { start, previous: state.previous, current } : undefined;
    }
    if (state.start + window === start) {
      // The cost was counted in what is now the previous window.
      const previous = Math.max(0, state.current - cost);
      return previous > 0 ? { start, previous, current: 0 } : undefined;
    }
    return undefined;
  },
  assign(target, source) {
    const t = target as Writable<SlidingCounterState>;
    t.start = source.start;
    t.previous = source.previous;
    t.current = source.current;
  },
};

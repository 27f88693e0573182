import { type Algorithm, never, type Outcome, type Writable } from './types.js';

/** Fixed-window state: when the current window opened, and the cost counted in it. */
export interface FixedWindowState {
  readonly start: number;
  readonly count: number;
}

/**
 * Fixed window: at most `limit` per window of `window` ms. A window opens at a key's first request after the
 * previous one closed (like a counter key created with an expiry), so keys do not all reset at once.
 *
 * Guarantee: within each window the allowed cost is at most `limit`; over any interval of length `window`
 * it is at most `2 * limit` (the end of one window and the start of the next).
 */
export const fixedWindow: Algorithm<FixedWindowState> = {
  name: 'fixed-window',
  consume(state, now, cost, { limit, window }): Outcome<FixedWindowState> {
    const open = state !== undefined && now < state.start + window;
    const count = open ? state.count : 0;
    const end = open ? state.start + window : now;
    if (cost > limit) return never(state, limit - count, end);
    if (count + cost > limit) {
      return {
        allowed: false,
        remaining: limit - count,
        resetAt: end,
        retryAfter: end - now,
        state,
        expiresAt: end,
      };
    }
    if (cost === 0)
      return { allowed: true, remaining: limit - count, resetAt: end, retryAfter: 0, state, expiresAt: end };
    const start = open ? state.start : now;
    return {
      allowed: true,
      remaining: limit - count - cost,
      resetAt: start + window,
      retryAfter: 0,
      state: { start, count: count + cost },
      expiresAt: start + window,
    };
  },
  refund(state, now, cost, { window }) {
    if (state === undefined || now >= state.start + window) return undefined;
    const count = state.count - cost;
    return count > 0 ? { start: state.start, count } : undefined;
  },
  assign(target, source) {
    const t = target as Writable<FixedWindowState>;
    t.start = source.start;
    t.count = source.count;
  },
};

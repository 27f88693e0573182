import { allow, clear, deny, type FlatAlgorithm, objectForm } from './flat.js';

/** Fixed-window state: when the current window opened, and the cost counted in it. */
export interface FixedWindowState {
  readonly start: number;
  readonly count: number;
}

/** Flat layout: `[start, count]`. */
const flat: FlatAlgorithm = {
  slots: 2,
  decide(s, at, now, cost, { limit, window }, out, to, toAt) {
    const start0 = s[at]!;
    const open = now < start0 + window;
    const count = open ? s[at + 1]! : 0;
    const end = open ? start0 + window : now;
    if (cost > limit) return deny(out, limit - count, end, Number.POSITIVE_INFINITY);
    if (count + cost > limit) return deny(out, limit - count, end, end - now);
    if (cost === 0) {
      allow(out, limit - count, end);
      to[toAt] = start0;
      to[toAt + 1] = s[at + 1]!;
      return;
    }
    const start = open ? start0 : now;
    allow(out, limit - count - cost, start + window);
    to[toAt] = start;
    to[toAt + 1] = count + cost;
  },
  refund(s, at, now, cost, { window }) {
    const count = s[at + 1]! - cost;
    if (now >= s[at]! + window || count <= 0) {
      clear(s, at, 2);
      return false;
    }
    s[at + 1] = count;
    return true;
  },
};

/**
 * Fixed window: at most `limit` per window of `window` ms. A window opens at a key's first request after the
 * previous one closed (like a counter key created with an expiry), so keys do not all reset at once.
 *
 * Guarantee: within each window the allowed cost is at most `limit`; over any interval of length `window`
 * it is at most `2 * limit` (the end of one window and the start of the next).
 */
export const fixedWindow = objectForm<FixedWindowState>('fixed-window', flat, ['start', 'count']);

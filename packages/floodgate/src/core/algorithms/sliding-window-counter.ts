import { allow, clear, deny, type FlatAlgorithm, objectForm } from './flat.js';

/** Sliding-counter state: the start of the current clock-aligned window and the counts of it and the one before. */
export interface SlidingCounterState {
  readonly start: number;
  readonly previous: number;
  readonly current: number;
}

/** When the estimate falls back to zero, with `count` in the window opened at `start`. */
function resetFor(count: number, previous: number, start: number, window: number, now: number): number {
  return count > 0 ? start + 2 * window : previous > 0 ? start + window : now;
}

/** Flat layout: `[start, previous, current]`. */
const flat: FlatAlgorithm = {
  slots: 3,
  decide(s, at, now, cost, { limit, window }, out, to, toAt) {
    const start = now - (now % window);
    const held = s[at]!;
    let previous = 0;
    let current = 0;
    if (held === start) {
      previous = s[at + 1]!;
      current = s[at + 2]!;
    } else if (held + window === start) {
      previous = s[at + 2]!;
    }
    const elapsed = now - start;
    const weighted = previous * (window - elapsed); // previous window's share, scaled by `window`
    const capacity = limit * window;
    const available = Math.max(0, Math.floor((capacity - weighted - current * window) / window));
    if (cost > limit) {
      return deny(out, available, resetFor(current, previous, start, window, now), Number.POSITIVE_INFINITY);
    }
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
      return deny(out, available, resetFor(current, previous, start, window, now), retryAt - now);
    }
    if (cost === 0) {
      allow(out, available, resetFor(current, previous, start, window, now));
      to[toAt] = held;
      to[toAt + 1] = s[at + 1]!;
      to[toAt + 2] = s[at + 2]!;
      return;
    }
    const next = current + cost;
    allow(
      out,
      Math.floor((capacity - weighted - next * window) / window),
      resetFor(next, previous, start, window, now),
    );
    to[toAt] = start;
    to[toAt + 1] = previous;
    to[toAt + 2] = next;
  },
  refund(s, at, now, cost, { window }) {
    const start = now - (now % window);
    const held = s[at]!;
    if (held === start) {
      const current = Math.max(0, s[at + 2]! - cost);
      if (current > 0 || s[at + 1]! > 0) {
        s[at + 2] = current;
        return true;
      }
    } else if (held + window === start) {
      // The cost was counted in what is now the previous window.
      const previous = Math.max(0, s[at + 2]! - cost);
      if (previous > 0) {
        s[at] = start;
        s[at + 1] = previous;
        s[at + 2] = 0;
        return true;
      }
    }
    clear(s, at, 3);
    return false;
  },
};

/**
 * Sliding window counter: estimates the last `window` ms as the current window's count plus the previous
 * window's count weighted by how much of it still overlaps, `previous * (window - elapsed) / window`.
 * Windows are aligned to the clock (multiples of `window` since the epoch). All arithmetic is scaled by
 * `window`, so the estimate is compared exactly, without rounding.
 *
 * Guarantee: within each aligned window the allowed cost is at most `limit`, and over any interval of
 * length `window` at most `2 * limit`; it is exact when traffic is spread evenly, and O(1) in memory.
 */
export const slidingWindowCounter = objectForm<SlidingCounterState>('sliding-window-counter', flat, [
  'start',
  'previous',
  'current',
]);

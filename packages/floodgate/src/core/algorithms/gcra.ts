import { allow, clear, deny, type FlatAlgorithm, objectForm } from './flat.js';

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

/** Flat layout: `[t, r]`. */
const flat: FlatAlgorithm = {
  slots: 2,
  decide(s, at, now, cost, { limit, window, burst }, out, to, toAt) {
    const st = s[at]!;
    const sr = s[at + 1]!;
    // Debt: how far the TAT lies ahead of now, in units of 1/limit ms (a token costs `window` units).
    const live = st >= now;
    const t = live ? st : now;
    const r = live ? sr : 0;
    const debt = (t - now) * limit + r;
    const capacity = burst * window;
    const resetAt = r > 0 ? t + 1 : t;
    const remaining = Math.floor((capacity - debt) / window);
    if (cost > burst) return deny(out, remaining, resetAt, Number.POSITIVE_INFINITY);
    const needed = debt + cost * window;
    if (needed > capacity) return deny(out, remaining, resetAt, Math.ceil((needed - capacity) / limit));
    if (cost === 0) {
      allow(out, remaining, resetAt);
      to[toAt] = st;
      to[toAt + 1] = sr;
      return;
    }
    const sum = r + cost * window;
    // The remainder by multiplication: \`%\` on numbers past 2^31 is a call to fmod. Exact below 2^52.
    const carried = Math.floor(sum / limit);
    const nt = t + carried;
    const nr = sum - carried * limit;
    allow(out, Math.floor((capacity - needed) / window), nr > 0 ? nt + 1 : nt);
    to[toAt] = nt;
    to[toAt + 1] = nr;
  },
  admit(s, at, now, cost, { limit, window, burst }, to, toAt) {
    const st = s[at]!;
    const sr = s[at + 1]!;
    const live = st >= now;
    const t = live ? st : now;
    const r = live ? sr : 0;
    if (cost > burst || (t - now) * limit + r + cost * window > burst * window) return -1;
    if (cost === 0) {
      to[toAt] = st;
      to[toAt + 1] = sr;
      return r > 0 ? t + 1 : t;
    }
    const sum = r + cost * window;
    // The remainder by multiplication: \`%\` on numbers past 2^31 is a call to fmod. Exact below 2^52.
    const carried = Math.floor(sum / limit);
    const nt = t + carried;
    const nr = sum - carried * limit;
    to[toAt] = nt;
    to[toAt + 1] = nr;
    return nr > 0 ? nt + 1 : nt;
  },
  refund(s, at, now, cost, { limit, window }) {
    const t = s[at]!;
    const debt = (t - now) * limit + s[at + 1]! - cost * window;
    if (t < now || debt <= 0) {
      clear(s, at, 2);
      return false;
    }
    s[at] = now + Math.floor(debt / limit);
    s[at + 1] = debt % limit;
    return true;
  },
};

/**
 * Generic Cell Rate Algorithm: `limit` per `window`, with bursts of up to `burst`.
 *
 * Guarantee: over any interval of length `d` ms, the allowed cost is at most `burst + d * limit / window`.
 * A request is allowed when, after adding its cost, the bucket would not overflow; a denied request changes
 * nothing. `retryAfter` is exact: the same request is allowed at `now + retryAfter` if nothing else happens.
 */
export const gcra = objectForm<GcraState>('gcra', flat, ['t', 'r']);

import { type Algorithm, never, type Outcome } from './types.js';

/** Sliding-log state: the time and cost of each allowed request still inside the window, oldest first. */
export interface SlidingLogState {
  readonly times: readonly number[];
  readonly costs: readonly number[];
}

/** Index of the first entry still counted at `now` (an entry at `t` counts during `[t, t + window)`). */
function firstLive(state: SlidingLogState, now: number, window: number): number {
  let i = 0;
  while (i < state.times.length && state.times[i]! + window <= now) i++;
  return i;
}

/**
 * Sliding window log: remembers every allowed request of the last `window` ms.
 *
 * Guarantee (exact): over any interval of length `window`, the allowed cost is at most `limit`.
 * Cost: memory and time per decision grow with the number of requests in the window (up to `limit`
 * entries; requests at the same millisecond share one), so prefer the sliding window counter or GCRA for
 * large limits.
 */
export const slidingWindowLog: Algorithm<SlidingLogState> = {
  name: 'sliding-window-log',
  consume(state, now, cost, { limit, window }): Outcome<SlidingLogState> {
    const first = state === undefined ? 0 : firstLive(state, now, window);
    const times = state === undefined ? [] : state.times;
    const costs = state === undefined ? [] : state.costs;
    let used = 0;
    for (let i = first; i < costs.length; i++) used += costs[i]!;
    const last = times.length > first ? times[times.length - 1]! + window : now;
    if (cost > limit) return never(state, limit - used, last);
    if (used + cost > limit) {
      // Wait until the oldest entries have freed enough for this cost.
      let freed = 0;
      let i = first;
      const excess = used + cost - limit;
      while (freed < excess) freed += costs[i++]!;
      return {
        allowed: false,
        remaining: limit - used,
        resetAt: last,
        retryAfter: times[i - 1]! + window - now,
        state,
        expiresAt: last,
      };
    }
    if (cost === 0)
      return { allowed: true, remaining: limit - used, resetAt: last, retryAfter: 0, state, expiresAt: last };
    const nextTimes = times.slice(first);
    const nextCosts = costs.slice(first);
    if (nextTimes.length > 0 && nextTimes[nextTimes.length - 1] === now) {
      nextCosts[nextCosts.length - 1]! += cost;
    } else {
      nextTimes.push(now);
      nextCosts.push(cost);
    }
    return {
      allowed: true,
      remaining: limit - used - cost,
      resetAt: now + window,
      retryAfter: 0,
      state: { times: nextTimes, costs: nextCosts },
      expiresAt: now + window,
    };
  },
  refund(state, now, cost, { window }) {
    if (state === undefined) return undefined;
    const first = firstLive(state, now, window);
    const times = state.times.slice(first);
    const costs = state.costs.slice(first);
    // Give back the most recent consumption first: it is the one being undone.
    let left = cost;
    while (left > 0 && costs.length > 0) {
      const take = Math.min(left, costs[costs.length - 1]!);
      left -= take;
      costs[costs.length - 1]! -= take;
      if (costs[costs.length - 1] === 0) {
        costs.pop();
        times.pop();
      }
    }
    return times.length > 0 ? { times, costs } : undefined;
  },
};

import { type Algorithm, never, type Outcome } from './types.js';

/** One held slot group: who holds it, how many slots, and when it lapses if never released. */
export interface Lease {
  readonly id: string;
  readonly cost: number;
  readonly expiresAt: number;
}

/** Concurrency state: the leases currently held, in the order they were granted. */
export interface ConcurrencyState {
  readonly leases: readonly Lease[];
}

function live(state: ConcurrencyState | undefined, now: number): readonly Lease[] {
  if (state === undefined) return [];
  return state.leases.some((l) => l.expiresAt <= now)
    ? state.leases.filter((l) => l.expiresAt > now)
    : state.leases;
}

/**
 * Concurrency limit: at most `limit` slots held at once. A request acquires `cost` slots under a lease id
 * and gives them back with a release; a lease not released within `window` ms (the lease timeout) lapses, so
 * a crashed holder cannot leak a slot forever.
 *
 * Guarantee: at any instant, the cost of unreleased, unexpired leases is at most `limit`. `retryAfter` is
 * when enough leases lapse at the latest; releases can free slots sooner.
 */
export const concurrency: Algorithm<ConcurrencyState> = {
  name: 'concurrency',
  consume(state, now, cost, { limit, window }, lease): Outcome<ConcurrencyState> {
    const leases = live(state, now);
    let used = 0;
    let last = now;
    for (const l of leases) {
      used += l.cost;
      if (l.expiresAt > last) last = l.expiresAt;
    }
    if (cost > limit) return never(state, limit - used, last);
    if (used + cost > limit) {
      const byExpiry = [...leases].sort((a, b) => a.expiresAt - b.expiresAt);
      let freed = 0;
      let i = 0;
      while (freed < used + cost - limit) freed += byExpiry[i++]!.cost;
      return {
        allowed: false,
        remaining: limit - used,
        resetAt: last,
        retryAfter: byExpiry[i - 1]!.expiresAt - now,
        state,
        expiresAt: last,
      };
    }
    if (cost === 0 || lease === undefined) {
      return {
        allowed: true,
        remaining: limit - used - cost,
        resetAt: last,
        retryAfter: 0,
        state,
        expiresAt: last,
      };
    }
    const expiresAt = now + window;
    const until = Math.max(expiresAt, last);
    return {
      allowed: true,
      remaining: limit - used - cost,
      resetAt: until,
      retryAfter: 0,
      state: { leases: [...leases, { id: lease, cost, expiresAt }] },
      expiresAt: until,
    };
  },
  refund(state, now, cost, _params, lease) {
    let leases = live(state, now);
    if (lease !== undefined) {
      leases = leases.filter((l) => l.id !== lease);
    } else {
      // No lease named: give back `cost` slots from the most recent leases.
      const kept = [...leases];
      let left = cost;
      while (left > 0 && kept.length > 0) {
        const top = kept.pop()!;
        if (top.cost > left) kept.push({ ...top, cost: top.cost - left });
        left -= top.cost;
      }
      leases = kept;
    }
    return leases.length > 0 ? { leases } : undefined;
  },
};

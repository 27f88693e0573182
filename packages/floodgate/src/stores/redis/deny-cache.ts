import type { PolicyResult } from '../../core/algorithms/types.js';
import type { PolicySet } from '../../core/policy.js';

interface Denial {
  readonly set: PolicySet;
  readonly cost: number;
  /** Local time until which the identifier stays refused. */
  readonly until: number;
  readonly results: readonly PolicyResult[];
  /** Local time it was remembered at: a hit counts the results' durations down from it. */
  readonly at: number;
}

/**
 * Refusals remembered in this process until their retry time, so a flood from one identifier costs no
 * round trips. Bounded: past `max` identifiers the oldest is forgotten. A refund or reset in another
 * process is not seen until the retry time.
 */
export class DenyCache {
  readonly #denied = new Map<string, Denial>();

  constructor(
    private readonly max: number,
    private readonly clock: { now(): number },
  ) {}

  forget(key: string): void {
    this.#denied.delete(key);
  }

  /** The remembered refusal of `key` for this set and cost, its durations counted down to now. */
  lookup(key: string, set: PolicySet, cost: number): readonly PolicyResult[] | undefined {
    const hit = this.#denied.get(key);
    if (hit === undefined) return undefined;
    const now = this.clock.now();
    if (now >= hit.until) {
      this.#denied.delete(key);
      return undefined;
    }
    if (hit.set !== set || hit.cost !== cost) return undefined;
    const elapsed = now - hit.at;
    return hit.results.map((r) => ({
      ...r,
      retryAfter: r.allowed ? 0 : Math.max(1, r.retryAfter - elapsed),
      resetAfter: Math.max(0, r.resetAfter - elapsed),
    }));
  }

  /** Remembers a consume's results if they refuse for a while. */
  remember(key: string, set: PolicySet, cost: number, results: readonly PolicyResult[]): void {
    let until = 0;
    const now = this.clock.now();
    for (const r of results) {
      if (!r.allowed && Number.isFinite(r.retryAfter) && now + r.retryAfter > until)
        until = now + r.retryAfter;
    }
    if (until === 0) return;
    if (this.#denied.size >= this.max && !this.#denied.has(key)) {
      // Oldest first: Map keeps insertion order.
      const oldest = this.#denied.keys().next().value;
      if (oldest !== undefined) this.#denied.delete(oldest);
    }
    this.#denied.delete(key);
    this.#denied.set(key, { set, cost, until, results, at: now });
  }
}

import type { TopClients } from './traffic.js';

/** A limit that would have refused the busiest `share` of clients over the interval. */
export interface SuggestedLimit {
  /** The share of clients (0.01: the top 1%). */
  readonly share: number;
  /** How many clients that is. */
  readonly clients: number;
  /** Requests per minute per client: a limit at this rate refuses those above it. */
  readonly perMinute: number;
  /**
   * True when the summary lists too few clients to tell: the rate is then an upper bound (those clients
   * all sent at most this much, and a limit this high refuses at most that share).
   */
  readonly atMost: boolean;
}

export interface Suggestion {
  /** Distinct clients over the interval (estimate). */
  readonly clients: number;
  /** The interval the rates are over, in seconds. */
  readonly seconds: number;
  /** The busiest client's rate, requests per minute. */
  readonly busiestPerMinute: number;
  readonly limits: readonly SuggestedLimit[];
}

/**
 * From the distribution of per-client counts, the per-minute limit that would have refused the busiest 1%
 * and 0.1% of clients: a limit refuses the clients whose rate is above it, so for the top r clients it is
 * the (r+1)-th client's count, taken at its lower bound (count - error).
 */
export function suggestLimits(
  top: TopClients,
  now: number,
  shares: readonly number[] = [0.01, 0.001],
): Suggestion {
  const seconds = Math.max(1, (now - top.since) / 1000);
  const perMinute = (count: number) => Math.round((count * 60 * 100) / seconds) / 100;
  const listed = top.requests.clients;
  const clients = Math.max(top.distinct, listed.length);
  const limits = shares.map((share) => {
    const refused = Math.max(1, Math.ceil(clients * share));
    const next = listed[refused];
    if (next !== undefined && next.count - next.error > top.requests.bound) {
      return { share, clients: refused, perMinute: perMinute(next.count - next.error), atMost: false };
    }
    // The (r+1)-th client is not known for sure: every client not listed above the bound sent at most it.
    const known = next === undefined ? top.requests.bound : Math.max(top.requests.bound, next.count);
    return { share, clients: refused, perMinute: perMinute(known), atMost: true };
  });
  return { clients, seconds, busiestPerMinute: perMinute(listed[0]?.count ?? 0), limits };
}

import type { Decision } from '../core/decision.js';
import { DistinctCount, estimateDistinct } from './distinct.js';
import {
  ALLOWED,
  DEGRADED,
  LIMITED,
  OUTCOMES,
  type Outcome,
  type SeriesPoint,
  SeriesRing,
} from './series.js';
import { type HeavyHitter, mergeHeavyHitters, SpaceSaving } from './space-saving.js';

export interface TrafficOptions {
  /** Counters per heavy-hitter summary (per 10-second bucket); the error bound is N / clients. Default 64. */
  readonly clients?: number;
  /**
   * The time the series and buckets are on: the wall clock by default, whatever clock the limiter decides
   * on (the counts are for an operator's reading, and reading them never moves a decision's clock).
   */
  readonly clock?: { now(): number };
}

/** The intervals the heavy hitters are kept for. */
export type TrafficWindow = '1m' | '15m';

const BUCKET_MS = 10_000;
const BUCKETS = 90; // 15 minutes
const WINDOW_BUCKETS: Record<TrafficWindow, number> = { '1m': 6, '15m': BUCKETS };
const SERIES_SECONDS = 900;

/** One 10-second slice of the heavy hitters. */
interface Bucket {
  start: number;
  readonly requests: SpaceSaving;
  readonly refusals: SpaceSaving;
  readonly distinct: DistinctCount;
}

/** A bucket's summaries as plain data: what a process publishes, and what merges across processes. */
export interface BucketSnapshot {
  readonly start: number;
  readonly requests: {
    readonly entries: readonly HeavyHitter[];
    readonly floor: number;
    readonly total: number;
  };
  readonly refusals: {
    readonly entries: readonly HeavyHitter[];
    readonly floor: number;
    readonly total: number;
  };
  readonly distinct: readonly number[];
}

/** The heavy hitters over an interval: who sent most, who was refused most, how many clients in all. */
export interface TopClients {
  readonly window: TrafficWindow;
  /** The start of the oldest bucket counted (ms since the epoch); the interval runs from it to now. */
  readonly since: number;
  readonly requests: {
    readonly total: number;
    readonly bound: number;
    readonly clients: readonly HeavyHitter[];
  };
  readonly refusals: {
    readonly total: number;
    readonly bound: number;
    readonly clients: readonly HeavyHitter[];
  };
  /** Distinct clients seen (HyperLogLog estimate, about 6.5% standard error). */
  readonly distinct: number;
}

/**
 * What one limiter saw: per-second counts of each outcome for 15 minutes, and who sent and who was refused
 * most, in 10-second buckets for 15 minutes. Memory is fixed at construction (90 buckets of two summaries
 * of `clients` counters and a 256-byte distinct count, and a 900-second ring), whatever the number of
 * clients. Counting is a clock read, an increment and one or two summary updates.
 */
export class Traffic {
  readonly series = new SeriesRing(SERIES_SECONDS);
  readonly #buckets: Bucket[];
  #current: Bucket;
  readonly #now: () => number;

  constructor(now: () => number, options: TrafficOptions = {}) {
    const clients = options.clients ?? 64;
    this.#now = now;
    this.#buckets = Array.from({ length: BUCKETS }, () => ({
      start: Number.NEGATIVE_INFINITY,
      requests: new SpaceSaving(clients),
      refusals: new SpaceSaving(clients),
      distinct: new DistinctCount(),
    }));
    this.#current = this.#buckets[0]!;
  }

  /** Counts a limiter's decision for the identifier it was made for. */
  decided(key: string, decision: Decision): void {
    const reason = decision.reason;
    // Decided by the store's outage policy, not by the limits: neither the client's nor the limit's doing.
    const degraded = reason !== undefined && reason !== 'limit' && reason !== 'cost-exceeds-limit';
    this.#count(key, degraded ? DEGRADED : decision.allowed ? ALLOWED : LIMITED);
  }

  /** Counts a yes-or-no decision (`limiter.allow`) for the identifier it was made for. */
  allowed(key: string, allowed: boolean): void {
    this.#count(key, allowed ? ALLOWED : LIMITED);
  }

  /** Counts a request refused before any identifier was charged: shed, or a bad key or cost. */
  refused(outcome: Extract<Outcome, 'shed' | 'rejected'>): void {
    this.series.count(this.#now(), OUTCOMES.indexOf(outcome));
  }

  /** The heavy hitters of the last minute or 15 minutes, `n` of each at most. */
  top(window: TrafficWindow, n = 10): TopClients {
    return topOf(window, this.snapshot(window), n);
  }

  /** The buckets of the last minute or 15 minutes as plain data, to merge with other processes'. */
  snapshot(window: TrafficWindow): BucketSnapshot[] {
    const since = this.#now() - WINDOW_BUCKETS[window] * BUCKET_MS;
    const out: BucketSnapshot[] = [];
    for (const b of this.#buckets) {
      if (b.start <= since || b.start === Number.NEGATIVE_INFINITY) continue;
      out.push({
        start: b.start,
        requests: { entries: b.requests.entries(), floor: b.requests.floor, total: b.requests.total },
        refusals: { entries: b.refusals.entries(), floor: b.refusals.floor, total: b.refusals.total },
        distinct: Array.from(b.distinct.registers),
      });
    }
    return out;
  }

  /** The per-second counts of the last `seconds` (at most 900). */
  points(seconds = SERIES_SECONDS): SeriesPoint[] {
    return this.series.points(this.#now(), seconds);
  }

  #count(key: string, outcome: number): void {
    const now = this.#now();
    const bucket = now - this.#current.start < BUCKET_MS ? this.#current : this.#bucketAt(now);
    if (bucket.requests.add(key, 1)) bucket.distinct.add(key);
    if (outcome === LIMITED) bucket.refusals.add(key, 1);
    this.series.count(now, outcome);
  }

  #bucketAt(now: number): Bucket {
    const start = now - (now % BUCKET_MS);
    const bucket = this.#buckets[Math.floor(start / BUCKET_MS) % BUCKETS]!;
    if (bucket.start !== start) {
      bucket.start = start;
      bucket.requests.clear();
      bucket.refusals.clear();
      bucket.distinct.clear();
    }
    this.#current = bucket;
    return bucket;
  }
}

/** The heavy hitters of bucket snapshots (of one process, or of several: the merge is the same). */
export function topOf(window: TrafficWindow, buckets: readonly BucketSnapshot[], n: number): TopClients {
  const side = (pick: (b: BucketSnapshot) => BucketSnapshot['requests']) => {
    const parts = buckets.map(pick);
    return {
      total: parts.reduce((sum, p) => sum + p.total, 0),
      // Every listed count is at most this much above the truth; every client above it is listed.
      bound: parts.reduce((sum, p) => sum + p.floor, 0),
      clients: mergeHeavyHitters(parts),
    };
  };
  const requests = side((b) => b.requests);
  const refusals = side((b) => b.refusals);
  return {
    window,
    since: buckets.reduce((min, b) => Math.min(min, b.start), Number.POSITIVE_INFINITY),
    requests: { ...requests, clients: requests.clients.slice(0, n) },
    refusals: { ...refusals, clients: refusals.clients.slice(0, n) },
    // While no summary was full, every client is listed: their number is exact.
    distinct:
      requests.bound === 0
        ? requests.clients.length
        : estimateDistinct(buckets.map((b) => Uint8Array.from(b.distinct))),
  };
}

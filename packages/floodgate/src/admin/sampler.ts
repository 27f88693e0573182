import type { Limiter } from '../limiter/limiter.js';
import type { Shedder } from '../limiter/shedder.js';
import { History, type HistoryPoint, perSecond } from '../observe/history.js';

const SHEDDER = ['limit', 'inflight', 'baseline'] as const;
/** The running totals a store may keep in `stats` (RedisStore's), sampled into per-second counts. */
const STORE = ['scripts', 'decisions', 'failures', 'leases', 'leasedUnits', 'localDecisions'] as const;
type StoreCounter = (typeof STORE)[number];

/**
 * A store's counters, when it keeps them (RedisStore does; the memory store does not). Stores are told
 * apart by their counters, so views of one store (the proxy's rules, each under a prefix) show as one.
 */
function countersOf(store: unknown): Record<StoreCounter, number> | undefined {
  const stats = (store as { stats?: unknown } | undefined)?.stats;
  if (typeof stats !== 'object' || stats === null) return undefined;
  const s = stats as Record<string, unknown>;
  return typeof s.scripts === 'number' ? (s as Record<StoreCounter, number>) : undefined;
}

/**
 * What changes without a request to show it: the shedder's limit, in flight and baseline, and each store's
 * script calls and quota grants, sampled once a second (and at each read) into 15-minute rings.
 */
export class Sampler {
  readonly shedder = new History(SHEDDER);
  readonly #stores = new Map<object, History<StoreCounter>>();

  sample(now: number, shedder: Shedder | undefined, limiters: Iterable<readonly [string, Limiter]>): void {
    if (shedder !== undefined)
      this.shedder.record(now, [shedder.limit, shedder.inflight, shedder.baseline ?? Number.NaN]);
    for (const [, limiter] of limiters) {
      const counters = countersOf(limiter.store);
      if (counters === undefined) continue;
      let history = this.#stores.get(counters);
      if (history === undefined) {
        history = new History(STORE);
        this.#stores.set(counters, history);
      }
      history.record(
        now,
        STORE.map((name) => counters[name]),
      );
    }
  }

  shedderSeries(now: number, seconds: number): HistoryPoint<(typeof SHEDDER)[number]>[] {
    return this.shedder.points(now, seconds);
  }

  /** Each store the limiters count in that keeps counters: which limiters, the totals, and per second. */
  storesView(now: number, seconds: number, limiters: Iterable<readonly [string, Limiter]>) {
    const by = new Map<Record<StoreCounter, number>, string[]>();
    for (const [name, limiter] of limiters) {
      const counters = countersOf(limiter.store);
      if (counters !== undefined) by.set(counters, [...(by.get(counters) ?? []), name]);
    }
    return [...by].map(([counters, names]) => {
      const history = this.#stores.get(counters);
      return {
        limiters: names,
        totals: Object.fromEntries(STORE.map((n) => [n, counters[n]])),
        series: history === undefined ? [] : perSecond(history.points(now, seconds + 1), STORE),
      };
    });
  }
}

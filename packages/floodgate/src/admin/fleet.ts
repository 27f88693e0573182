import { invalidOption } from '../core/errors.js';
import type { Limiter } from '../limiter/limiter.js';
import { mergeHeavyHitters } from '../observe/space-saving.js';
import { type BucketSnapshot, type TopClients, type TrafficWindow, topOf } from '../observe/traffic.js';

/** The few Redis commands the fleet needs (ioredis' Redis and Cluster have them). */
export interface FleetClient {
  set(key: string, value: string, px: 'PX', ms: number): Promise<unknown>;
  zadd(key: string, score: number, member: string): Promise<unknown>;
  zremrangebyscore(key: string, min: number | string, max: number | string): Promise<unknown>;
  zrangebyscore(key: string, min: number | string, max: number | string): Promise<string[]>;
  mget(...keys: string[]): Promise<(string | null)[]>;
}

export interface FleetOptions {
  readonly client: FleetClient;
  /** The store's prefix: processes sharing it form one fleet. Default `floodgate:`. */
  readonly prefix?: string;
  /** This process's name in the fleet. */
  readonly id: string;
  readonly limiters: () => Iterable<readonly [string, Limiter]>;
  /** How often this process publishes (ms). Default 5000; a snapshot lives three times as long. */
  readonly every?: number;
  readonly clock?: { now(): number };
}

const WINDOWS: readonly TrafficWindow[] = ['1m', '15m'];
/** Entries kept per published summary: the traffic's own capacity per bucket. */
const KEEP = 64;

interface Published {
  readonly id: string;
  readonly at: number;
  readonly limiters: Record<string, Record<TrafficWindow, BucketSnapshot>>;
}

/**
 * A window's buckets as one summary of at most KEEP entries: merged (Space-Saving summaries add), then cut.
 * A client cut off had an upper bound of at most the first one cut, so that count joins the floor: every
 * client not listed is still at most `floor`, and every listed count at most `floor` too high.
 */
export function compact(buckets: readonly BucketSnapshot[]): BucketSnapshot {
  const side = (pick: (b: BucketSnapshot) => BucketSnapshot['requests']) => {
    const parts = buckets.map(pick);
    const merged = mergeHeavyHitters(parts);
    const floors = parts.reduce((sum, p) => sum + p.floor, 0);
    return {
      entries: merged.slice(0, KEEP),
      floor: Math.max(floors, merged[KEEP]?.count ?? 0),
      total: parts.reduce((sum, p) => sum + p.total, 0),
    };
  };
  const distinct = new Array<number>(buckets[0]?.distinct.length ?? 0).fill(0);
  for (const b of buckets)
    for (let i = 0; i < b.distinct.length; i++) distinct[i] = Math.max(distinct[i] ?? 0, b.distinct[i]!);
  return {
    start: buckets.reduce((min, b) => Math.min(min, b.start), Number.POSITIVE_INFINITY),
    requests: side((b) => b.requests),
    refusals: side((b) => b.refusals),
    distinct,
  };
}

/**
 * Each process publishes its limiters' traffic (one compacted summary per window, a few kB) under the
 * store's prefix every few seconds, with a TTL; any process reads the live ones and merges them.
 */
export class Fleet {
  readonly id: string;
  readonly #o: FleetOptions;
  readonly #index: string;
  readonly #every: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: FleetOptions) {
    if (typeof options?.client?.mget !== 'function')
      throw invalidOption('fleet.client', 'a Redis client (ioredis)', options?.client, 'type');
    const every = options.every ?? 5000;
    if (!Number.isInteger(every) || every < 100)
      throw invalidOption('fleet.every', 'an integer of at least 100 (ms)', every);
    this.#o = options;
    this.id = String(options.id);
    this.#every = every;
    // One hash tag for the fleet's keys, so MGET works on a Cluster too.
    this.#index = `${options.prefix ?? 'floodgate:'}{fleet}`;
    const clock = options.clock ?? { now: Date.now };
    this.#now = () => clock.now();
  }

  start(): this {
    this.#timer ??= setInterval(() => void this.publish().catch(() => {}), this.#every).unref();
    void this.publish().catch(() => {});
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async publish(): Promise<void> {
    const at = this.#now();
    const limiters: Published['limiters'] = {};
    for (const [name, limiter] of this.#o.limiters()) {
      const traffic = limiter.traffic;
      if (traffic === undefined) continue;
      limiters[name] = { '1m': compact(traffic.snapshot('1m')), '15m': compact(traffic.snapshot('15m')) };
    }
    const ttl = this.#every * 3;
    const body: Published = { id: this.id, at, limiters };
    await this.#o.client.set(`${this.#index}:${this.id}`, JSON.stringify(body), 'PX', ttl);
    await this.#o.client.zadd(this.#index, at + ttl, this.id);
  }

  /**
   * The live processes (each with its requests and refusals in the window, over its limiters) and, per
   * limiter, the merged heavy hitters of the window over all of them.
   */
  async view(window: TrafficWindow, n: number) {
    if (!WINDOWS.includes(window)) throw invalidOption('window', '1m or 15m', window);
    const now = this.#now();
    await this.#o.client.zremrangebyscore(this.#index, '-inf', now);
    const ids = await this.#o.client.zrangebyscore(this.#index, now, '+inf');
    const texts =
      ids.length === 0 ? [] : await this.#o.client.mget(...ids.map((id) => `${this.#index}:${id}`));
    const published = texts.flatMap((t) => (t === null ? [] : [JSON.parse(t) as Published]));
    const names = new Set(published.flatMap((p) => Object.keys(p.limiters)));
    const limiters: { name: string; processes: number; top: TopClients }[] = [];
    for (const name of names) {
      const parts = published.flatMap((p) => (p.limiters[name] ? [p.limiters[name][window]] : []));
      limiters.push({ name, processes: parts.length, top: topOf(window, parts, n) });
    }
    // Each process's own share of the window, over all its limiters: who carries the fleet's traffic.
    const processes = published.map((p) => {
      const own = Object.values(p.limiters).map((l) => l[window]);
      return {
        id: p.id,
        at: p.at,
        requests: own.reduce((sum, b) => sum + b.requests.total, 0),
        refusals: own.reduce((sum, b) => sum + b.refusals.total, 0),
      };
    });
    return { now, processes, limiters };
  }
}

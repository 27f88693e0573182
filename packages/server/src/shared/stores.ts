import { MemoryStore } from 'floodgate';
import type { RedisStore } from 'floodgate/redis';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { connectRedis, type OutagePolicy, sharedStore } from './redis.js';
import { registerStoreErrors, registerStoreMetrics } from './store-metrics.js';

/** Where a command keeps its limits, as its flags or file say. */
export interface StoreSettings {
  /** `memory`, or a Redis URL (`redis://`, `rediss://`, `redis-cluster://`). */
  readonly url: string;
  readonly leases?: boolean;
  /** The Redis store's outage policy (`fallback` by default); only with Redis. */
  readonly onStoreError?: OutagePolicy;
  /** Hears the store go down and come back (the decisions' store only): a health service follows it. */
  readonly onAvailability?: (available: boolean) => void;
}

/**
 * A command's rate-limit stores, made from one URL: a memory store, or a Redis store over a client this
 * owns (with its counts and failures in the command's metrics). `close` ends them in order: every Redis
 * store made gives back what it holds (awaited), then the client quits.
 */
export interface Stores {
  readonly kind: 'memory' | 'redis';
  /** The store decisions go to. */
  readonly store: MemoryStore | RedisStore;
  /** The Redis store, when there is one. */
  readonly redis: RedisStore | undefined;
  /** Its client, for what else a command keeps in Redis (the admin fleet view). */
  readonly client: Redis | Cluster | undefined;
  /**
   * Another Redis store over the same client with another outage policy (`floodgate serve` counts failed
   * logins in memory during an outage whatever the API does); closed with the others.
   */
  withOutagePolicy(onStoreError: OutagePolicy): RedisStore;
  close(): Promise<void>;
  /** Drops the connection at once: for a start that failed, when nothing was decided yet. */
  abandon(): void;
}

/** How long a stop waits for Redis to acknowledge QUIT. */
const QUIT_WITHIN = 1000;

export async function openStores(settings: StoreSettings, log: Logger, registry: Registry): Promise<Stores> {
  const errors = registerStoreErrors(registry);
  if (settings.url === 'memory') {
    const store = new MemoryStore();
    return {
      kind: 'memory',
      store,
      redis: undefined,
      client: undefined,
      withOutagePolicy: () => {
        throw new Error('the memory store has no outage policy');
      },
      close: async () => {},
      abandon: () => {},
    };
  }
  const client: Redis | Cluster = await connectRedis(settings.url);
  const made: RedisStore[] = [];
  const make = (
    onStoreError: OutagePolicy | undefined,
    leases: boolean,
    onAvailability?: (available: boolean) => void,
  ) => {
    const store = sharedStore(client, log, errors, {
      leases,
      ...(onStoreError === undefined ? {} : { onStoreError }),
      ...(onAvailability === undefined ? {} : { onAvailability }),
    });
    made.push(store);
    return store;
  };
  const redis = make(settings.onStoreError, settings.leases ?? false, settings.onAvailability);
  registerStoreMetrics(registry, redis.stats);
  let closing: Promise<void> | undefined;
  return {
    kind: 'redis',
    store: redis,
    redis,
    client,
    withOutagePolicy: (onStoreError) => make(onStoreError, false),
    close() {
      closing ??= (async () => {
        // What the stores give back is written on the client: it quits only once they are done.
        await Promise.all(made.map((store) => store.close()));
        // A frozen server never answers QUIT, and one that is down leaves it queued until a reconnection
        // fails: past a moment, the connection is dropped instead (whatever QUIT does later is ignored).
        let late: NodeJS.Timeout | undefined;
        await Promise.race([
          client.quit().then(
            () => {},
            () => {},
          ),
          new Promise<void>((resolve) => (late = setTimeout(resolve, QUIT_WITHIN))),
        ]);
        clearTimeout(late);
        client.disconnect();
      })();
      return closing;
    },
    abandon: () => client.disconnect(),
  };
}

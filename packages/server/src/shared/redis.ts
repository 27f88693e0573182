import { RedisStore } from 'floodgate/redis';
import { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { environmentError, usageError } from './errors.js';
import { redact } from './redact.js';

function redisClient(url: string): Redis | Cluster {
  if (url.startsWith('redis-cluster://')) {
    const nodes = url
      .slice('redis-cluster://'.length)
      .split(',')
      .map((hostPort) => {
        const [host = '127.0.0.1', port = '6379'] = hostPort.split(':');
        return { host, port: Number(port) };
      });
    return new Cluster(nodes, { lazyConnect: true, redisOptions: { maxRetriesPerRequest: 1 } });
  }
  return new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true });
}

/** The database index of a `redis://host:port/N` URL; undefined when the URL names none. */
function databaseOf(url: string): number | undefined {
  if (url.startsWith('redis-cluster://')) return undefined;
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    throw usageError(`--redis is not a valid URL: ${redact(url)}`);
  }
  if (path === '' || path === '/') return undefined;
  if (!/^\/\d{1,5}$/.test(path)) {
    throw usageError(`--redis: the path of ${redact(url)} must be a database number, such as /3`);
  }
  return Number(path.slice(1));
}

/** Connects to Redis (or a Cluster) by URL within 5 s, or throws an environment error that hides any password. */
export async function connectRedis(url: string): Promise<Redis | Cluster> {
  const db = databaseOf(url);
  const redis = redisClient(url);
  redis.on('error', () => {}); // reported through the store's onError
  try {
    await Promise.race([
      redis.connect(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5000).unref()),
    ]);
  } catch (error) {
    redis.disconnect();
    throw environmentError(`cannot connect to Redis at ${redact(url)}: ${redact((error as Error).message)}`);
  }
  if (db !== undefined) {
    // ioredis selects the URL's database as it connects, but a refused SELECT (an index past the server's
    // `databases`) only reaches its error event, and it goes on in database 0: ask again, and hear the answer.
    try {
      await (redis as Redis).select(db);
    } catch (error) {
      redis.disconnect();
      throw environmentError(
        `cannot use database ${db} of Redis at ${redact(url)}: ${(error as Error).message} (see the server's "databases" setting)`,
      );
    }
  }
  return redis;
}

/** The Redis store's outage policies (docs/stores.md, the options of `new RedisStore`), as every command's setting names them. */
export const OUTAGE_POLICIES = ['open', 'closed', 'fallback'] as const;
export type OutagePolicy = (typeof OUTAGE_POLICIES)[number];

/** What each outage policy does with a request while Redis is away, for the failure's log line. */
const WHILE_DOWN: Record<OutagePolicy, string> = {
  open: 'letting requests through until it recovers (onStoreError: open)',
  closed: 'refusing requests until it recovers (onStoreError: closed)',
  fallback: 'deciding in memory until it recovers (onStoreError: fallback)',
};

export interface SharedStoreOptions {
  readonly leases?: boolean;
  /** How decisions are made while Redis cannot answer; `fallback` (each process in memory) by default. */
  readonly onStoreError?: OutagePolicy;
  /** Hears the store go down (each failure) and come back: a health service's status follows it. */
  readonly onAvailability?: (available: boolean) => void;
}

/**
 * The commands' Redis store: while Redis is away it decides by the operator's outage policy, counts and
 * logs the failures (never with a URL's password: messages can echo the address), and logs the recovery.
 */
export function sharedStore(
  client: Redis | Cluster,
  log: Logger,
  failures: { inc(): void },
  { leases = false, onStoreError = 'fallback', onAvailability }: SharedStoreOptions = {},
): RedisStore {
  return new RedisStore({
    client,
    leases,
    onStoreError,
    onError: (error) => {
      failures.inc();
      onAvailability?.(false);
      log.warn(
        { err: redact(error.message), onStoreError },
        `rate-limit store failed; ${WHILE_DOWN[onStoreError]}`,
      );
    },
    onRecover: ({ downFor }) => {
      onAvailability?.(true);
      log.info({ downFor }, 'rate-limit store recovered');
    },
  });
}

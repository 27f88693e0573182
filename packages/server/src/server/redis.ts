import { RedisStore } from 'floodgate/redis';
import { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { redact } from '../shared/redact.js';

/** A start-up failure with a message for the operator (no stack trace). */
export class StartError extends Error {}

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

/** Connects to Redis (or a Cluster) by URL within 5 s, or throws a StartError that hides any password. */
export async function connectRedis(url: string): Promise<Redis | Cluster> {
  const redis = redisClient(url);
  redis.on('error', () => {}); // reported through the store's onError
  try {
    await Promise.race([
      redis.connect(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5000).unref()),
    ]);
  } catch (error) {
    redis.disconnect();
    throw new StartError(`cannot connect to Redis at ${redact(url)}: ${redact((error as Error).message)}`);
  }
  return redis;
}

/**
 * The commands' Redis store: decides in memory while Redis is away (each process on its own), counts and
 * logs the failures, and logs the recovery.
 */
export function sharedStore(client: Redis | Cluster, log: Logger, failures: { inc(): void }): RedisStore {
  return new RedisStore({
    client,
    onStoreError: 'fallback',
    onError: (error) => {
      failures.inc();
      log.warn({ err: error.message }, 'rate-limit store failed; deciding in memory until it recovers');
    },
    onRecover: ({ downFor }) => log.info({ downFor }, 'rate-limit store recovered'),
  });
}

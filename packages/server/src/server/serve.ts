import { createServer, type Server } from 'node:http';
import { Limiter, MemoryStore, type Store } from 'floodgate';
import { LoginGuard } from 'floodgate/node';
import { RedisStore } from 'floodgate/redis';
import { Cluster, Redis } from 'ioredis';
import { pino } from 'pino';
import { createApp } from './app.js';
import { policyOf, type ServeConfig } from './config.js';
import { EXAMPLE_USER, openDatabase } from './database.js';
import { createMetrics } from './metrics.js';

/** A start-up failure with a message for the operator (no stack trace). */
export class StartError extends Error {}

function redisClient(url: string): Redis | Cluster {
  const options = { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: true } as const;
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
  return new Redis(url, options);
}

export interface Running {
  server: Server;
  url: string;
  stop(): Promise<void>;
}

/** Starts the continents API; resolves once it listens. */
export async function serve(config: ServeConfig): Promise<Running> {
  const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime });
  const metrics = createMetrics();
  const { db, seeded } = await openDatabase(config.db);
  if (seeded.continents)
    log.info({ db: config.db }, 'created the continents table with the seven continents');
  if (seeded.exampleUser) {
    log.info(
      { user: EXAMPLE_USER.name, password: EXAMPLE_USER.password },
      'created the example user; add your own with `floodgate users add NAME`',
    );
  }

  let redis: Redis | Cluster | undefined;
  let store: Store = new MemoryStore();
  if (config.redis !== undefined) {
    redis = redisClient(config.redis);
    redis.on('error', () => {}); // reported through the store's onError
    try {
      await Promise.race([
        redis.connect(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5000).unref()),
      ]);
    } catch (error) {
      redis.disconnect();
      await db.close();
      throw new StartError(
        `cannot connect to Redis at ${config.redis.replace(/\/\/[^@]*@/, '//***@')}: ${(error as Error).message}`,
      );
    }
    store = new RedisStore({
      client: redis,
      onStoreError: 'fallback',
      onError: (error) => {
        metrics.storeErrors.inc();
        log.warn({ err: error.message }, 'rate-limit store failed; deciding in memory until it recovers');
      },
      onRecover: ({ downFor }) => log.info({ downFor }, 'rate-limit store recovered'),
    });
  }
  const limiter = new Limiter({ store, policies: policyOf(config) });
  const logins = new LoginGuard({ store });
  const handle = createApp({ db, limiter, logins, metrics, log });
  const server = createServer((req, res) => void handle(req, res));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    redis?.disconnect();
    await db.close();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new StartError(
        `port ${config.port} on ${config.host} is already in use; choose another with --port`,
      );
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
      throw new StartError(`cannot listen on host "${config.host}" (--host)`);
    if (code === 'EACCES')
      throw new StartError(`not allowed to listen on port ${config.port}; choose one above 1023 with --port`);
    throw error;
  }
  const { port } = server.address() as { port: number };
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  log.info(
    { url, db: db.kind, store: redis === undefined ? 'memory' : 'redis', policy: policyOf(config) },
    `listening on ${url}`,
  );

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      log.info('shutting down: finishing requests in flight');
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await db.close();
      if (redis !== undefined) await redis.quit().catch(() => redis?.disconnect());
      log.info('stopped');
    })();
    return stopping;
  };
  return { server, url, stop };
}

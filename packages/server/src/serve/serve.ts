import { createServer, type Server } from 'node:http';
import { Limiter, LoginGuard, MemoryStore, type Store } from 'floodgate';
import type { Cluster, Redis } from 'ioredis';
import { pino } from 'pino';
import { drain } from '../shared/drain.js';
import { listen } from '../shared/listen.js';
import { redact } from '../shared/redact.js';
import { connectRedis, sharedStore } from '../shared/redis.js';
import { createApp } from './app.js';
import { policyOf, type ServeConfig } from './config.js';
import { EXAMPLE_USER, openDatabase } from './database.js';
import { createMetrics } from './metrics.js';

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
    log.info({ db: redact(config.db) }, 'created the continents table with the seven continents');
  if (seeded.exampleUser) {
    log.info(
      { user: EXAMPLE_USER.name, password: EXAMPLE_USER.password },
      'created the example user; add your own with `floodgate users add NAME`',
    );
  }

  let redis: Redis | Cluster | undefined;
  let store: Store = new MemoryStore();
  if (config.redis !== undefined) {
    try {
      redis = await connectRedis(config.redis);
    } catch (error) {
      await db.close();
      throw error;
    }
    store = sharedStore(
      redis,
      log,
      metrics.storeErrors,
      config.onStoreError === undefined ? {} : { onStoreError: config.onStoreError },
    );
  }
  const limiter = new Limiter({ store, policies: policyOf(config) });
  const logins = new LoginGuard({ store });
  const handle = createApp({ db, limiter, logins, metrics, log });
  const server = createServer((req, res) => void handle(req, res));
  let url: string;
  try {
    url = await listen(server, config.host, config.port);
  } catch (error) {
    redis?.disconnect();
    await db.close();
    throw error;
  }
  log.info(
    { url, db: db.kind, store: redis === undefined ? 'memory' : 'redis', policy: policyOf(config) },
    `listening on ${url}`,
  );

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      log.info({ grace: config.grace }, 'shutting down: finishing requests in flight');
      await drain(server, config.grace, log);
      await db.close();
      if (redis !== undefined) await redis.quit().catch(() => redis?.disconnect());
      log.info('stopped');
    })();
    return stopping;
  };
  return { server, url, stop };
}

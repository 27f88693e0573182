// A process that runs on leases over many identifiers, then shuts down as an application would:
// `await store.close()`, then `await client.quit()`. Its exit code and stderr tell whether that was clean.
import { Redis } from 'ioredis';
import { Limiter } from '../../../src/limiter/limiter.js';
import { RedisStore } from '../../../src/stores/redis/index.js';

const keys = Number(process.env.KEYS ?? 10);
const client = new Redis(Number(process.env.REDIS_PORT), '127.0.0.1');
const store = new RedisStore({ client, prefix: process.env.PREFIX ?? 'shutdown:', leases: true });
const limiter = new Limiter({ store, policies: { algorithm: 'fixed-window', limit: 100_000, window: '1m' } });
for (let wave = 0; wave < 5; wave++) {
  await Promise.all(Array.from({ length: keys * 20 }, (_, i) => limiter.consume(`k${i % keys}`)));
}
const held = store.stats.leasedUnits - store.stats.localDecisions;
await store.close();
await client.quit();
process.stdout.write(`${JSON.stringify({ held, returned: store.stats.returnedUnits })}\n`);

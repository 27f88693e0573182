import { after, before } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { Redis } from 'ioredis';
import { Redis as Valkey } from 'iovalkey';
import { createClient } from 'redis';
import { redisUnderTest, storeConformance } from '../helpers/vectors.js';

let server: RedisServer;
let ioredis: Redis;
let valkey: Valkey;
let nodeRedis: ReturnType<typeof createClient>;

before(async () => {
  server = await RedisServer.start();
  ioredis = new Redis(server.port, '127.0.0.1');
  valkey = new Valkey(server.port, '127.0.0.1');
  nodeRedis = createClient({ url: server.url });
  await nodeRedis.connect();
});

after(async () => {
  ioredis.disconnect();
  valkey.disconnect();
  await nodeRedis.close();
  await server.stop();
});

storeConformance(
  'RedisStore with ioredis',
  redisUnderTest(() => ioredis),
);
storeConformance(
  'RedisStore with iovalkey',
  redisUnderTest(() => valkey),
);
storeConformance(
  'RedisStore with node-redis',
  redisUnderTest(() => nodeRedis),
);

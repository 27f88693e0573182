import { after, before } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { Redis } from 'ioredis';

/**
 * A redis-server of the test file's own, started before its tests and stopped after them, with an ioredis
 * client handed to `ready` once connected.
 */
export function useRedis(ready: (client: Redis) => void): void {
  let server: RedisServer;
  let client: Redis;
  before(async () => {
    server = await RedisServer.start();
    client = new Redis(server.port, '127.0.0.1');
    ready(client);
  });
  after(async () => {
    client.disconnect();
    await server.stop();
  });
}

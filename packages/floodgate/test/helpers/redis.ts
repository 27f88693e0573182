import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach } from 'node:test';
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

/**
 * A redis-server of the test file's own for outage tests: killed, frozen and restarted by the tests, and
 * after each test running and answering again, with no unhandled rejection left behind.
 */
export function useFaultyRedis(): () => RedisServer {
  let server: RedisServer;
  let unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  before(async () => {
    server = await RedisServer.start();
    process.on('unhandledRejection', onUnhandled);
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await server.stop();
  });
  beforeEach(() => {
    unhandled = [];
  });
  afterEach(async () => {
    // Rejections surface a turn later: give them one before checking.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, [], 'no unhandled rejection');
    if (!server.running) await server.restart();
    server.resume();
  });
  return () => server;
}

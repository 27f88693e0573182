import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { freePort, RedisServer } from '@floodgate/test-support';
import { Redis } from 'ioredis';
import { Limiter } from '../../src/limiter/limiter.js';
import { RedisStore } from '../../src/stores/redis/index.js';

// Quota leases when Redis fails under them: a dead port, a frozen server.

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
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(unhandled, [], 'no unhandled rejection');
  server.resume();
});

function ioredis(port: number): Redis {
  const client = new Redis(port, '127.0.0.1');
  client.on('error', () => {}); // reconnection errors are expected here; the store reports its own
  return client;
}

const policies = { algorithm: 'fixed-window', limit: 5, window: '1m' } as const;

/** 5 waves of 50 at once on one identifier: how many each store's limiter allowed. */
async function waves(stores: RedisStore[]): Promise<number[]> {
  const limiters = stores.map((store) => new Limiter({ store, policies }));
  const allowed = stores.map(() => 0);
  for (let wave = 0; wave < 5; wave++) {
    const all = await Promise.all(
      limiters.map((l) => Promise.all(Array.from({ length: 50 }, () => l.consume('hot')))),
    );
    all.forEach((decisions, i) => {
      assert.ok(decisions.every((d) => d.reason === undefined || d.reason === 'store-fallback'));
      allowed[i]! += decisions.filter((d) => d.allowed).length;
    });
  }
  return allowed;
}

describe('quota leases with onStoreError "fallback": each decision is its own fallback decision', () => {
  it('on a dead port: 5 of 250 allowed, 250 degraded', async () => {
    const client = ioredis(await freePort());
    const store = new RedisStore({ client, onStoreError: 'fallback', timeout: 100, leases: true });
    try {
      assert.deepEqual(await waves([store]), [5]);
      assert.equal(store.stats.degraded, 250);
      assert.equal(store.stats.leases, 0);
    } finally {
      await store.close();
      client.disconnect();
    }
  });

  it('on a frozen server (SIGSTOP): 5 of 250 per process, 250 degraded each', async () => {
    const clients = [ioredis(server.port), ioredis(server.port)];
    const stores = clients.map(
      (client) => new RedisStore({ client, onStoreError: 'fallback', timeout: 100, leases: true }),
    );
    try {
      for (const store of stores) await new Limiter({ store, policies }).consume('warm');
      server.pause();
      assert.deepEqual(await waves(stores), [5, 5]);
      assert.deepEqual(
        stores.map((s) => s.stats.degraded),
        [250, 250],
      );
    } finally {
      server.resume();
      await Promise.all(stores.map((s) => s.close()));
      for (const c of clients) c.disconnect();
    }
  });
});

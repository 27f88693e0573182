import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { ManualClock } from '../../src/core/clock.js';
import { Limiter } from '../../src/limiter/limiter.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { useRedis } from '../helpers/redis.js';

// Limiter.consumeAll on a real Redis: one script decides the group, all or none, under any concurrency.

let client: Redis;
useRedis((c) => {
  client = c;
});

const policies = {
  user: { name: 'user', algorithm: 'fixed-window', limit: 50, window: '1h' },
  route: { name: 'route', algorithm: 'sliding-window-counter', limit: 30, window: '1h' },
  tenant: [
    { name: 'tenant-burst', algorithm: 'token-bucket', limit: 40, window: '1h' },
    { name: 'tenant-hour', algorithm: 'gcra', limit: 45, window: '1h' },
  ],
} as const;

function limiters(store: RedisStore) {
  return {
    user: new Limiter({ store, policies: policies.user }),
    route: new Limiter({ store, policies: policies.route }),
    tenant: new Limiter({ store, policies: policies.tenant }),
  };
}

describe('Limiter.consumeAll on Redis', () => {
  it('admits exactly the tightest limit of 200 parallel groups from two processes, and charges nothing else', async () => {
    const prefix = `group-${Date.now()}:`;
    const a = limiters(new RedisStore({ client, prefix }));
    const b = limiters(new RedisStore({ client, prefix }));
    const group = (l: typeof a) =>
      Limiter.consumeAll([
        { limiter: l.user, key: 'u' },
        { limiter: l.route, key: 'POST /orders' },
        { limiter: l.tenant, key: 't' },
      ]);
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => group(i % 2 === 0 ? a : b)));
    const admitted = replies.filter((ds) => ds.every((d) => d.allowed)).length;
    assert.equal(admitted, 30);
    // The user and the tenant were charged for the 30 admitted groups only.
    assert.equal((await a.user.peek('u', { cost: 0 })).remaining, 20);
    assert.equal((await a.tenant.peek('t', { cost: 0 })).remaining, 10);
    const refused = replies.find((ds) => !ds.every((d) => d.allowed))!;
    assert.deepEqual(
      refused.map((d) => d.allowed),
      [true, false, true],
    );
  });

  it('decides as the memory store does, step by step on one clock', async () => {
    const clock = new ManualClock(1_000_000);
    const redis = limitersOn(new RedisStore({ client, prefix: `group-diff-${Date.now()}:`, clock }), clock);
    const memory = limitersOn(new MemoryStore({ clock }), clock);
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let step = 0; step < 300; step++) {
      clock.advance(Math.floor(random() * 4000));
      const ask = (l: ReturnType<typeof limitersOn>) => [
        { limiter: l.user, key: `u${Math.floor(step / 100)}`, cost: 1 + Math.floor(random() * 3) },
        { limiter: l.route, key: 'r', cost: 1 },
      ];
      const members = ask(redis);
      const mirror = members.map((m, i) => ({ ...m, limiter: i === 0 ? memory.user : memory.route }));
      const fromRedis = await Limiter.consumeAll(members);
      const fromMemory = await Limiter.consumeAll(mirror);
      assert.deepEqual(
        fromRedis.map((d) => [d.allowed, d.remaining, d.retryAfter]),
        fromMemory.map((d) => [d.allowed, d.remaining, d.retryAfter]),
        `step ${step}`,
      );
    }
  });

  it('decides a group by its outage policy while Redis is away, all or none on the fallback', async () => {
    const store = new RedisStore({
      client: deadClient(),
      onStoreError: 'fallback',
      timeout: 50,
      breaker: { failures: 1 },
    });
    const l = limiters(store);
    const group = () =>
      Limiter.consumeAll([
        { limiter: l.user, key: 'u' },
        { limiter: l.route, key: 'r' },
      ]);
    const first = await group();
    assert.deepEqual(
      first.map((d) => [d.allowed, d.reason]),
      [
        [true, 'store-fallback'],
        [true, 'store-fallback'],
      ],
    );
    store.close();
  });
});

function limitersOn(store: RedisStore | MemoryStore, clock: ManualClock) {
  return {
    user: new Limiter({
      store,
      clock,
      policies: { name: 'user', algorithm: 'fixed-window', limit: 10, window: '10s' },
    }),
    route: new Limiter({
      store,
      clock,
      policies: { name: 'route', algorithm: 'sliding-window-counter', limit: 6, window: '5s' },
    }),
  };
}

/** A client whose every call fails, as one cut off from its server. */
function deadClient() {
  const fail = () => Promise.reject(new Error('connection is closed'));
  return { evalsha: fail, eval: fail };
}

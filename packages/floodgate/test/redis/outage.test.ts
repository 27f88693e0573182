import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from '@floodgate/test-support';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { Limiter } from '../../src/limiter/limiter.js';
import { RedisStore, type StoreErrorPolicy } from '../../src/stores/redis/index.js';
import { SCRIPT } from '../../src/stores/redis/script.js';
import { useFaultyRedis } from '../helpers/redis.js';

// Outages for real: the test's own redis-server is killed, frozen and restarted under a live store.

const redis = useFaultyRedis();

function ioredis(port = redis().port): Redis {
  const client = new Redis(port, '127.0.0.1');
  client.on('error', () => {}); // reconnection errors are expected here; the store reports its own
  return client;
}

interface Watched {
  store: RedisStore;
  limiter: Limiter;
  errors: Error[];
  recovered: Promise<{ downFor: number }>;
}

function watched(client: unknown, onStoreError: StoreErrorPolicy): Watched {
  const errors: Error[] = [];
  let resolve!: (info: { downFor: number }) => void;
  const recovered = new Promise<{ downFor: number }>((r) => (resolve = r));
  const store = new RedisStore({
    client,
    onStoreError,
    timeout: 200,
    breaker: { failures: 2, probeInterval: 50 },
    onError: (e) => errors.push(e),
    onRecover: resolve,
  });
  const limiter = new Limiter({ store, policies: { limit: 2, window: '1h' } });
  return { store, limiter, errors, recovered };
}

const EXPECTED: Record<StoreErrorPolicy, boolean[]> = {
  open: [true, true, true, true],
  closed: [false, false, false, false],
  // An in-memory limit of 2 takes over: the Redis counts are not carried over.
  fallback: [true, true, false, false],
};

describe('RedisStore when Redis is killed mid-run and restarted', () => {
  for (const policy of ['open', 'closed', 'fallback'] as const) {
    it(`onStoreError "${policy}": answers by policy, breaks the circuit, recovers (ioredis)`, async (t) => {
      const client = ioredis();
      const { store, limiter, errors, recovered } = watched(client, policy);
      try {
        assert.equal((await limiter.consume('before')).allowed, true);
        assert.equal(store.stats.scripts, 1);
        await redis().kill();

        const decisions = [];
        const waits: number[] = [];
        for (let i = 0; i < 4; i++) {
          const started = performance.now();
          decisions.push(await limiter.consume('during'));
          waits.push(Math.round(performance.now() - started));
          if (i === 1) {
            assert.equal(store.healthy, false);
            assert.equal(errors.length, 2, 'each failed call reported');
          }
        }
        t.diagnostic(
          `wait per decision while down (timeout 200 ms, breaker after 2): ${waits.join(', ')} ms`,
        );
        assert.deepEqual(
          decisions.map((d) => d.allowed),
          EXPECTED[policy],
        );
        // The decisions say who made them: the outage policy, not the limits.
        assert.deepEqual(
          decisions.map((d) => d.reason),
          [1, 2, 3, 4].map(() => `store-${policy}`),
        );
        if (policy === 'closed')
          assert.deepEqual(
            decisions.map((d) => d.retryAfter),
            [50, 50, 50, 50],
          );
        // After two failures the breaker is open: the last two decisions never went to Redis.
        assert.equal(store.stats.scripts, 3);
        assert.equal(store.stats.degraded, 4);

        await redis().restart();
        const { downFor } = await recovered;
        assert.ok(downFor > 0);
        assert.equal(store.healthy, true);
        const back = await limiter.consume('after');
        assert.equal(back.allowed, true);
        assert.equal(back.remaining, 1);
        assert.equal(back.reason, undefined, 'decided by Redis again');
        assert.equal(store.stats.scripts, 4, 'decisions go to Redis again');
      } finally {
        store.close();
        client.disconnect();
      }
    });
  }

  it('onStoreError "fallback" with node-redis', async () => {
    const client = createClient({ url: redis().url });
    client.on('error', () => {});
    await client.connect();
    const { store, limiter, recovered } = watched(client, 'fallback');
    try {
      assert.equal((await limiter.consume('before')).allowed, true);
      await redis().kill();
      const during = [];
      for (let i = 0; i < 4; i++) during.push((await limiter.consume('during')).allowed);
      assert.deepEqual(during, EXPECTED.fallback);
      await redis().restart();
      await recovered;
      assert.equal((await limiter.consume('after')).remaining, 1);
    } finally {
      store.close();
      client.destroy();
    }
  });

  it('a frozen server costs each decision at most the timeout, then the breaker answers at once', async () => {
    const client = ioredis();
    const { store, limiter, errors, recovered } = watched(client, 'open');
    try {
      await limiter.consume('warm');
      redis().pause();
      const first = await limiter.consume('frozen');
      assert.equal(first.allowed, true);
      assert.equal((errors[0] as Error & { code?: string }).code, 'ERR_FLOODGATE_STORE_TIMEOUT');
      await limiter.consume('frozen');
      const calls = store.stats.scripts;
      await Promise.all(Array.from({ length: 50 }, () => limiter.consume('frozen')));
      assert.equal(store.stats.scripts, calls, 'breaker open: no call waits on Redis');
      redis().resume();
      await recovered;
      assert.equal((await limiter.consume('thawed')).allowed, true);
    } finally {
      store.close();
      client.disconnect();
    }
  });

  it('an unreachable server at start-up: decisions follow the policy, never hang', async () => {
    const client = ioredis(await freePort());
    const { store, limiter, errors } = watched(client, 'closed');
    try {
      const decision = await limiter.consume('x');
      assert.equal(decision.allowed, false);
      assert.equal(errors.length, 1);
      assert.equal(store.healthy, false);
    } finally {
      store.close();
      client.disconnect();
    }
  });

  it('reset rejects while Redis is down, and listeners that throw change nothing', async () => {
    const client = ioredis();
    const store = new RedisStore({
      client,
      timeout: 100,
      onStoreError: 'open',
      onError: () => {
        throw new Error('listener bug');
      },
    });
    const limiter = new Limiter({ store, policies: { limit: 1, window: '1h' } });
    try {
      await redis().kill();
      assert.equal((await limiter.consume('k')).allowed, true);
      await assert.rejects(limiter.reset('k'), { code: 'ERR_FLOODGATE_STORE_TIMEOUT' });
    } finally {
      store.close();
      client.disconnect();
    }
  });
});

describe('RedisStore and the script cache', () => {
  it('an emptied script cache (SCRIPT FLUSH, as after a restart or failover) costs no failed decision', async () => {
    const client = ioredis();
    const admin = ioredis();
    const store = new RedisStore({ client, onStoreError: 'closed' });
    const limiter = new Limiter({ store, policies: { limit: 5, window: '1m' } });
    try {
      assert.equal((await limiter.consume('s')).remaining, 4);
      await admin.script('FLUSH');
      assert.deepEqual(await admin.script('EXISTS', SCRIPT.sha), [0]);
      const again = await Promise.all([limiter.consume('s'), limiter.consume('s')]);
      assert.deepEqual(
        again.map((d) => d.remaining),
        [3, 2],
      );
      assert.equal(store.stats.failures, 0);
      assert.deepEqual(await admin.script('EXISTS', SCRIPT.sha), [1]);
    } finally {
      client.disconnect();
      admin.disconnect();
    }
  });
});

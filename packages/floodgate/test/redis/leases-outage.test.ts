import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { freePort } from '@floodgate/test-support';
import { Redis } from 'ioredis';
import { Limiter } from '../../src/limiter/limiter.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { useFaultyRedis } from '../helpers/redis.js';

// Quota leases when Redis fails under them (a dead port, a frozen server) and when the process shuts down.

const redis = useFaultyRedis();

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
    const clients = [ioredis(redis().port), ioredis(redis().port)];
    const stores = clients.map(
      (client) => new RedisStore({ client, onStoreError: 'fallback', timeout: 100, leases: true }),
    );
    try {
      for (const store of stores) await new Limiter({ store, policies }).consume('warm');
      redis().pause();
      assert.deepEqual(await waves(stores), [5, 5]);
      assert.deepEqual(
        stores.map((s) => s.stats.degraded),
        [250, 250],
      );
    } finally {
      redis().resume();
      await Promise.all(stores.map((s) => s.close()));
      for (const c of clients) c.disconnect();
    }
  });
});

describe('quota leases at shutdown', () => {
  it('await store.close() then await client.quit(): a clean exit, and the units are back in Redis', async () => {
    const prefix = 'shutdown:';
    const child = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', new URL('./workers/shutdown.ts', import.meta.url).pathname],
        { env: { ...process.env, REDIS_PORT: String(redis().port), PREFIX: prefix, KEYS: '10' } },
        (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr }),
      );
    });
    assert.doesNotMatch(child.stderr, /Connection is closed|EPIPE|Unhandled/);
    assert.equal(child.code, 0, child.stderr);
    const { held, returned } = JSON.parse(child.stdout) as { held: number; returned: number };
    assert.ok(held > 0 && returned === held, `${held} units held at close, ${returned} given back`);
    // What close() gave back reached Redis before the connection went: each key counts what it admitted.
    const client = ioredis(redis().port);
    const observer = new Limiter({
      store: new RedisStore({ client, prefix }),
      policies: { algorithm: 'fixed-window', limit: 100_000, window: '1m' },
    });
    try {
      for (let k = 0; k < 10; k++) {
        assert.equal((await observer.peek(`k${k}`, { cost: 0 })).remaining, 100_000 - 100, `k${k}`);
      }
    } finally {
      client.disconnect();
    }
  });
});

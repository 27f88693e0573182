import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { Limiter } from '../../src/limiter/limiter.js';
import { type RedisAdapter, RedisStore, redisAdapter } from '../../src/stores/redis/index.js';
import { useRedis } from '../helpers/redis.js';

let client: Redis;
useRedis((c) => {
  client = c;
});

const T0 = 1_700_000_000_000;

describe('RedisStore keys', () => {
  it('live under the prefix, share a hash tag per identifier, and expire with their state', async () => {
    // The server's clock: keys expire exactly when their state stops mattering.
    const store = new RedisStore({ client, prefix: 'app:' });
    const limiter = new Limiter({
      store,
      policies: [
        { name: 'second', limit: 2, window: '1s' },
        { name: 'minute', algorithm: 'fixed-window', limit: 10, window: '1m' },
      ],
    });
    await limiter.consume('user {7}');
    const keys = (await client.keys('app:*')).sort();
    assert.deepEqual(keys, ['app:{user %7b7%7d}:minute:fw:10:60000', 'app:{user %7b7%7d}:second:tb:2:1000']);
    // Each key lives exactly as long as its state matters: 500 ms of debt, a 60 s window.
    assert.ok((await client.pttl(keys[1]!)) <= 500);
    assert.ok((await client.pttl(keys[0]!)) > 59_000);
    await limiter.reset('user {7}');
    assert.deepEqual(await client.keys('app:*'), []);
  });

  it('with an injected clock, keys get a minute of slack (Redis expires them on its own clock)', async () => {
    const store = new RedisStore({ client, prefix: 'slack:', clock: { now: () => T0 } });
    await new Limiter({ store, policies: { limit: 2, window: '1s' } }).consume('s');
    const [key] = await client.keys('slack:*');
    const ttl = await client.pttl(key!);
    assert.ok(ttl > 60_000 && ttl <= 60_500, `ttl ${ttl}`);
  });

  it('a refund to empty deletes the key instead of storing an empty state', async () => {
    const store = new RedisStore({ client, prefix: 'refund:' });
    const limiter = new Limiter({ store, policies: { limit: 3, window: '1m' } });
    await limiter.consume('r', { cost: 2 });
    assert.equal((await client.keys('refund:*')).length, 1);
    await limiter.refund('r', 2);
    assert.deepEqual(await client.keys('refund:*'), []);
  });
});

describe('RedisStore deny cache', () => {
  it('answers a flood from a refused identifier without round trips, until its retry time', async () => {
    let now = T0;
    const store = new RedisStore({ client, prefix: 'deny:', denyCache: true, clock: { now: () => now } });
    const limiter = new Limiter({ store, policies: { limit: 2, window: '10s' } });
    const first = [];
    for (let i = 0; i < 10; i++) first.push(await limiter.consume('flood'));
    assert.deepEqual(
      first.map((d) => d.allowed),
      [true, true, false, false, false, false, false, false, false, false],
    );
    assert.equal(store.stats.scripts, 3, 'two allowed and the first refusal went to Redis');
    assert.equal(store.stats.cacheHits, 7);
    assert.equal(first[9]!.retryAfter, 5000);
    now += 4000;
    const later = await limiter.consume('flood');
    assert.equal(later.allowed, false);
    assert.equal(later.retryAfter, 1000, 'retryAfter counts down on a cached refusal');
    assert.equal(store.stats.scripts, 3);
    // Another identifier, or another cost, is not covered by the refusal.
    assert.equal((await limiter.consume('other')).allowed, true);
    assert.equal((await limiter.consume('flood', { cost: 0 })).allowed, true);
    assert.equal(store.stats.scripts, 5);
    now += 1000;
    assert.equal((await limiter.consume('flood')).allowed, true, 'at the retry time Redis is asked again');
    assert.equal(store.stats.scripts, 6);
  });

  it('forgets a refusal on refund and reset, and keeps at most maxKeys identifiers', async () => {
    const now = T0;
    const store = new RedisStore({
      client,
      prefix: 'deny2:',
      denyCache: { maxKeys: 2 },
      clock: { now: () => now },
    });
    const limiter = new Limiter({ store, policies: { limit: 1, window: '1m' } });
    for (const id of ['a', 'b', 'c']) {
      await limiter.consume(id);
      await limiter.consume(id); // refused: cached
    }
    const calls = store.stats.scripts;
    assert.equal((await limiter.consume('c')).allowed, false);
    assert.equal((await limiter.consume('b')).allowed, false);
    assert.equal(store.stats.scripts, calls, 'b and c are cached');
    assert.equal((await limiter.consume('a')).allowed, false);
    assert.equal(store.stats.scripts, calls + 1, 'a was evicted, the oldest of three');
    await limiter.refund('b', 1);
    assert.equal((await limiter.consume('b')).allowed, true);
    await limiter.reset('c');
    assert.equal((await limiter.consume('c')).allowed, true);
  });
});

describe('RedisStore coalescing', () => {
  it('sends the decisions of one tick in two script calls (so Redis works while replies are read), at most maxBatch each', async () => {
    const store = new RedisStore({ client, prefix: 'batch:', maxBatch: 60 });
    const limiter = new Limiter({ store, policies: { limit: 1, window: '1m' } });
    const decisions = await Promise.all(Array.from({ length: 100 }, (_, i) => limiter.consume(`k${i % 50}`)));
    assert.equal(decisions.filter((d) => d.allowed).length, 50);
    assert.equal(store.stats.scripts, 2, '100 decisions, 50 a call');
    assert.equal(store.stats.decisions, 100);
    const small = new RedisStore({ client, prefix: 'batch-small:', maxBatch: 10 });
    const exact = new Limiter({ store: small, policies: { limit: 1, window: '1m' } });
    const more = await Promise.all(Array.from({ length: 100 }, (_, i) => exact.consume(`k${i % 50}`)));
    assert.equal(more.filter((d) => d.allowed).length, 50, 'still exact, however the tick is split');
    assert.equal(small.stats.scripts, 10, 'maxBatch still bounds a call');
    const three = new RedisStore({ client, prefix: 'batch-three:' });
    await Promise.all(
      ['a', 'b', 'c'].map((k) =>
        new Limiter({ store: three, policies: { limit: 1, window: '1m' } }).consume(k),
      ),
    );
    assert.equal(three.stats.scripts, 2, 'three decisions: two and one');
    const one = new RedisStore({ client, prefix: 'batch-one:' });
    await new Limiter({ store: one, policies: { limit: 1, window: '1m' } }).consume('a');
    assert.equal(one.stats.scripts, 1, 'one decision, one call');
  });

  it('sends a lone decision at once, with no call outstanding; while one is, the next wait for the end of the turn', async () => {
    // The real client, watched: each script call is counted as it is handed to the client.
    const real = redisAdapter(client);
    let sent = 0;
    const watched: RedisAdapter = {
      cluster: false,
      evalsha: (...args) => {
        sent++;
        return real.evalsha(...args);
      },
      eval: (...args) => real.eval(...args),
    };
    const store = new RedisStore({ client: watched, prefix: 'batch-now:' });
    const limiter = new Limiter({ store, policies: { limit: 10, window: '1m' } });
    let turnEnded = false;
    setImmediate(() => {
      turnEnded = true;
    });
    const first = limiter.consume('a');
    for (let i = 0; i < 10 && sent === 0; i++) await Promise.resolve();
    assert.equal(sent, 1, 'the lone decision went out within the task that made it');
    assert.equal(turnEnded, false, 'before the end of the turn');
    // One call outstanding: these two wait for the end of the turn, and travel together.
    const more = [limiter.consume('b'), limiter.consume('c')];
    for (let i = 0; i < 10; i++) await Promise.resolve();
    assert.equal(sent, 1, 'not sent while a call is outstanding and the turn goes on');
    const decisions = await Promise.all([first, ...more]);
    assert.ok(decisions.every((d) => d.allowed));
    assert.equal(
      store.stats.scripts,
      3,
      'the two waiting decisions went at the end of the turn, in its two calls',
    );
  });
});

describe('RedisStore options', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['options', () => null, /"RedisStore options" must be an object/],
    ['client missing', () => ({}), /"client" must be an ioredis, iovalkey or node-redis client/],
    ['client not a client', () => ({ client: { get() {} } }), /"client" must be an ioredis/],
    ['prefix', () => ({ client, prefix: 5 }), /"prefix" must be a string/],
    [
      'onStoreError',
      () => ({ client, onStoreError: 'ignore' }),
      /"onStoreError" must be one of "open", "closed", "fallback"/,
    ],
    ['timeout', () => ({ client, timeout: 'soon' }), /"timeout" must be a positive integer of milliseconds/],
    ['timeout zero', () => ({ client, timeout: 0 }), /"timeout"/],
    ['breaker', () => ({ client, breaker: true }), /"breaker" must be false or/],
    [
      'breaker.failures',
      () => ({ client, breaker: { failures: 0 } }),
      /"breaker.failures" must be a positive integer/,
    ],
    [
      'breaker.probeInterval',
      () => ({ client, breaker: { probeInterval: '-1s' } }),
      /"breaker.probeInterval"/,
    ],
    ['denyCache', () => ({ client, denyCache: 'yes' }), /"denyCache" must be a boolean or/],
    [
      'denyCache.maxKeys',
      () => ({ client, denyCache: { maxKeys: 1.5 } }),
      /"denyCache.maxKeys" must be a positive/,
    ],
    ['maxBatch', () => ({ client, maxBatch: '10' }), /"maxBatch" must be a positive integer/],
    ['clock', () => ({ client, clock: Date.now }), /"clock" must be an object with a now\(\) method/],
    ['onError', () => ({ client, onError: 'log' }), /"onError" must be a function/],
    ['onRecover', () => ({ client, onRecover: 1 }), /"onRecover" must be a function/],
    ['timout', () => ({ client, timout: 100 }), /"timout" must be absent: the options are "client"/],
    ['breaker.failure', () => ({ client, breaker: { failure: 2 } }), /"breaker.failure" must be absent/],
    ['denyCache.max', () => ({ client, denyCache: { max: 2 } }), /"denyCache.max" must be absent/],
  ];
  const unknown = new Set(['timout', 'breaker.failure', 'denyCache.max']);
  for (const [name, options, message] of cases) {
    it(`rejects an invalid ${name}`, () => {
      const code = unknown.has(name) ? 'ERR_FLOODGATE_UNKNOWN_OPTION' : 'ERR_FLOODGATE_INVALID_OPTION';
      assert.throws(
        () => new RedisStore(options() as never),
        (e: Error & { code?: string }) => message.test(e.message) && e.code === code,
      );
    });
  }

  it('accepts a hand-written adapter', async () => {
    const calls: string[] = [];
    const adapter: RedisAdapter = {
      cluster: false,
      evalsha: (sha, keys, args) => {
        calls.push('evalsha');
        return client.evalsha(sha, keys.length, ...keys, ...args);
      },
      eval: (script, keys, args) => {
        calls.push('eval');
        return client.eval(script, keys.length, ...keys, ...args);
      },
    };
    assert.equal(redisAdapter(adapter), adapter);
    await client.script('FLUSH');
    const limiter = new Limiter({
      store: new RedisStore({ client: adapter }),
      policies: { limit: 1, window: '1s' },
    });
    assert.equal((await limiter.consume('adapter')).allowed, true);
    assert.deepEqual(calls, ['evalsha', 'eval']);
  });
});

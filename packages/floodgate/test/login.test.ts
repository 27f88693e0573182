import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { Redis } from 'ioredis';
import { ManualClock } from '../src/core/clock.js';
import { LoginGuard } from '../src/limiter/login.js';
import { MemoryStore } from '../src/stores/memory.js';
import { RedisStore } from '../src/stores/redis/index.js';
import type { Store } from '../src/stores/store.js';

/** A login in the shape of docs/middleware.md's; `verified` counts the password checks that were reached. */
function loginWith(guard: LoginGuard, password: string) {
  const counts = { verified: 0, welcomed: 0 };
  async function login(user: string, guess: string, ip: string): Promise<number> {
    const attempt = await guard.attempt(user, ip);
    if (!attempt.allowed) return 429;
    counts.verified++;
    await new Promise((r) => setImmediate(r)); // a slow hash: other attempts interleave here
    if (guess !== password) return 401;
    await attempt.succeeded();
    counts.welcomed++;
    return 200;
  }
  return { login, counts };
}

describe('LoginGuard', () => {
  it('counts failures per user and IP, blocks progressively, and clears on success', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const guard = new LoginGuard({ store: new MemoryStore({ clock }) });
    const ip = '203.0.113.9';
    for (let i = 0; i < 5; i++) assert.equal((await guard.attempt('john', ip)).allowed, true);
    const blocked = await guard.attempt('john', ip);
    assert.equal(blocked.allowed, false);
    assert.equal(blocked.retryAfter, 15 * 60_000);
    assert.equal((await guard.attempt('jane', ip)).allowed, true, 'other users from the IP are not blocked');
    // Four rounds of five failures: the daily window of 20 blocks for the rest of the day.
    for (let round = 0; round < 3; round++) {
      clock.advance(15 * 60_000);
      for (let i = 0; i < 5; i++) assert.equal((await guard.attempt('john', ip)).allowed, true);
    }
    clock.advance(15 * 60_000);
    const day = await guard.attempt('john', ip);
    assert.equal(day.allowed, false);
    assert.equal(day.retryAfter, 24 * 3_600_000 - 60 * 60_000);
  });

  it('a success gives the attempt back and clears the user’s failures from that IP', async () => {
    const guard = new LoginGuard({
      perUserAndIp: { algorithm: 'fixed-window', limit: 3, window: '1h' },
      perIp: { algorithm: 'fixed-window', limit: 3, window: '1h' },
    });
    for (let i = 0; i < 3; i++) await guard.attempt('john', '192.0.2.7');
    const right = await guard.attempt('john', '192.0.2.8');
    assert.equal(right.allowed, true);
    await right.succeeded();
    // Ten right logins in a row from one IP whose failure limit is 3: none is counted.
    for (let i = 0; i < 10; i++) {
      const attempt = await guard.attempt('john', '192.0.2.8');
      assert.equal(attempt.allowed, true, `login ${i}`);
      await attempt.succeeded();
    }
    assert.equal((await guard.attempt('john', '192.0.2.7')).allowed, false, 'not cleared for the other IP');
  });

  it('blocks an IP trying many user names, and an IP refusal charges the user nothing', async () => {
    const store = new MemoryStore();
    const perUserAndIp = { algorithm: 'fixed-window', limit: 2, window: '1h' } as const;
    const guard = new LoginGuard({
      store,
      perUserAndIp,
      perIp: { algorithm: 'fixed-window', limit: 3, window: '1h' },
    });
    for (const user of ['a', 'b', 'c'])
      assert.equal((await guard.attempt(user, '198.51.100.1')).allowed, true);
    for (let i = 0; i < 5; i++) {
      const refused = await guard.attempt('d', '198.51.100.1');
      assert.equal(refused.allowed, false);
      assert.equal(refused.decision.policy, 'fixed-window-3-per-1h');
    }
    assert.equal((await guard.attempt('d', '198.51.100.2')).allowed, true, 'another IP is not blocked');
    // The same per-user counts seen through a guard without the per-IP block: "d" has both its attempts.
    const sameCounts = new LoginGuard({ store, perUserAndIp, perIp: { limit: 1000, window: '1h' } });
    assert.equal((await sameCounts.attempt('d', '198.51.100.1')).allowed, true);
    assert.equal((await sameCounts.attempt('d', '198.51.100.1')).allowed, true);
    assert.equal((await sameCounts.attempt('d', '198.51.100.1')).allowed, false);
  });

  it('rejects invalid options', () => {
    assert.throws(() => new LoginGuard(null as never), /"LoginGuard options" must be an object/);
    assert.throws(
      () => new LoginGuard({ perIp: { limit: 0, window: '1s' } }),
      /"perIp.limit" must be a positive integer/,
    );
    assert.throws(
      () => new LoginGuard({ perip: { limit: 1, window: '1s' } } as never),
      /"perip" must be absent/,
    );
  });

  it('takes no concurrency policy, in its options or in an override set later (the admin API)', () => {
    const slot = { algorithm: 'concurrency', limit: 1, leaseTimeout: '1m' } as const;
    assert.throws(
      () => new LoginGuard({ perIp: slot }),
      /"perIp\.algorithm" must be another algorithm than "concurrency": an attempt is counted by its outcome/,
    );
    assert.throws(
      () => new LoginGuard({ perUserAndIp: [{ limit: 5, window: '15m' }, slot] }),
      /"perUserAndIp\[1\]\.algorithm"/,
    );
    const { perUserAndIp, perIp } = new LoginGuard().limiters;
    for (const limiter of [perUserAndIp, perIp])
      assert.throws(
        () => limiter.setOverride('ip:203.0.113.1', slot),
        /\.algorithm" must be another algorithm/,
      );
  });
});

/** 60 wrong guesses at once, one of them right: at most the limit (5) reach the password check. */
async function parallelGuesses(store: Store): Promise<void> {
  const guard = new LoginGuard({ store });
  const { login, counts } = loginWith(guard, 'guess-42');
  const statuses = await Promise.all(
    Array.from({ length: 60 }, (_, i) => login('john_doe', `guess-${i}`, '203.0.113.50')),
  );
  assert.equal(counts.verified, 5, 'password checks reached');
  assert.equal(statuses.filter((s) => s === 429).length, 55);
  assert.equal(counts.welcomed, 0, 'the right password, 43rd in the burst, is refused unchecked');
  // The same burst from 25 addresses: the per-IP limit holds per address, the per-user one per pair.
  const perIp = await Promise.all(
    Array.from({ length: 100 }, (_, i) => login('jane', `guess-${i}`, `198.51.100.${i % 25}`)),
  );
  assert.equal(perIp.filter((s) => s !== 429).length, 100);
}

describe('LoginGuard under parallel guesses', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.stop();
  });

  it('memory store: at most the limit are ever verified', () => parallelGuesses(new MemoryStore()));

  it('Redis store: at most the limit are ever verified', async () => {
    const client = new Redis(redis.port, '127.0.0.1');
    try {
      await parallelGuesses(new RedisStore({ client }));
    } finally {
      client.disconnect();
    }
  });
});

describe('LoginGuard: one client per address, whatever its notation', () => {
  it('counts one IPv6 /64 as one client: 30 guesses from 2001:db8::1 to ::30 allow 5', async () => {
    const guard = new LoginGuard();
    let allowed = 0;
    for (let i = 1; i <= 30; i++)
      if ((await guard.attempt('john', `2001:db8::${i.toString(16)}`)).allowed) allowed++;
    assert.equal(allowed, 5);
    assert.equal(
      (await guard.attempt('john', '2001:db8:0:1::1')).allowed,
      true,
      'the next /64 is another client',
    );
  });

  it('the prefix is configurable, and checked', async () => {
    const guard = new LoginGuard({ ipv6Prefix: 48 });
    for (let i = 0; i < 5; i++) await guard.attempt('john', `2001:db8:0:${i}::1`);
    assert.equal((await guard.attempt('john', '2001:db8:0:ff::1')).allowed, false);
    for (const bad of [0, 129, 1.5, '64'])
      assert.throws(() => new LoginGuard({ ipv6Prefix: bad as never }), /option "ipv6Prefix"/);
  });

  it('folds IPv4-mapped addresses in every notation to the IPv4 client', async () => {
    const guard = new LoginGuard();
    const forms = [
      '127.0.0.1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '0:0:0:0:0:ffff:7f00:1',
      '[::FFFF:7F00:1]',
    ];
    for (const ip of forms) assert.equal((await guard.attempt('john', ip)).allowed, true, ip);
    assert.equal((await guard.attempt('john', '127.0.0.1')).allowed, false, 'five notations were one client');
  });

  it('parallel guesses from one /64 never pass the limit', async () => {
    const guard = new LoginGuard();
    const { login, counts } = loginWith(guard, 'secret');
    const statuses = await Promise.all(
      Array.from({ length: 40 }, (_, i) => login('john', 'wrong', `2001:db8::${(i + 1).toString(16)}`)),
    );
    assert.equal(counts.verified, 5);
    assert.equal(statuses.filter((s) => s === 429).length, 35);
  });
});

describe('LoginGuard: values that are not addresses or names', () => {
  it('what is not an address is one unknown client, never a budget per made-up string', async () => {
    const guard = new LoginGuard();
    const made = ['01.2.3.4', '1.02.3.4', '1.2.3.4.', '16909060', 'garbage1', 'garbage2', '', 'unknown'];
    let allowed = 0;
    for (const ip of made) if ((await guard.attempt('john', ip)).allowed) allowed++;
    assert.equal(allowed, 5);
  });

  it('refuses a user that is not a string, naming it', async () => {
    const guard = new LoginGuard();
    for (const user of [undefined, null, {}, 42])
      await assert.rejects(guard.attempt(user as never, '203.0.113.1'), /"user" must be a string/);
  });
});

describe('LoginGuard during a store outage', () => {
  it('a right password is a login even when the store cannot take the give-back', async () => {
    const server = await RedisServer.start();
    const client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    try {
      for (const onStoreError of ['fallback', 'open'] as const) {
        const guard = new LoginGuard({ store: new RedisStore({ client, onStoreError, timeout: 100 }) });
        if (server.running) await server.kill();
        const attempt = await guard.attempt('john', '203.0.113.1');
        assert.equal(attempt.allowed, true, onStoreError);
        await attempt.succeeded(); // resolves: no 500 for a user who typed the right password
      }
    } finally {
      client.disconnect();
      await server.stop();
    }
  });
});

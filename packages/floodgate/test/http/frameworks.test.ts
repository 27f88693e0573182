import assert from 'node:assert/strict';
import { request as rawRequest } from 'node:http';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { byBasicUser, byHeader, type HttpLimitOptions } from '../../src/http/index.js';

type Options = HttpLimitOptions<unknown>;

import type { Store } from '../../src/stores/store.js';
import { FRAMEWORKS, get, serving, statuses } from './servers.js';

// Every adapter, a real server on loopback, real HTTP: the same behaviour whatever the framework.

const basic = (user: string, password = 'pw') =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** A store that always fails: the store-failure paths, without touching a real store. */
const failingStore: Store = {
  apply: () => Promise.reject(new Error('store down')),
  reset: () => Promise.reject(new Error('store down')),
};

for (const [framework, start] of Object.entries(FRAMEWORKS)) {
  describe(`HTTP adapter: ${framework}`, () => {
    const withServer = serving(start);

    it('limits, with RateLimit headers per policy, and a 429 problem body', async () => {
      const clock = new ManualClock(1_700_000_000_000);
      const options: Options = {
        clock,
        policies: [
          { name: 'burst', limit: 2, window: '10s' },
          { name: 'minute', algorithm: 'fixed-window', limit: 5, window: '1m' },
        ],
      };
      await withServer(options, async ({ url }) => {
        const first = await get(url);
        assert.equal(first.status, 200);
        assert.equal(first.headers.get('ratelimit-policy'), '"burst";q=2;w=10, "minute";q=5;w=60');
        assert.equal(first.headers.get('ratelimit'), '"burst";r=1;t=5, "minute";r=4;t=60');
        assert.equal((await get(url)).status, 200);
        const limited = await get(url);
        assert.equal(limited.status, 429);
        assert.equal(limited.headers.get('retry-after'), '5');
        assert.match(limited.headers.get('content-type') ?? '', /^application\/problem\+json/);
        assert.equal(limited.headers.get('ratelimit'), '"burst";r=0;t=10, "minute";r=3;t=60');
        assert.deepEqual(JSON.parse(limited.body), {
          type: 'about:blank',
          title: 'Too Many Requests',
          status: 429,
          detail: 'Wait 5 seconds before trying again.',
          retryAfter: 5,
          policy: 'burst',
        });
        clock.advance(5000);
        assert.equal((await get(url)).status, 200, 'allowed again at Retry-After');
      });
    });

    it('older header modes and legacy X-RateLimit fields', async () => {
      const clock = new ManualClock(1_700_000_000_000);
      await withServer(
        { clock, policies: { limit: 3, window: '1m' }, headers: 'draft-7', legacyHeaders: true },
        async ({ url }) => {
          const res = await get(url);
          assert.equal(res.headers.get('ratelimit-policy'), '3;w=60');
          assert.equal(res.headers.get('ratelimit'), 'limit=3, remaining=2, reset=20');
          assert.equal(res.headers.get('x-ratelimit-limit'), '3');
          assert.equal(res.headers.get('x-ratelimit-remaining'), '2');
          assert.equal(res.headers.get('x-ratelimit-reset'), String(1_700_000_020));
        },
      );
      await withServer(
        { clock, policies: { limit: 3, window: '1m' }, headers: 'draft-6' },
        async ({ url }) => {
          const res = await get(url);
          assert.equal(res.headers.get('ratelimit-limit'), '3');
          assert.equal(res.headers.get('ratelimit-remaining'), '2');
          assert.equal(res.headers.get('ratelimit-reset'), '20');
        },
      );
      await withServer({ clock, policies: { limit: 3, window: '1m' }, headers: false }, async ({ url }) => {
        const res = await get(url);
        assert.equal(res.headers.get('ratelimit'), null);
        assert.equal(res.headers.get('ratelimit-policy'), null);
      });
    });

    it('countOnly "failed" charges failed responses only', async () => {
      await withServer({ policies: { limit: 2, window: '1m' }, countOnly: 'failed' }, async ({ url }) => {
        assert.deepEqual(await statuses(url, 4, '/'), [200, 200, 200, 200]);
        assert.deepEqual(await statuses(url, 3, '/fail'), [401, 401, 429]);
        assert.equal((await get(url)).status, 429, 'once over, every request waits');
      });
    });

    it('countOnly "successful" charges successful responses only', async () => {
      await withServer({ policies: { limit: 2, window: '1m' }, countOnly: 'successful' }, async ({ url }) => {
        assert.deepEqual(await statuses(url, 3, '/fail'), [401, 401, 401]);
        assert.deepEqual(await statuses(url, 3, '/'), [200, 200, 429]);
      });
    });

    it("hands the decision to the handler, the framework's own way", async () => {
      await withServer({ policies: { limit: 3, window: '1m' } }, async ({ url }) => {
        assert.equal((await get(url, '/decision')).body, 'remaining=2');
        assert.equal((await get(url, '/decision')).body, 'remaining=1');
      });
      await withServer({ policies: { limit: 3, window: '1m' }, allow: ['127.0.0.1'] }, async ({ url }) => {
        assert.equal((await get(url, '/decision')).body, 'none', 'an allow-listed client is not decided on');
      });
    });

    it('ignores X-Forwarded-For unless the proxy is trusted', async () => {
      await withServer({ policies: { limit: 1, window: '1m' } }, async ({ url }) => {
        assert.equal((await get(url, '/', { 'x-forwarded-for': '203.0.113.1' })).status, 200);
        assert.equal(
          (await get(url, '/', { 'x-forwarded-for': '203.0.113.2' })).status,
          429,
          'cannot be spoofed',
        );
      });
      await withServer(
        { policies: { limit: 1, window: '1m' }, trustProxy: ['loopback'] },
        async ({ url }) => {
          assert.equal((await get(url, '/', { 'x-forwarded-for': '203.0.113.1' })).status, 200);
          assert.equal((await get(url, '/', { 'x-forwarded-for': '198.51.100.7, 203.0.113.2' })).status, 200);
          assert.equal((await get(url, '/', { 'x-forwarded-for': '203.0.113.1' })).status, 429);
          // A header that says nothing usable: limited under a shared key, never a 500.
          assert.equal((await get(url, '/', { 'x-forwarded-for': 'garbage, ,::::' })).status, 200);
          assert.equal((await get(url, '/', { 'x-forwarded-for': 'nonsense' })).status, 429);
        },
      );
    });

    it('groups IPv6 clients by /64 (and the prefix is configurable)', async () => {
      const options: Options = { policies: { limit: 1, window: '1m' }, trustProxy: ['loopback'] };
      await withServer(options, async ({ url }) => {
        assert.equal((await get(url, '/', { 'x-forwarded-for': '2001:db8:0:1::1' })).status, 200);
        assert.equal((await get(url, '/', { 'x-forwarded-for': '2001:db8:0:1:ffff::9' })).status, 429);
        assert.equal((await get(url, '/', { 'x-forwarded-for': '2001:db8:0:2::1' })).status, 200);
      });
      await withServer({ ...options, ipv6Prefix: 128 }, async ({ url }) => {
        assert.equal((await get(url, '/', { 'x-forwarded-for': '2001:db8::1' })).status, 200);
        assert.equal((await get(url, '/', { 'x-forwarded-for': '2001:db8::2' })).status, 200);
      });
    });

    it('limits an IPv6 peer on an IPv6 socket', async () => {
      await withServer(
        { policies: { limit: 1, window: '1m' } },
        async ({ url }) => {
          assert.deepEqual(await statuses(url, 2), [200, 429]);
        },
        '::1',
      );
    });

    it('skip, allow and deny lists', async () => {
      const skip = (req: never) => hasSkip(req);
      await withServer({ policies: { limit: 1, window: '1m' }, skip } as never, async ({ url }) => {
        assert.deepEqual(await statuses(url, 3, '/', { 'x-skip': 'yes' }), [200, 200, 200]);
        const skipped = await get(url, '/', { 'x-skip': 'yes' });
        assert.equal(skipped.headers.get('ratelimit'), null, 'a skipped request gets no headers');
        assert.deepEqual(await statuses(url, 2), [200, 429]);
      });
      await withServer({ policies: { limit: 1, window: '1m' }, allow: ['127.0.0.0/8'] }, async ({ url }) => {
        assert.deepEqual(await statuses(url, 3), [200, 200, 200]);
      });
      await withServer({ policies: { limit: 1, window: '1m' }, deny: ['127.0.0.1'] }, async ({ url }) => {
        const denied = await get(url);
        assert.equal(denied.status, 403);
        assert.equal(JSON.parse(denied.body).title, 'Forbidden');
      });
      const key = byHeader('x-api-key', { hash: false });
      await withServer(
        {
          policies: { limit: 1, window: '1m' },
          key,
          allow: ['h:x-api-key:partner'],
          deny: ['h:x-api-key:banned'],
        },
        async ({ url }) => {
          assert.deepEqual(await statuses(url, 2, '/', { 'x-api-key': 'partner' }), [200, 200]);
          assert.equal((await get(url, '/', { 'x-api-key': 'banned' })).status, 403);
          assert.deepEqual(await statuses(url, 2, '/', { 'x-api-key': 'someone' }), [200, 429]);
        },
      );
    });

    it('keys on the Basic user, hashed; a missing or garbled Authorization gets a 400 when asked', async () => {
      const keys: string[] = [];
      const options: Options = {
        policies: { limit: 1, window: '1m' },
        key: byBasicUser(),
        onMissingKey: 'reject',
        onDecision: ({ key }) => keys.push(key),
      };
      await withServer(options, async ({ url }) => {
        assert.equal((await get(url, '/', { authorization: basic('john_doe') })).status, 200);
        assert.equal((await get(url, '/', { authorization: basic('john_doe', 'other') })).status, 429);
        assert.equal((await get(url, '/', { authorization: basic('jane') })).status, 200);
        for (const authorization of [
          undefined,
          'Basic',
          'Basic !!!',
          'Basic Zm9v',
          'Bearer x',
          `Basic ${'A'.repeat(8000)}`,
        ]) {
          const res = await get(url, '/', authorization === undefined ? {} : { authorization });
          assert.equal(res.status, 400, `Authorization: ${authorization?.slice(0, 20)}`);
          assert.match(JSON.parse(res.body).detail, /carries no HTTP Basic user/);
        }
      });
      assert.equal(keys.length, 3);
      for (const key of keys) assert.doesNotMatch(key, /john|jane/, 'credentials never become keys');
      await withServer({ ...options, onMissingKey: 'ip' }, async ({ url }) => {
        assert.deepEqual(await statuses(url, 2), [200, 429], 'no credentials: limited by IP');
      });
      await withServer({ ...options, onMissingKey: 'skip' }, async ({ url }) => {
        assert.deepEqual(await statuses(url, 3), [200, 200, 200]);
      });
    });

    it('a store that rejects: passOnStoreError lets requests through, or answers 503', async () => {
      const errors: unknown[] = [];
      const base: Options = {
        policies: { limit: 1, window: '1m' },
        store: failingStore,
        onError: (e) => errors.push(e),
      };
      await withServer({ ...base, passOnStoreError: true }, async ({ url }) => {
        assert.deepEqual(await statuses(url, 3), [200, 200, 200]);
      });
      await withServer({ ...base, passOnStoreError: false }, async ({ url }) => {
        const res = await get(url);
        assert.equal(res.status, 503);
        assert.equal(res.headers.get('retry-after'), '1');
      });
      assert.equal(errors.length, 4);
    });

    it('hands a callback that throws to the framework (500), and keeps serving', async () => {
      let calls = 0;
      const onDecision = () => {
        calls += 1;
        if (calls === 1) throw new Error('the onDecision callback failed');
      };
      await withServer({ policies: { limit: 5, window: '1m' }, onDecision }, async ({ url }) => {
        assert.equal((await get(url)).status, 500);
        assert.equal((await get(url)).status, 200);
      });
      assert.equal(calls, 2);
    });

    it('survives absurd headers: the server answers 431 and keeps serving', async () => {
      await withServer({ policies: { limit: 5, window: '1m' }, key: byBasicUser() }, async ({ url }) => {
        const status = await new Promise<number>((resolve, reject) => {
          const req = rawRequest(
            url,
            { headers: { authorization: `Basic ${'A'.repeat(100_000)}` } },
            (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            },
          );
          req.on('error', reject);
          req.end();
        });
        assert.equal(status, 431);
        assert.equal((await get(url)).status, 200);
      });
    });
  });
}

function hasSkip(req: unknown): boolean {
  // Each framework exposes headers its own way: look for the raw node request's.
  const r = req as {
    headers?: Record<string, unknown>;
    raw?: { headers?: Record<string, unknown> };
    req?: { headers?: Record<string, unknown>; header?(n: string): string | undefined };
  };
  const headers =
    r.headers ?? r.raw?.headers ?? (r.req as { headers?: Record<string, unknown> } | undefined)?.headers;
  if (headers?.['x-skip'] === 'yes') return true;
  return r.req?.header?.('x-skip') === 'yes';
}

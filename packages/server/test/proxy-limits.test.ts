import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { pino } from 'pino';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { metric } from './helpers/requests.js';
import {
  type LoginUpstream,
  type NodeUpstream,
  startLoginUpstream,
  startNodeUpstream,
} from './helpers/upstreams.js';

// Several limits per request: a rule's list of limits, each with its own key, decided all or nothing.

const running: RunningProxy[] = [];
let up: NodeUpstream;
let login: LoginUpstream;
let redis: RedisServer;
before(async () => {
  up = await startNodeUpstream();
  login = await startLoginUpstream();
  redis = await RedisServer.start();
});
after(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await up.close();
  await login.close();
  await redis.stop();
});

async function proxyFor(data: Record<string, unknown>): Promise<RunningProxy> {
  const config = validateProxyConfig({
    listen: 0,
    admin: false,
    upstream: up.url,
    trustProxy: true,
    ...data,
  });
  const proxy = await startProxy(config, { log: pino({ level: 'silent' }) });
  running.push(proxy);
  return proxy;
}

const fixed = (limit: number) => [{ limit, window: '1m', algorithm: 'fixed-window' }];

/** Per API key, and per client IP as the backstop. */
const keyAndIp = (perKey: number, perIp: number, extra: Record<string, unknown> = {}) => ({
  rules: [
    {
      name: 'api',
      limits: [
        { name: 'per-key', key: 'api-key', onMissingKey: 'skip', policies: fixed(perKey) },
        { name: 'per-ip', key: 'ip', policies: fixed(perIp) },
      ],
      ...extra,
    },
  ],
});

interface Reply {
  status: number;
  limit: string | undefined;
  headers: Headers;
}

async function call(proxy: RunningProxy, client: string, apiKey?: string): Promise<Reply> {
  const headers: Record<string, string> = { 'X-Forwarded-For': client };
  if (apiKey !== undefined) headers['X-API-Key'] = apiKey;
  const res = await fetch(`${proxy.url}/echo`, { headers });
  const text = await res.text();
  const limit = res.status === 429 ? (JSON.parse(text) as { limit: string }).limit : undefined;
  return { status: res.status, limit, headers: res.headers };
}

async function calls(proxy: RunningProxy, client: string, keys: readonly (string | undefined)[]) {
  const out: string[] = [];
  for (const key of keys) {
    const r = await call(proxy, client, key);
    out.push(r.limit === undefined ? String(r.status) : `${r.status} ${r.limit}`);
  }
  return out;
}

describe('proxy limits: several per request', () => {
  it('a client rotating made-up API keys is still limited by the per-IP backstop', async () => {
    const proxy = await proxyFor(keyAndIp(3, 5));
    const made = Array.from({ length: 8 }, (_, i) => `made-up-${i}`);
    assert.deepEqual(await calls(proxy, '203.0.113.1', made), [
      ...Array(5).fill('200'),
      ...Array(3).fill('429 per-ip'),
    ]);
    // All or nothing: the refused requests charged none of their keys; made-up-7 has its 3 elsewhere.
    assert.deepEqual(
      await calls(proxy, '203.0.113.2', ['made-up-7', 'made-up-7', 'made-up-7', 'made-up-7']),
      ['200', '200', '200', '429 per-key'],
    );
    // made-up-0 was charged once: two left.
    assert.deepEqual(await calls(proxy, '203.0.113.3', ['made-up-0', 'made-up-0', 'made-up-0']), [
      '200',
      '200',
      '429 per-key',
    ]);
  });

  it("the admin API names who a list's limit refused: each limit keeps its traffic", async () => {
    const proxy = await proxyFor({ ...keyAndIp(3, 5), admin: 0 });
    await calls(
      proxy,
      '203.0.113.9',
      Array.from({ length: 8 }, (_, i) => `made-up-${i}`),
    );
    const api = `${proxy.adminUrl}/api/limiters/${encodeURIComponent('api per-ip')}/top?window=1m`;
    const top = (await (await fetch(api)).json()) as { refusals: { clients: { count: number }[] } };
    assert.deepEqual(
      top.refusals.clients.map((c) => c.count),
      [3],
    );
  });

  it("a request refused by its key's limit spends nothing of its IP's, and one without a key meets the IP's only", async () => {
    const proxy = await proxyFor(keyAndIp(2, 4));
    assert.deepEqual(await calls(proxy, '198.51.100.1', ['k', 'k', 'k', 'k', 'k']), [
      '200',
      '200',
      '429 per-key',
      '429 per-key',
      '429 per-key',
    ]);
    assert.deepEqual(await calls(proxy, '198.51.100.1', [undefined, undefined, undefined]), [
      '200',
      '200',
      '429 per-ip',
    ]);
  });

  it('the RateLimit fields tell of the limit nearest to refusing', async () => {
    const proxy = await proxyFor(keyAndIp(10, 3));
    const first = await call(proxy, '192.0.2.9', 'key-a');
    assert.match(first.headers.get('ratelimit') ?? '', /r=2\b/);
    const proxyByKey = await proxyFor(keyAndIp(2, 30));
    const near = await call(proxyByKey, '192.0.2.9', 'key-a');
    assert.match(near.headers.get('ratelimit') ?? '', /r=1\b/);
  });

  for (const store of ['memory', 'redis'] as const) {
    it(`40 parallel requests on ${store}: exactly what both limits allow`, async () => {
      const proxy = await proxyFor({
        ...keyAndIp(10, 25),
        ...(store === 'redis' ? { store: redis.url } : {}),
      });
      // Connected, and the script loaded (a first call past the store's timeout would meet the outage policy).
      assert.equal((await call(proxy, '192.0.2.200')).status, 200);
      const replies = await Promise.all(
        Array.from({ length: 40 }, (_, i) => call(proxy, '192.0.2.1', `key-${i % 2}`)),
      );
      const statuses = replies.map((r) =>
        r.limit === undefined ? String(r.status) : `${r.status} ${r.limit}`,
      );
      // Two keys of 10 each: 20 allowed, though the IP would allow 25; nothing charged for the 20 refused.
      assert.equal(statuses.filter((s) => s === '200').length, 20);
      assert.equal(statuses.filter((s) => s === '429 per-key').length, 20);
      assert.deepEqual(
        await calls(proxy, '192.0.2.1', ['key-2', 'key-3', 'key-4', 'key-5', 'key-6', 'key-7']),
        ['200', '200', '200', '200', '200', '429 per-ip'],
      );
    });
  }

  it('countOnly gives back every limit it charged when the answer does not count', async () => {
    const proxy = await proxyFor({
      upstream: login.url,
      rules: [
        {
          name: 'login',
          match: { path: '/login' },
          countOnly: 'failed',
          limits: [
            { name: 'per-user', key: { header: 'X-User' }, policies: fixed(2) },
            { name: 'per-ip', key: 'ip', policies: fixed(3) },
          ],
        },
      ],
    });
    const attempt = async (user: string, password: string) => {
      const res = await fetch(`${proxy.url}/login`, {
        method: 'POST',
        headers: { 'X-Forwarded-For': '203.0.113.50', 'X-User': user },
        body: `password=${password}`,
      });
      await res.arrayBuffer();
      return res.status;
    };
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await attempt('ann', 'right'));
    statuses.push(
      await attempt('ann', 'wrong'),
      await attempt('ann', 'wrong'),
      await attempt('ann', 'wrong'),
    );
    statuses.push(await attempt('bob', 'wrong'), await attempt('bob', 'wrong'));
    // Ann's right passwords never count; her third failure meets her limit; Bob's second, the IP's third.
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 401, 401, 429, 401, 429]);
  });

  it('with shed, the upstream is protected before the limits are looked at, and slots come back', async () => {
    const proxy = await proxyFor({
      admin: 0,
      // Three slots: two for default, and the last one kept for critical.
      shed: { limit: { algorithm: 'aimd', initialLimit: 3 } },
      ...keyAndIp(100, 100),
    });
    const replies = await Promise.all(
      Array.from({ length: 6 }, () => fetch(`${proxy.url}/slow`, { headers: { 'X-API-Key': 'k' } })),
    );
    const codes = await Promise.all(
      replies.map(async (r) => {
        await r.arrayBuffer();
        return r.status;
      }),
    );
    assert.deepEqual(codes.sort(), [200, 200, 503, 503, 503, 503]);
    assert.equal(await metric(proxy.adminUrl, 'floodgate_proxy_shed_inflight'), 0);
    // The four shed were charged to no limit: the two served and this one leave 97 of the key's 100.
    const after = await call(proxy, '127.0.0.1', 'k');
    assert.match(after.headers.get('ratelimit') ?? '', /r=97\b/);
  });

  it('refuses a rule with both limits and its own policies, two limits of one name, and a concurrency limit', () => {
    const check = (rule: Record<string, unknown>) =>
      validateProxyConfig({ upstream: 'http://127.0.0.1:1', rules: [{ name: 'r', ...rule }] });
    const limit = { name: 'a', policies: fixed(1) };
    assert.throws(
      () => check({ limits: [limit], policies: fixed(1) }),
      /rules\[0\]\.policies: give it in each of "limits"/,
    );
    assert.throws(
      () => check({ limits: [limit], key: 'ip' }),
      /rules\[0\]\.key: give it in each of "limits"/,
    );
    assert.throws(() => check({ limits: [limit, limit] }), /rules\[0\]\.limits\[1\]\.name: "a" is used/);
    assert.throws(
      () =>
        check({
          limits: [{ name: 'c', policies: { algorithm: 'concurrency', limit: 2, leaseTimeout: '1m' } }],
        }),
      /rules\[0\]\.limits\[0\]\.policies: several limits are decided together/,
    );
    assert.throws(
      () => check({ limits: [{ name: 'j', key: { jwt: 'sub' }, policies: fixed(1) }] }),
      /limits\[0\]\.key\.jwt/,
    );
    assert.throws(
      () => check({ limits: [{ name: 'x', policies: [{ limit: 0, window: '1m' }] }] }),
      /limits\[0\]\.policies\[0\]\.limit/,
    );
    assert.throws(() => check({ limits: [] }), /rules\[0\]\.limits/);
  });
});

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { type AdminAction, adminHandler } from '../../src/admin/handler.js';
import { byApiKey } from '../../src/http/keys.js';
import { rateLimit } from '../../src/http/node.js';
import { Limiter } from '../../src/limiter/limiter.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { useRedis } from '../helpers/redis.js';

const TOKEN = 'correct-horse-battery-staple';
const SECRET_API_KEY = 'sk_live_THIS_MUST_NEVER_SHOW_0123456789';

/** An app limited by API key on one port, its admin handler on another; both real servers. */
async function start(limiter: Limiter, base = '') {
  const actions: AdminAction[] = [];
  const limit = rateLimit({ limiter, key: byApiKey() });
  const app = createServer(async (req, res) => {
    if (!(await limit(req, res))) return;
    res.end('ok');
  });
  const admin = createServer(
    adminHandler({ limiters: { api: limiter }, token: TOKEN, base, onAction: (a) => actions.push(a) }),
  );
  const listen = (s: Server) =>
    new Promise<string>((r) =>
      s.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)),
    );
  const [appUrl, adminUrl] = await Promise.all([listen(app), listen(admin)]);
  return {
    appUrl,
    adminUrl: adminUrl + base,
    actions,
    call: (key: string) => fetch(appUrl, { headers: { 'x-api-key': key } }).then((r) => r.status),
    close: () => Promise.all([app, admin].map((s) => new Promise((r) => s.close(r)))),
  };
}

// biome-ignore lint/suspicious/noExplicitAny: the answers are read as the JSON they are
type Json = any;
const get = (url: string, init?: RequestInit): Promise<Json> => fetch(url, init).then((r) => r.json());

const auth = { Authorization: `Bearer ${TOKEN}` };
const authJson = { ...auth, 'Content-Type': 'application/json' };

function suite(name: string, makeLimiter: () => Limiter) {
  describe(`admin API (${name})`, () => {
    let s: Awaited<ReturnType<typeof start>>;
    before(async () => {
      s = await start(makeLimiter(), '/admin');
    });
    after(() => s.close());

    it('lists the limiters, the busiest clients and the series; a secret appears in no answer', async () => {
      for (let i = 0; i < 5; i++) await s.call(SECRET_API_KEY);
      await s.call('another-key-entirely');
      const list = await get(`${s.adminUrl}/api`);
      assert.equal(list.limiters[0].name, 'api');
      assert.deepEqual(
        list.limiters[0].policies.map((p: { name: string; limit: number }) => [p.name, p.limit]),
        [['minute', 3]],
      );
      const top = await get(`${s.adminUrl}/api/limiters/api/top?window=1m&n=5`);
      assert.equal(top.requests.clients[0].count, 5);
      assert.equal(top.requests.clients[0].kind, 'api-key');
      assert.match(top.requests.clients[0].label, /^API key .{10}…$/);
      assert.equal(top.refusals.clients[0].count, 2);
      const series = await get(`${s.adminUrl}/api/limiters/api/series?seconds=60`);
      assert.equal(series.points.length, 60);
      const sum = (k: string) => series.points.reduce((n: number, p: Record<string, number>) => n + p[k]!, 0);
      assert.equal(sum('allowed'), 4);
      assert.equal(sum('limited'), 2);
      const dashboard = await (await fetch(`${s.adminUrl}/api/dashboard`)).text();
      for (const text of [JSON.stringify(list), JSON.stringify(top), dashboard])
        assert.ok(
          !text.includes(SECRET_API_KEY) && !text.includes('THIS_MUST_NEVER'),
          'no secret in any answer',
        );
    });

    it('inspects an identifier: its state by policy, nothing charged', async () => {
      const top = await get(`${s.adminUrl}/api/limiters/api/top`);
      const key = top.requests.clients[0].key as string;
      const url = `${s.adminUrl}/api/limiters/api/clients/${encodeURIComponent(key)}`;
      const first = await get(url);
      const again = await get(url);
      assert.equal(first.allowed, false);
      assert.equal(first.policies[0].remaining, 0);
      assert.equal(first.last15m.requests, 5);
      assert.equal(again.policies[0].remaining, 0, 'peeking charged nothing');
      assert.equal(again.last15m.requests, 5, 'peeking is no traffic');
    });

    it('actions need the token: none, a wrong one and a malformed one are refused, and change nothing', async () => {
      const top = await get(`${s.adminUrl}/api/limiters/api/top`);
      const key = encodeURIComponent(top.requests.clients[0].key);
      for (const headers of [
        {},
        { Authorization: 'Bearer wrong-token-of-some-length' },
        { Authorization: TOKEN },
      ]) {
        const r = await fetch(`${s.adminUrl}/api/limiters/api/clients/${key}/reset`, {
          method: 'POST',
          headers,
        });
        assert.equal(r.status, 401);
      }
      assert.equal(await s.call(SECRET_API_KEY), 429, 'still limited');
      assert.equal(s.actions.length, 0);
    });

    it('unblock: the client is allowed again at once, and the action is logged with who and what', async () => {
      const top = await get(`${s.adminUrl}/api/limiters/api/top`);
      const client = top.requests.clients[0];
      const r = await fetch(
        `${s.adminUrl}/api/limiters/api/clients/${encodeURIComponent(client.key)}/reset`,
        {
          method: 'POST',
          headers: auth,
        },
      );
      assert.equal(r.status, 200);
      assert.equal(await s.call(SECRET_API_KEY), 200);
      assert.equal(s.actions.length, 1);
      assert.equal(s.actions[0]!.action, 'reset');
      assert.equal(s.actions[0]!.client, client.label);
      assert.equal(s.actions[0]!.by.address, '127.0.0.1');
      assert.ok(!JSON.stringify(s.actions).includes(SECRET_API_KEY));
    });

    it('a runtime override takes effect, is refused when invalid, and is removed', async () => {
      const top = await get(`${s.adminUrl}/api/limiters/api/top`);
      const key = encodeURIComponent(top.requests.clients[0].key);
      const url = `${s.adminUrl}/api/limiters/api/overrides/${key}`;
      const bad = await fetch(url, {
        method: 'PUT',
        headers: authJson,
        body: '{"name":"minute","limit":0,"window":"1m"}',
      });
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as Json).error, /limit/);
      assert.equal((await fetch(url, { method: 'PUT', headers: authJson, body: '{nope' })).status, 400);
      const set = await fetch(url, {
        method: 'PUT',
        headers: authJson,
        body: '{"name":"minute","limit":100,"window":"1m"}',
      });
      assert.equal(set.status, 200);
      for (let i = 0; i < 10; i++) assert.equal(await s.call(SECRET_API_KEY), 200);
      const removed = await get(url, { method: 'DELETE', headers: auth });
      assert.deepEqual(removed, { removed: true });
      assert.deepEqual(
        s.actions.map((a) => a.action),
        ['reset', 'set-override', 'remove-override'],
      );
    });

    it('serves the dashboard page and its assets, with no outside reference', async () => {
      const redirect = await fetch(s.adminUrl, { redirect: 'manual' });
      assert.equal(redirect.status, 308);
      const page = await (await fetch(`${s.adminUrl}/`)).text();
      assert.match(page, /<title>Floodgate<\/title>/);
      assert.ok(!/https?:\/\//.test(page), 'the page loads nothing from elsewhere');
      for (const asset of ['dashboard.js', 'dashboard.css', 'uplot.js', 'uplot.css', 'uplot-license.txt']) {
        const r = await fetch(`${s.adminUrl}/${asset}`);
        assert.equal(r.status, 200, asset);
      }
      assert.match(await (await fetch(`${s.adminUrl}/uplot-license.txt`)).text(), /MIT License/);
    });

    it('unknown limiters, endpoints and garbled paths are 4xx', async () => {
      assert.equal((await fetch(`${s.adminUrl}/api/limiters/nope/top`)).status, 404);
      assert.equal((await fetch(`${s.adminUrl}/api/nothing`)).status, 404);
      assert.equal((await fetch(`${s.adminUrl}/api/limiters/api/top?window=2h`)).status, 400);
      assert.equal((await fetch(`${s.adminUrl}/api/limiters/api/clients/%E0%A4%A`)).status, 400);
      assert.equal((await fetch(`${s.adminUrl}/elsewhere`)).status, 404);
      const big = await fetch(`${s.adminUrl}/api/limiters/api/overrides/x`, {
        method: 'PUT',
        headers: authJson,
        body: 'x'.repeat(100_000),
      });
      assert.equal(big.status, 413, 'answered, not reset');
    });

    it("identifiers named as Object's own properties are identifiers like any other", async () => {
      for (const key of ['__proto__', 'constructor', 'toString']) {
        const url = `${s.adminUrl}/api/limiters/api/overrides/${key}`;
        const before = await get(`${s.adminUrl}/api/limiters/api/clients/${key}`, { headers: auth });
        assert.equal(before.override, null, key);
        const set = await fetch(url, {
          method: 'PUT',
          headers: authJson,
          body: '{"name":"minute","limit":7,"window":"1m"}',
        });
        assert.equal(set.status, 200, key);
        assert.equal(((await set.json()) as Json).policies[0].limit, 7, key);
        const list = await get(`${s.adminUrl}/api`, { headers: auth });
        assert.ok(Object.hasOwn(list.limiters[0].overrides, key), `${key} is listed`);
        const state = await get(`${s.adminUrl}/api/limiters/api/clients/${key}`, { headers: auth });
        assert.equal(state.override[0].limit, 7, key);
        assert.deepEqual(await get(url, { method: 'DELETE', headers: auth }), { removed: true });
      }
      const list = await get(`${s.adminUrl}/api`, { headers: auth });
      assert.deepEqual(Object.keys(list.limiters[0].overrides), []);
    });
  });
}

suite('memory store', () =>
  new Limiter({ policies: { name: 'minute', limit: 3, window: '1m' }, traffic: true }));

let redis: Redis;
useRedis((client) => {
  redis = client;
});
suite('Redis store', () =>
  new Limiter({
    policies: { name: 'minute', limit: 3, window: '1m' },
    store: new RedisStore({ client: redis }),
    traffic: true,
  }));

describe('admin access', () => {
  it('without a token, only reads from loopback: actions are refused (403)', async () => {
    const limiter = new Limiter({ policies: { limit: 3, window: '1m' } });
    const server = createServer(adminHandler({ limiters: { api: limiter } }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    assert.equal((await fetch(`${url}/api`)).status, 200);
    assert.equal((await fetch(`${url}/api/limiters/api/clients/x/reset`, { method: 'POST' })).status, 403);
    await new Promise((r) => server.close(r));
  });

  it('from another machine, reads need the token too', async () => {
    const limiter = new Limiter({ policies: { limit: 3, window: '1m' } });
    const handler = adminHandler({ limiters: { api: limiter }, token: TOKEN });
    const answer = (headers: Record<string, string>) =>
      new Promise<number>((resolve) => {
        const res = {
          headersSent: false,
          writeHead(status: number) {
            resolve(status);
            return this;
          },
          end() {},
        };
        handler(
          { method: 'GET', url: '/api', headers, socket: { remoteAddress: '192.0.2.7' } } as never,
          res as never,
        );
      });
    assert.equal(await answer({}), 401);
    assert.equal(await answer({ authorization: `Bearer ${TOKEN}` }), 200);
  });

  it('refuses options that are not valid, naming them; never shows the token', () => {
    assert.throws(() => adminHandler({ limiters: { api: {} as never } }), /limiters\.api/);
    assert.throws(
      () => adminHandler({ limiters: {}, token: 'short' }),
      (e: Error) => /token/.test(e.message) && !e.message.includes('short'),
    );
    assert.throws(() => adminHandler({ limiters: {}, base: 'admin/' }), /base/);
  });
});

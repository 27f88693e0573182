import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisServer, send } from '@floodgate/test-support';
import { pino } from 'pino';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// The proxy's admin listener as a page of another site would reach it: through a DNS name rebound to
// 127.0.0.1, or by a form posted from the operator's browser.

const TOKEN = 'proxy-admin-token-0123456789';
const FLOODER = '203.0.113.66';

describe('floodgate proxy: the admin listener refuses rebound names and cross-site forms', () => {
  let upstream: NodeUpstream;
  let proxy: RunningProxy;
  let open: RunningProxy;
  const logs: Record<string, unknown>[] = [];
  let admin: string;
  let port: string;

  before(async () => {
    upstream = await startNodeUpstream();
    const log = pino({ base: null }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    const config = validateProxyConfig({
      upstream: upstream.url,
      listen: 0,
      admin: 0,
      trustProxy: ['loopback'],
      rules: [{ name: 'api', policies: [{ limit: 2, window: '1h' }] }],
    });
    proxy = await startProxy(config, { log, adminToken: TOKEN });
    open = await startProxy(config, { log: pino({ level: 'silent' }), env: {} });
    admin = proxy.adminUrl ?? assert.fail('the admin listener is on');
    port = new URL(admin).port;
    for (let i = 0; i < 4; i++) await send(proxy.url, { headers: { 'x-forwarded-for': FLOODER } });
  });
  after(async () => {
    await proxy?.stop();
    await open?.stop();
    await upstream?.close();
  });

  const flooderStatus = async () =>
    (await send(proxy.url, { headers: { 'x-forwarded-for': FLOODER } })).status;

  it('reads are open to a loopback Host, refused to a rebound name unless it carries the token', async () => {
    const top = `${admin}/api/limiters/api/top`;
    const local = await send(top, { headers: { host: `localhost:${port}` } });
    assert.equal(local.status, 200);
    assert.match(local.body, /203\.0\.113\.66/);
    for (const path of ['/api/limiters/api/top', '/api/dashboard', '/']) {
      const rebound = await send(`${admin}${path}`, { headers: { host: `attacker.example:${port}` } });
      assert.equal(rebound.status, 401, path);
      assert.ok(!rebound.body.includes(FLOODER), path);
    }
    const named = await send(top, {
      headers: { host: `proxy.internal:${port}`, authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(named.status, 200);
    const openAdmin = open.adminUrl ?? assert.fail('the admin listener is on');
    const noToken = await send(`${openAdmin}/api`, {
      headers: { host: `attacker.example:${new URL(openAdmin).port}` },
    });
    assert.equal(noToken.status, 403, 'without a token configured, a rebound name reads nothing');
  });

  it('no unblock or override by a form: the token only counts in the header, bodies only as JSON', async () => {
    const key = encodeURIComponent(`ip:${FLOODER}`);
    const reset = `${admin}/api/limiters/api/clients/${key}/reset`;
    assert.equal((await send(`${reset}?token=${TOKEN}`, { method: 'POST' })).status, 401);
    assert.equal((await send(reset, { method: 'POST', headers: { cookie: `token=${TOKEN}` } })).status, 401);
    const posted = await send(reset, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${TOKEN}`,
    });
    assert.equal(posted.status, 401);
    const plain = await send(`${admin}/api/limiters/api/overrides/${key}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/plain' },
      body: '{"limit":1000,"window":"1h"}',
    });
    assert.equal(plain.status, 415);
    assert.equal(await flooderStatus(), 429, 'still limited');
    assert.equal(logs.filter((l) => typeof l.action === 'string').length, 0, 'no action was taken');

    const done = await send(reset, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(done.status, 200);
    assert.equal(await flooderStatus(), 200);
    assert.ok(!JSON.stringify(logs).includes(TOKEN), 'the token is never logged');
  });
});

describe('floodgate proxy: the dashboard shows the shedder and the shared store', () => {
  let upstream: NodeUpstream;
  let redis: RedisServer;
  let proxy: RunningProxy;
  before(async () => {
    upstream = await startNodeUpstream();
    redis = await RedisServer.start();
    proxy = await startProxy(
      validateProxyConfig({
        upstream: upstream.url,
        listen: 0,
        admin: 0,
        store: redis.url,
        shed: {},
        rules: [
          { name: 'login', match: { path: '/login' }, policies: [{ limit: 5, window: '1m' }] },
          { name: 'api', policies: [{ limit: 50, window: '1m' }] },
        ],
      }),
      { log: pino({ level: 'silent' }), env: {} },
    );
  });
  after(async () => {
    await proxy?.stop();
    await redis?.stop();
    await upstream?.close();
  });

  it("answers the shedder's limit, in flight and baseline as a series, and the store's script calls once", async () => {
    for (const path of ['/login', '/x', '/y']) assert.equal((await send(`${proxy.url}${path}`)).status, 200);
    const d = JSON.parse((await send(`${proxy.adminUrl}/api/dashboard?seconds=30`)).body);
    assert.equal(d.shedder.series.length, 30);
    const last = d.shedder.series.at(-1);
    assert.equal(last.limit, d.shedder.limit);
    assert.equal(last.inflight, 0);
    assert.equal(typeof last.baseline, 'number', 'three requests came back');
    assert.equal(d.stores.length, 1, 'the rules share one store');
    assert.deepEqual(d.stores[0].limiters, ['login', 'api']);
    assert.ok(d.stores[0].totals.scripts >= 1);
    assert.equal(d.stores[0].totals.decisions, 3);
  });
});

describe('floodgate proxy: the fleet, two proxies on one Redis', () => {
  let upstream: NodeUpstream;
  let redis: RedisServer;
  const proxies: RunningProxy[] = [];
  before(async () => {
    upstream = await startNodeUpstream();
    redis = await RedisServer.start();
    const config = validateProxyConfig({
      upstream: upstream.url,
      listen: 0,
      admin: 0,
      store: redis.url,
      trustProxy: ['loopback'],
      rules: [{ name: 'api', policies: [{ limit: 6, window: '1h' }] }],
    });
    for (let i = 0; i < 2; i++)
      proxies.push(await startProxy(config, { log: pino({ level: 'silent' }), env: {} }));
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await redis?.stop();
    await upstream?.close();
  });

  it("sums both proxies' traffic: who sent most and who was refused most, fleet-wide", async () => {
    const [a, b] = proxies as [RunningProxy, RunningProxy];
    const from = (p: RunningProxy, ip: string, n: number) =>
      Promise.all(Array.from({ length: n }, () => send(p.url, { headers: { 'x-forwarded-for': ip } })));
    await from(a, '203.0.113.1', 5);
    await from(b, '203.0.113.1', 4);
    await from(b, '198.51.100.2', 2);
    await Promise.all(proxies.map((p) => p.fleet!.publish()));
    for (const p of proxies) {
      const fleet = JSON.parse((await send(`${p.adminUrl}/api/fleet?window=1m`)).body);
      assert.equal(fleet.processes.length, 2);
      const api = fleet.limiters.find((l: { name: string }) => l.name === 'api');
      assert.equal(api.processes, 2);
      const counts = api.top.requests.clients.map((c: { label: string; count: number }) => [
        c.label,
        c.count,
      ]);
      assert.deepEqual(counts, [
        ['203.0.113.1', 9],
        ['198.51.100.2', 2],
      ]);
      assert.equal(api.top.requests.total, 11);
      assert.equal(api.top.requests.bound, 0, 'no summary was full: the counts are exact');
      assert.deepEqual(
        api.top.refusals.clients.map((c: { label: string; count: number }) => [c.label, c.count]),
        [['203.0.113.1', 3]],
        'the limit of 6 is shared through Redis: 3 of the 9 refused',
      );
    }
    const one = JSON.parse((await send(`${a.adminUrl}/api/limiters/api/top?window=1m`)).body);
    assert.equal(one.requests.clients[0].count, 5, 'a process alone sees only its own');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { statuses } from './helpers/requests.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// The proxy's front door against the identity attacks: IPv6 clients against deny and allow lists, and
// IPv4-mapped addresses written by a trusted proxy in any notation.

let up: NodeUpstream;
const running: RunningProxy[] = [];
before(async () => {
  up = await startNodeUpstream();
});
after(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await up.close();
});

async function proxyFor(data: Record<string, unknown>): Promise<RunningProxy> {
  const log = pino({ level: 'silent' });
  const proxy = await startProxy(validateProxyConfig({ admin: false, upstream: up.url, ...data }), { log });
  running.push(proxy);
  return proxy;
}

const policies = [{ limit: 1, window: '1m', algorithm: 'fixed-window' }];

describe('proxy: identity at the edges', () => {
  it('deny lists refuse an IPv6 client by its address, at the top level and in a rule', async () => {
    for (const deny of [['::1'], ['::/0'], ['loopback']]) {
      const top = await proxyFor({ listen: '[::1]:0', deny, rules: [{ name: 'all', policies }] });
      assert.deepEqual(await statuses(`${top.url}/`, 1), [403], `deny ${deny}`);
      const inRule = await proxyFor({ listen: '[::1]:0', rules: [{ name: 'all', policies, deny }] });
      assert.deepEqual(await statuses(`${inRule.url}/`, 1), [403], `rule deny ${deny}`);
    }
    const allowed = await proxyFor({ listen: '[::1]:0', allow: ['::1'], rules: [{ name: 'all', policies }] });
    assert.deepEqual(await statuses(`${allowed.url}/`, 3), [200, 200, 200]);
  });

  it('behind a trusted proxy, a hex-written IPv4-mapped client is its IPv4 client, for lists and limits', async () => {
    const proxy = await proxyFor({
      listen: 0,
      trustProxy: ['loopback'],
      deny: ['198.51.100.9'],
      rules: [{ name: 'all', policies }],
    });
    const url = `${proxy.url}/`;
    assert.deepEqual(await statuses(url, 1, { 'x-forwarded-for': '::ffff:c633:6409' }), [403]);
    assert.deepEqual(await statuses(url, 1, { 'x-forwarded-for': '::ffff:7f09:909' }), [200]);
    assert.deepEqual(await statuses(url, 1, { 'x-forwarded-for': '::ffff:7f09:90a' }), [200], 'not one /64');
    assert.deepEqual(await statuses(url, 1, { 'x-forwarded-for': '127.9.9.9' }), [429]);
  });
});

describe('proxy: paths an upstream routes to a limited route', () => {
  it('path parameters and ..; count as the route they reach; encoded slashes are refused', async () => {
    const proxy = await proxyFor({
      listen: 0,
      rules: [{ name: 'login', match: { path: '/login' }, policies }],
    });
    const at = async (path: string) => {
      const res = await fetch(`${proxy.url}${path}`);
      await res.arrayBuffer();
      return res.status;
    };
    assert.equal(await at('/login'), 200);
    for (const dodge of ['/login;jsessionid=1', '/..;/login', '/static/..;/login', '/login;a=b/', '/%6cogin'])
      assert.equal(await at(dodge), 429, dodge);
    for (const encoded of ['/static/..%2flogin', '/static%2F..%2Flogin', '/a%5c..%5clogin', '/login%00'])
      assert.equal(await at(encoded), 400, encoded);
    assert.equal(await at('/other;x=1'), 200, 'another route is not limited');
  });
});

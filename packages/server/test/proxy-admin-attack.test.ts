import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { send } from '@floodgate/test-support';
import { pino } from 'pino';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// The proxy's admin API attacked over HTTP, with the token (an operator's mistake, a stolen token) and
// without: every answer a 4xx that says what is wrong, never a 5xx, a hang or a secret.

const TOKEN = 'attack-admin-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };
const json = { ...auth, 'content-type': 'application/json' };

describe('floodgate proxy admin API: overrides are held to the configuration’s rules', () => {
  let upstream: NodeUpstream;
  let proxy: RunningProxy;
  let admin: string;
  before(async () => {
    upstream = await startNodeUpstream();
    proxy = await startProxy(
      validateProxyConfig({
        upstream: upstream.url,
        listen: 0,
        admin: 0,
        trustProxy: ['loopback'],
        rules: [
          {
            name: 'login',
            match: { path: '/login' },
            countOnly: 'failed',
            policies: [{ limit: 5, window: '15m' }],
          },
          {
            name: 'api',
            limits: [
              { name: 'per-ip', key: 'ip', policies: [{ limit: 3, window: '1h' }] },
              {
                name: 'per-key',
                key: 'api-key',
                onMissingKey: 'skip',
                policies: [{ limit: 100, window: '1h' }],
              },
            ],
          },
        ],
      }),
      { log: pino({ level: 'silent' }), adminToken: TOKEN },
    );
    admin = proxy.adminUrl ?? assert.fail('the admin listener is on');
  });
  after(async () => {
    await proxy?.stop();
    await upstream?.close();
  });

  const override = (limiter: string, key: string, body: unknown) =>
    send(`${admin}/api/limiters/${encodeURIComponent(limiter)}/overrides/${encodeURIComponent(key)}`, {
      method: 'PUT',
      headers: json,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const from = async (ip: string, path = '/x') =>
    (await send(`${proxy.url}${path}`, { headers: { 'x-forwarded-for': ip } })).status;
  const concurrency = { algorithm: 'concurrency', limit: 1, leaseTimeout: '1m' };

  it('a concurrency policy in an override of a limit of a list is refused 400, naming the field', async () => {
    const refused = await override('api per-ip', 'per-ip|ip:203.0.113.7', [concurrency]);
    assert.equal(refused.status, 400, refused.body);
    assert.match(
      JSON.parse(refused.body).error,
      /\[0\]\.algorithm" must be another algorithm than "concurrency": several limits are decided together/,
    );
    // Nothing was set: the list's limit holds for that client as before.
    const config = JSON.parse((await send(`${admin}/api`, { headers: auth })).body);
    const perIp = config.limiters.find((l: { name: string }) => l.name === 'api per-ip');
    assert.deepEqual(perIp.overrides, {});
    assert.deepEqual(
      [
        await from('203.0.113.7'),
        await from('203.0.113.7'),
        await from('203.0.113.7'),
        await from('203.0.113.7'),
      ],
      [200, 200, 200, 429],
    );
  });

  it('a concurrency policy in an override of a countOnly rule is refused 400, naming the field', async () => {
    const refused = await override('login', 'ip:203.0.113.8', concurrency);
    assert.equal(refused.status, 400, refused.body);
    assert.match(
      JSON.parse(refused.body).error,
      /\.algorithm" must be another algorithm than "concurrency": .*countOnly/,
    );
  });

  it('an override the configuration would take is set, and enforced', async () => {
    const set = await override('api per-ip', 'per-ip|ip:203.0.113.9', {
      name: 'tight',
      limit: 1,
      window: '1h',
    });
    assert.equal(set.status, 200, set.body);
    assert.deepEqual([await from('203.0.113.9'), await from('203.0.113.9')], [200, 429]);
  });
});

describe('floodgate proxy admin API: who may read, by Host', () => {
  let upstream: NodeUpstream;
  let proxy: RunningProxy;
  let admin: string;
  let port: string;
  const FLOODER = '203.0.113.66';
  before(async () => {
    upstream = await startNodeUpstream();
    proxy = await startProxy(
      validateProxyConfig({
        upstream: upstream.url,
        listen: 0,
        admin: 0,
        trustProxy: ['loopback'],
        rules: [{ name: 'api', policies: [{ limit: 1, window: '1h' }] }],
      }),
      { log: pino({ level: 'silent' }), adminToken: TOKEN },
    );
    admin = proxy.adminUrl ?? assert.fail('the admin listener is on');
    port = new URL(admin).port;
    for (let i = 0; i < 2; i++) await send(proxy.url, { headers: { 'x-forwarded-for': FLOODER } });
  });
  after(async () => {
    await proxy?.stop();
    await upstream?.close();
  });

  it('every notation of a loopback address is a loopback Host; no other name or address is', async () => {
    const loopback = [
      'localhost',
      '127.0.0.1',
      '127.0.0.2',
      '127.255.255.254',
      '[::1]',
      '[0:0:0:0:0:0:0:1]',
      '[::ffff:127.0.0.1]',
      '[::ffff:7f00:1]',
      '[::ffff:127.0.0.2]',
    ];
    for (const host of loopback) {
      const res = await send(`${admin}/api`, { headers: { host: `${host}:${port}` } });
      assert.equal(res.status, 200, host);
      assert.equal((await send(`${admin}/api`, { headers: { host } })).status, 200, `${host}, no port`);
    }
    const others = [
      'attacker.example',
      '127.0.0.1.nip.io',
      'localhost.attacker.example',
      '[::ffff:192.0.2.1]',
      '[::ffff:c000:201]',
      '[::2]',
      '192.0.2.1',
      '127.1',
      '2130706433',
      'localhost.',
    ];
    for (const host of others) {
      const res = await send(`${admin}/api`, { headers: { host: `${host}:${port}` } });
      assert.equal(res.status, 401, host);
      assert.ok(!res.body.includes(FLOODER), host);
    }
  });

  it('/health and /metrics answer any Host (probes and scrapers), and name no client', async () => {
    for (const host of ['attacker.example', '10.0.0.7', `localhost:${port}`]) {
      const health = await send(`${admin}/health`, { headers: { host } });
      assert.equal(health.status, 200, host);
      const metrics = await send(`${admin}/metrics`, { headers: { host } });
      assert.equal(metrics.status, 200, host);
      assert.match(metrics.body, /floodgate_proxy_requests_total\{rule="api",decision="limited"\} 1/);
      assert.ok(!metrics.body.includes(FLOODER), 'no client in the metrics');
      assert.ok(!health.body.includes(FLOODER), 'no client in the health');
    }
  });
});

describe('floodgate proxy admin API: bodies too large', () => {
  let upstream: NodeUpstream;
  let proxy: RunningProxy;
  let admin: string;
  before(async () => {
    upstream = await startNodeUpstream();
    proxy = await startProxy(
      validateProxyConfig({
        upstream: upstream.url,
        listen: 0,
        admin: 0,
        rules: [{ name: 'api', policies: [{ limit: 10, window: '1h' }] }],
      }),
      { log: pino({ level: 'silent' }), adminToken: TOKEN },
    );
    admin = proxy.adminUrl ?? assert.fail('the admin listener is on');
  });
  after(async () => {
    await proxy?.stop();
    await upstream?.close();
  });

  const url = () => `${admin}/api/limiters/api/overrides/${encodeURIComponent('ip:203.0.113.5')}`;
  const big = Buffer.alloc(20 * 1024 * 1024, 0x20);

  it('a 20 MB override is answered 413 as a problem, whole, and the connection closed cleanly', async () => {
    for (const body of [big, Readable.from([big.subarray(0, 1024 * 1024), big.subarray(1024 * 1024)])]) {
      const res = await send(url(), { method: 'PUT', headers: json, body });
      assert.equal(res.status, 413);
      assert.equal(res.headers['content-type'], 'application/problem+json');
      assert.equal(res.headers.connection, 'close');
      const problem = JSON.parse(res.body);
      assert.equal(problem.status, 413);
      assert.match(problem.detail, /at most 65536 bytes/);
    }
    const viaFetch = await fetch(url(), { method: 'PUT', headers: json, body: big });
    assert.equal(viaFetch.status, 413);
    await viaFetch.arrayBuffer();
    // Nothing was set, and the listener still answers.
    const config = JSON.parse((await send(`${admin}/api`, { headers: auth })).body);
    assert.deepEqual(config.limiters[0].overrides, {});
  });
});

describe('floodgate proxy admin API: an attack pass over HTTP', () => {
  let upstream: NodeUpstream;
  let proxy: RunningProxy;
  let admin: string;
  before(async () => {
    upstream = await startNodeUpstream();
    proxy = await startProxy(
      validateProxyConfig({
        upstream: upstream.url,
        listen: 0,
        admin: 0,
        rules: [{ name: 'api', policies: [{ name: 'm', limit: 10, window: '1h' }] }],
      }),
      { log: pino({ level: 'silent' }), adminToken: TOKEN },
    );
    admin = proxy.adminUrl ?? assert.fail('the admin listener is on');
  });
  after(async () => {
    await proxy?.stop();
    await upstream?.close();
  });

  const ov = (key: string, limiter = 'api') =>
    `${admin}/api/limiters/${encodeURIComponent(limiter)}/overrides/${encodeURIComponent(key)}`;
  const put = (body: string, headers: Record<string, string> = json, key = 'ip:203.0.113.1') =>
    send(ov(key), { method: 'PUT', headers, body });
  const overrides = async () =>
    JSON.parse((await send(`${admin}/api`, { headers: auth })).body).limiters[0].overrides;

  it('malformed bodies and impossible numbers are 400 naming the field; nothing is set', async () => {
    const cases: [string, RegExp][] = [
      ['{', /must be JSON/],
      ['', /must be JSON/],
      ['null', /"overrides\["ip:203\.0\.113\.1"\]" must be a policy object/],
      ['[]', /at least one policy/],
      ['[null]', /\[0\]" must be a policy object/],
      [`${'['.repeat(20_000)}${']'.repeat(20_000)}`, /\[0\]" must be a policy object/],
      ['{"limit":1e400,"window":"1m"}', /\.limit" must be a positive integer; got Infinity/],
      ['{"limit":-1,"window":"1m"}', /\.limit" must be a positive integer; got -1/],
      ['{"limit":1.5,"window":"1m"}', /\.limit" must be a positive integer; got 1\.5/],
      ['{"limit":0,"window":"1m"}', /\.limit" must be a positive integer; got 0/],
      ['{"limit":"5","window":"1m"}', /\.limit" must be a positive integer/],
      ['{"limit":9007199254740993,"window":"1m"}', /\.limit" must be a positive integer/],
      ['{"limit":1,"window":1e400}', /\.window" must be/],
      ['{"limit":1,"window":-5}', /\.window" must be/],
      ['{"limit":1,"window":0.5}', /\.window" must be/],
      ['{"limit":1,"window":"NaN"}', /\.window" must be/],
      ['{"limit":1,"window":"1e400s"}', /\.window" must be/],
      ['{"limit":1,"window":"1m","burst":1e20}', /\.burst" must be/],
      ['{"limit":1,"window":"1m","__proto__":{"limit":1000}}', /\.__proto__" must be absent/],
      ['{"limit":1,"window":"1m","algorithm":"magic"}', /\.algorithm" must be one of/],
      [JSON.stringify({ limit: 1, window: '1m', name: 'n'.repeat(100) }), /\.name" must be up to 64/],
    ];
    for (const [body, message] of cases) {
      const res = await put(body);
      assert.equal(res.status, 400, body.slice(0, 60));
      assert.equal(res.headers['content-type'], 'application/problem+json');
      assert.match(JSON.parse(res.body).detail, message, body.slice(0, 60));
    }
    assert.deepEqual(await overrides(), {});
  });

  it('a body that is not declared JSON is 415, whatever it holds', async () => {
    for (const type of [
      'text/plain',
      'application/jsonx',
      'application/x-www-form-urlencoded',
      'multipart/form-data',
      '',
    ])
      assert.equal(
        (await put('{"limit":1,"window":"1m"}', { ...auth, 'content-type': type })).status,
        415,
        type,
      );
    assert.equal(
      (await send(ov('ip:203.0.113.1'), { method: 'PUT', headers: auth, body: '{}' })).status,
      415,
    );
    assert.deepEqual(await overrides(), {});
  });

  it('identifiers of 1 MB, unknown limiters and odd names are 4xx; long identifiers within bounds work', async () => {
    const huge = await put('{"limit":1,"window":"1m"}', json, 'k'.repeat(1024 * 1024));
    assert.equal(huge.status, 431, "the head's bound (Node's 16 KB) answers it");
    for (const name of ['nope', '__proto__', 'constructor', '\u0000', 'api/..', 'api '])
      assert.equal(
        (await send(ov('k', name), { method: 'PUT', headers: json, body: '{"limit":1,"window":"1m"}' }))
          .status,
        404,
        name,
      );
    assert.equal(
      (
        await send(`${admin}/api/limiters/api/overrides/%E0%A4%A`, {
          method: 'PUT',
          headers: json,
          body: '{}',
        })
      ).status,
      400,
    );
    assert.equal((await put('{"name":"m","limit":1,"window":"1m"}', json, '~#0123abcd')).status, 400);
    const long = 'L'.repeat(8 * 1024);
    assert.equal((await put('{"name":"m","limit":1,"window":"1m"}', json, long)).status, 200);
    assert.deepEqual(Object.keys(await overrides()), [long]);
    assert.equal((await send(ov(long), { method: 'DELETE', headers: auth })).status, 200);
    for (const method of ['PATCH', 'POST'])
      assert.equal((await send(ov('k'), { method, headers: json, body: '{}' })).status, 405, method);
  });

  it('a wrong, empty, misplaced or very long token is 401 (or 431 past the head bound), never the token', async () => {
    const reset = `${admin}/api/limiters/api/clients/k/reset`;
    const tried = [
      '',
      'Bearer',
      'Bearer ',
      'Bearer wrong',
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Basic ${TOKEN}`,
      `Bearer ${TOKEN} ${TOKEN}`,
      `Bearer ${'z'.repeat(8 * 1024)}`,
      `Token ${TOKEN}`,
    ];
    for (const authorization of tried) {
      const res = await send(reset, { method: 'POST', headers: { authorization } });
      assert.equal(res.status, 401, authorization.slice(0, 40));
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.ok(!res.body.includes(TOKEN));
    }
    const past = await send(reset, {
      method: 'POST',
      headers: { authorization: `Bearer ${'z'.repeat(20_000)}` },
    });
    assert.equal(past.status, 431);
    // A 20 MB body without the token: refused before it is read, and drained, not reset.
    const big = await send(ov('k'), {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: Buffer.alloc(20 * 1024 * 1024, 0x20),
    });
    assert.equal(big.status, 401);
    assert.equal(
      (await send(reset, { method: 'POST', headers: { authorization: `bearer  ${TOKEN} ` } })).status,
      200,
    );
  });

  it('parallel unblocks, overrides and removals on the same identifiers: every one answered 200, the state whole', async () => {
    const keys = Array.from({ length: 4 }, (_, i) => `ip:198.51.100.${i}`);
    const ops = Array.from({ length: 240 }, (_, i) => {
      const key = keys[i % keys.length]!;
      if (i % 3 === 0) return put(JSON.stringify({ name: 'm', limit: 1 + (i % 7), window: '1m' }), json, key);
      if (i % 3 === 1) return send(ov(key), { method: 'DELETE', headers: auth });
      return send(`${admin}/api/limiters/api/clients/${encodeURIComponent(key)}/reset`, {
        method: 'POST',
        headers: auth,
      });
    });
    const statuses = (await Promise.all(ops)).map((r) => r.status);
    assert.deepEqual([...new Set(statuses)], [200]);
    for (const [key, policies] of Object.entries(await overrides())) {
      assert.ok(keys.includes(key), key);
      assert.equal((policies as { name: string }[])[0]!.name, 'm');
    }
    // Each identifier ends as its last answered change says: one more, in turn, settles it.
    for (const key of keys)
      assert.equal((await put('{"name":"m","limit":2,"window":"1m"}', json, key)).status, 200);
    assert.deepEqual(Object.keys(await overrides()).sort(), [...keys].sort());
  });
});

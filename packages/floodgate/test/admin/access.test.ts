import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { send } from '@floodgate/test-support';
import { isLoopbackHost } from '../../src/admin/access.js';
import { type AdminAction, adminHandler } from '../../src/admin/handler.js';
import { Limiter } from '../../src/limiter/limiter.js';

const TOKEN = 'correct-horse-battery-staple';
const CLIENT = 'ip:203.0.113.9';

describe('isLoopbackHost', () => {
  it('accepts localhost and loopback addresses, with or without a port', () => {
    for (const host of [
      'localhost',
      'LOCALHOST:9464',
      '127.0.0.1',
      '127.0.0.1:9464',
      '127.8.9.10:1',
      '[::1]',
      '[::1]:9464',
      '[::ffff:127.0.0.1]:80',
      // The other notations of the same addresses: as a browser writes them, uncompressed, upper case.
      '[::ffff:7f00:1]:9464',
      '[::ffff:7fff:ffff]',
      '[0:0:0:0:0:0:0:1]:9464',
      '[0000:0000:0000:0000:0000:0000:0000:0001]',
      '[::FFFF:127.255.255.255]',
      '[0:0:0:0:0:ffff:127.0.0.1]',
    ])
      assert.equal(isLoopbackHost(host), true, host);
  });

  it('refuses every other name, garbled Hosts and none', () => {
    for (const host of [
      undefined,
      '',
      'evil.example',
      'evil.example:9464',
      'localhost.evil.example',
      'localhost.evil.example:9464',
      '127.evil.example',
      '127.0.0.1.nip.io',
      '127.0.0.1.evil.example:9464',
      '192.0.2.1',
      '[::2]',
      '[::1',
      '::1',
      'localhost:',
      'localhost:9464:1',
      'localhost@evil.example',
      '[::1]evil',
      // Not loopback, or not in a notation a browser sends for one.
      '[::ffff:192.0.2.1]',
      '[::ffff:c000:201]',
      '[::ffff:8000:1]',
      '[::127.0.0.1]',
      '[::]',
      '[fe80::1]',
      '[::1%25lo]',
      '128.0.0.1',
      '127.1',
      '2130706433',
      '0x7f000001',
      '127.0.0.1.',
      'localhost.',
      'app.localhost',
    ])
      assert.equal(isLoopbackHost(host), false, String(host));
  });
});

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('admin access: DNS rebinding', () => {
  const servers: Server[] = [];
  after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

  async function start(token?: string) {
    const limiter = new Limiter({ policies: { limit: 3, window: '1m' }, traffic: true });
    for (let i = 0; i < 5; i++) await limiter.consume(CLIENT);
    const server = createServer(
      adminHandler({ limiters: { api: limiter }, ...(token === undefined ? {} : { token }) }),
    );
    servers.push(server);
    const url = await listen(server);
    return { url, port: new URL(url).port };
  }

  it('reads from loopback are open only when the Host is a loopback name', async () => {
    const { url, port } = await start(TOKEN);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'localhost'])
      assert.equal((await send(`${url}/api`, { headers: { host } })).status, 200, host);
    for (const path of ['/api', '/api/limiters/api/top', '/api/dashboard', '/', '/dashboard.js']) {
      const rebound = await send(`${url}${path}`, { headers: { host: `rebound.evil.example:${port}` } });
      assert.equal(rebound.status, 401, path);
      assert.ok(!rebound.body.includes('203.0.113.9'), 'no client in a refusal');
    }
    const withToken = await send(`${url}/api/limiters/api/top`, {
      headers: { host: `admin.example.org:${port}`, authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(withToken.status, 200, 'a real name with the token reads');
    assert.match(withToken.body, /203\.0\.113\.9/);
  });

  it('without a token configured, a rebound name is refused (403) and told why', async () => {
    const { url, port } = await start();
    assert.equal((await send(`${url}/api`, { headers: { host: `localhost:${port}` } })).status, 200);
    const rebound = await send(`${url}/api/limiters/api/top`, {
      headers: { host: `127.0.0.1.nip.io:${port}` },
    });
    assert.equal(rebound.status, 403);
    assert.match(rebound.body, /localhost, 127\.0\.0\.1 or \[::1\]/);
  });
});

describe('admin access: no action from a cross-site form', () => {
  let url: string;
  let limiter: Limiter;
  const actions: AdminAction[] = [];
  let server: Server;
  before(async () => {
    limiter = new Limiter({ policies: { limit: 3, window: '1m' }, traffic: true });
    for (let i = 0; i < 5; i++) await limiter.consume(CLIENT);
    server = createServer(
      adminHandler({ limiters: { api: limiter }, token: TOKEN, onAction: (a) => actions.push(a) }),
    );
    url = await listen(server);
  });
  after(() => new Promise((r) => server.close(r)));

  const reset = `/api/limiters/api/clients/${encodeURIComponent(CLIENT)}/reset`;
  const override = `/api/limiters/api/overrides/${encodeURIComponent(CLIENT)}`;
  const form = 'application/x-www-form-urlencoded';

  it('the token counts only in the Authorization header: never in the query, a cookie or a form', async () => {
    for (const [path, headers, body] of [
      [`${reset}?token=${TOKEN}`, {}, undefined],
      [`${reset}?access_token=${TOKEN}`, {}, undefined],
      [`${reset}?authorization=Bearer%20${TOKEN}`, {}, undefined],
      [reset, { cookie: `token=${TOKEN}; authorization=Bearer ${TOKEN}` }, undefined],
      [reset, { 'content-type': form }, `token=${TOKEN}&authorization=Bearer+${TOKEN}`],
      [reset, { 'content-type': 'text/plain' }, `Authorization: Bearer ${TOKEN}`],
    ] as const) {
      const r = await send(`${url}${path}`, { method: 'POST', headers, body });
      assert.equal(r.status, 401, path);
    }
    assert.equal((await limiter.peek(CLIENT)).allowed, false, 'still limited');
    assert.equal(actions.length, 0);
  });

  it('an override is read only from a JSON body: text/plain and form bodies are refused (415)', async () => {
    const policy = '{"limit":1000,"window":"1m"}';
    for (const type of [undefined, 'text/plain', 'text/plain;charset=UTF-8', form, 'multipart/form-data']) {
      const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
      if (type !== undefined) headers['content-type'] = type;
      const r = await send(`${url}${override}`, { method: 'PUT', headers, body: policy });
      assert.equal(r.status, 415, String(type));
    }
    assert.equal(limiter.config().overrides?.[CLIENT], undefined, 'no override was set');
    assert.equal(actions.length, 0);
    const json = await send(`${url}${override}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json; charset=utf-8' },
      body: policy,
    });
    assert.equal(json.status, 200, 'the same body as JSON is taken');
  });

  it('a preflight gets no CORS grant, so no other origin can send the header', async () => {
    const r = await send(`${url}${reset}`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization',
      },
    });
    assert.ok(r.status >= 400, `status ${r.status}`);
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    assert.equal(r.headers['access-control-allow-headers'], undefined);
  });
});

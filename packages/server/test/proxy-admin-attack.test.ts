import assert from 'node:assert/strict';
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

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide } from '../../src/core/decision.js';
import { policySet, resolvePolicies } from '../../src/core/policy.js';
import { clientIpResolver, groupIp, normalizeIp } from '../../src/http/client-ip.js';
import { rateLimitHeaders } from '../../src/http/headers.js';
import { basicCredentials, byApiKey, HttpGuard, waitMessage } from '../../src/http/index.js';
import type { RequestView } from '../../src/http/request.js';
import { ResolvedCache } from '../../src/http/resolved-cache.js';

const view = (headers: Record<string, string>, peer = '127.0.0.1'): RequestView => ({
  method: 'GET',
  path: '/',
  peer,
  header: (name) => headers[name],
});

describe('client addresses', () => {
  it('normalizes IPv4-mapped, bracketed and zoned addresses, and rejects non-addresses', () => {
    assert.equal(normalizeIp('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(normalizeIp('[2001:db8::1]'), '2001:db8::1');
    assert.equal(normalizeIp('fe80::1%eth0'), 'fe80::1');
    for (const bad of [undefined, '', 'garbage', '999.1.1.1', '1.2.3.4:x', '1.2.3.4:'])
      assert.equal(normalizeIp(bad), '');
  });

  it('the resolved-address cache is bounded by bytes: 20,000 distinct 12 KB chains hold nothing', () => {
    const cache = new ResolvedCache<string>();
    const chain = '203.0.113.1, '.repeat(1000);
    for (let i = 0; i < 20_000; i++) cache.set(`127.0.0.1\n${i}, ${chain}`, '203.0.113.1');
    assert.equal(cache.keyChars, 0);
    for (let i = 0; i < 20_000; i++) cache.set(`127.0.0.1\n${i}, ${'9'.repeat(200)}`, 'x');
    assert.ok(cache.keyChars <= 4096 * 256, `${cache.keyChars} characters held`);
    cache.set('127.0.0.1', 'a');
    assert.equal(cache.get('127.0.0.1'), 'a');
  });

  it('recognises IPv4-mapped addresses by value, not notation', () => {
    for (const mapped of [
      '::ffff:7f09:909',
      '::FFFF:7F09:0909',
      '0:0:0:0:0:ffff:127.9.9.9',
      '0::ffff:7f09:909',
    ])
      assert.equal(normalizeIp(mapped), '127.9.9.9', mapped);
    // Neighbours that are not IPv4-mapped stay IPv6: IPv4-translated, NAT64, IPv4-compatible.
    for (const v6 of ['::ffff:0:7f09:909', '64:ff9b::7f09:909', '::7f09:909'])
      assert.equal(normalizeIp(v6), v6, v6);
    assert.equal(normalizeIp('2001:DB8::A'), '2001:db8::a');
    assert.equal(normalizeIp('203.0.113.5:4711'), '203.0.113.5', 'a hop written with its port');
  });

  it('groups IPv6 by prefix, including compressed and IPv4-tailed forms', () => {
    assert.equal(groupIp('2001:db8:1:2:3:4:5:6', 64), '2001:db8:1:2:0:0:0:0/64');
    assert.equal(groupIp('2001:db8::1', 48), '2001:db8:0:0:0:0:0:0/48');
    assert.equal(groupIp('2001:db8:abcd:12ff::1', 56), '2001:db8:abcd:1200:0:0:0:0/56');
    assert.equal(groupIp('64:ff9b::192.0.2.33', 128), '64:ff9b:0:0:0:0:c000:221/128');
    assert.equal(groupIp('::1', 64), '0:0:0:0:0:0:0:0/64');
    assert.equal(groupIp('192.0.2.1', 64), '192.0.2.1');
  });

  it('walks X-Forwarded-For only through trusted hops', () => {
    const xff = '198.51.100.1, 10.0.0.2, 10.0.0.3';
    assert.equal(clientIpResolver(false)('10.0.0.4', xff), '10.0.0.4');
    assert.equal(clientIpResolver(1)('10.0.0.4', xff), '10.0.0.3');
    assert.equal(clientIpResolver(2)('10.0.0.4', xff), '10.0.0.2');
    assert.equal(clientIpResolver(['10.0.0.0/8'])('10.0.0.4', xff), '198.51.100.1');
    assert.equal(clientIpResolver(['10.0.0.0/8'])('203.0.113.5', xff), '203.0.113.5', 'untrusted peer');
    assert.equal(clientIpResolver(true)('10.0.0.4', xff), '198.51.100.1');
    assert.equal(clientIpResolver(true)('10.0.0.4', undefined), '10.0.0.4');
    assert.equal(clientIpResolver(['private', 'loopback', 'linklocal'])('::1', '2001:db8::5'), '2001:db8::5');
  });

  it('rejects invalid trust settings, naming the option', () => {
    assert.throws(() => clientIpResolver(-1), /"trustProxy" must be a boolean, a number of hops/);
    assert.throws(
      () => clientIpResolver(['10.0.0.0/33']),
      /"trustProxy\[0\]" must be an IP address, a CIDR block/,
    );
    assert.throws(() => clientIpResolver(['nope']), /"trustProxy\[0\]"/);
    assert.throws(() => clientIpResolver(['1.2.3.4/8/9']), /"trustProxy\[0\]"/);
    assert.throws(() => clientIpResolver('yes' as never), /"trustProxy" must be/);
  });
});

describe('credentials and messages', () => {
  it('parses Basic credentials and refuses garbled ones', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    assert.deepEqual(basicCredentials(`Basic ${b64('john_doe:EXAMPLE:PASSWORD')}`), {
      user: 'john_doe',
      password: 'EXAMPLE:PASSWORD',
    });
    for (const bad of [
      undefined,
      'Basic',
      `Basic ${b64(':pw')}`,
      `Basic ${b64('nocolon')}`,
      'Basic abc',
      'Basic //79:Dg==',
    ]) {
      assert.equal(basicCredentials(bad), undefined, String(bad));
    }
  });

  it('hashes API keys from a header or a bearer token', () => {
    const k = byApiKey();
    const a = k.extract(view({ 'x-api-key': 'secret' }), '');
    assert.equal(a, k.extract(view({ authorization: 'Bearer secret' }), ''));
    assert.ok(a?.startsWith('key:') && !a.includes('secret'));
    assert.equal(k.extract(view({}), ''), undefined);
  });

  it('says how long to wait', () => {
    const set = policySet(resolvePolicies({ limit: 1, window: '10s' }, 'p'));
    const d = (retryAfter: number) =>
      decide(set.policies, [{ allowed: false, remaining: 0, resetAt: 0, retryAfter, resetAfter: 0 }]);
    assert.equal(waitMessage(d(1)), 'Wait 1 second before trying again.');
    assert.equal(waitMessage(d(12_001)), 'Wait 13 seconds before trying again.');
    assert.equal(waitMessage(d(Number.POSITIVE_INFINITY)), 'This request costs more than the limit allows.');
    const h = rateLimitHeaders(d(Number.POSITIVE_INFINITY), 0, 'draft-10', false);
    assert.equal(
      h.find(([n]) => n === 'Retry-After'),
      undefined,
      'no Retry-After when no wait helps',
    );
  });

  it('quotes policy names as structured-field strings', () => {
    const set = policySet(resolvePolicies({ name: 'per-second:v1.2', limit: 2, window: '1s' }, 'p'));
    const d = decide(set.policies, [
      { allowed: true, remaining: 1, resetAt: 500, retryAfter: 0, resetAfter: 500 },
    ]);
    const h = Object.fromEntries(rateLimitHeaders(d, 0, 'draft-10', false));
    assert.equal(h['RateLimit-Policy'], '"per-second:v1.2";q=2;w=1');
    assert.equal(h.RateLimit, '"per-second:v1.2";r=1;t=1');
  });

  it('describes a policy by its current numbers when one name is reconfigured, and lists every policy', () => {
    const fields = (specs: Parameters<typeof resolvePolicies>[0], remaining: number[]) => {
      const set = policySet(resolvePolicies(specs, 'p'));
      const results = remaining.map((r) => ({
        allowed: true,
        remaining: r,
        resetAt: 2000,
        retryAfter: 0,
        resetAfter: 2000,
      }));
      return Object.fromEntries(rateLimitHeaders(decide(set.policies, results), 0, 'draft-10', false));
    };
    assert.equal(fields({ name: 'api', limit: 5, window: '1m' }, [4])['RateLimit-Policy'], '"api";q=5;w=60');
    assert.equal(
      fields({ name: 'api', limit: 50, window: '1h' }, [4])['RateLimit-Policy'],
      '"api";q=50;w=3600',
    );
    const slots = { name: 'api', algorithm: 'concurrency', limit: 50, leaseTimeout: '1h' } as const;
    assert.equal(fields(slots, [4])['RateLimit-Policy'], '"api";q=50', 'a concurrency limit has no window');
    const both = fields(
      [
        { name: 'api', limit: 50, window: '1h' },
        { name: 'burst', limit: 3, window: '1s' },
      ],
      [49, 2],
    );
    assert.equal(both['RateLimit-Policy'], '"api";q=50;w=3600, "burst";q=3;w=1');
    assert.equal(both.RateLimit, '"api";r=49;t=2, "burst";r=2;t=2');
  });
});

describe('middleware options', () => {
  const ok = { policies: { limit: 1, window: '1s' } };
  const cases: [string, unknown, RegExp][] = [
    ['options', null, /"options" must be an object/],
    ['policies missing', {}, /"policies" must be given \(or a limiter, or only shed\)/],
    ['policies invalid', { policies: { limit: -1, window: '1s' } }, /"policies.limit"/],
    ['limiter', { limiter: {} }, /"limiter" must be a Limiter/],
    ['key', { ...ok, key: 'ip' }, /"key" must be a key extractor/],
    ['onMissingKey', { ...ok, onMissingKey: 'deny' }, /"onMissingKey" must be one of "ip", "skip", "reject"/],
    ['ipv6Prefix', { ...ok, ipv6Prefix: 0 }, /"ipv6Prefix" must be an integer from 1 to 128/],
    ['cost', { ...ok, cost: -2 }, /"cost" must be a non-negative integer or a function/],
    ['countOnly', { ...ok, countOnly: 'errors' }, /"countOnly" must be one of "failed", "successful"/],
    [
      'countOnly with a concurrency policy',
      { policies: { algorithm: 'concurrency', limit: 2, leaseTimeout: '1m' }, countOnly: 'failed' },
      /"countOnly" must be absent when a policy is a concurrency limit/,
    ],
    [
      'headers',
      { ...ok, headers: 'draft-8' },
      /"headers" must be one of "draft-10", "draft-7", "draft-6", false/,
    ],
    ['legacyHeaders', { ...ok, legacyHeaders: 'yes' }, /"legacyHeaders" must be a boolean/],
    [
      'shed, by its full path',
      { ...ok, shed: { limit: { algorithm: 'aimd', backoff: 2 } } },
      /"shed\.limit\.backoff"/,
    ],
    ['passOnStoreError', { ...ok, passOnStoreError: 'open' }, /"passOnStoreError" must be a boolean/],
    ['onStoreError', { ...ok, onStoreError: 'closed' }, /"onStoreError" must be given to the store/],
    ['skip', { ...ok, skip: true }, /"skip" must be a function/],
    ['onLimited', { ...ok, onLimited: 'x' }, /"onLimited" must be a function/],
    ['clock', { ...ok, clock: 5 }, /"clock" must be an object with a now\(\) method/],
    ['allow', { ...ok, allow: '127.0.0.1' }, /"allow" must be a list of addresses/],
    ['deny entry', { ...ok, deny: [''] }, /"deny\[0\]" must be a non-empty string/],
    ['trustProxy', { ...ok, trustProxy: [5] }, /"trustProxy\[0\]"/],
    // express-rate-limit's names, and typos: refused, never ignored.
    [
      'windowMs',
      { ...ok, windowMs: 60_000 },
      /"windowMs" must be absent: the options are "limiter", "policies"/,
    ],
    ['onStoreErorr', { ...ok, onStoreErorr: 'closed' }, /"onStoreErorr" must be absent/],
  ];
  for (const [name, options, message] of cases) {
    it(`rejects an invalid ${name}`, () => {
      assert.throws(() => new HttpGuard(options as never), message);
    });
  }

  it('with countOnly, no override set later (the admin API) brings a concurrency policy in', () => {
    const policies = { limit: 1, window: '1s' } as const;
    const guard = new HttpGuard({ policies, countOnly: 'failed' });
    assert.throws(
      () =>
        guard.limiter!.setOverride('ip:1.2.3.4', { algorithm: 'concurrency', limit: 1, leaseTimeout: '1m' }),
      /"overrides\["ip:1\.2\.3\.4"\]\.algorithm" must be another algorithm than "concurrency": with countOnly/,
    );
    new HttpGuard({ policies }).limiter!.setOverride('ip:1.2.3.4', {
      algorithm: 'concurrency',
      limit: 1,
      leaseTimeout: '1m',
    });
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { rateLimit } from '../../src/http/node.js';
import { Limiter } from '../../src/limiter/limiter.js';
import { displayClient } from '../../src/observe/client.js';
import { suggestLimits } from '../../src/observe/suggest.js';
import { Traffic } from '../../src/observe/traffic.js';

const T0 = 1_700_000_000_000;

describe('a limiter keeps its traffic', () => {
  it('counts allowed and limited per second, and who sent and who was refused most', async () => {
    const clock = new ManualClock(T0);
    const limiter = new Limiter({ policies: { limit: 3, window: '1m' }, clock, traffic: { clock } });
    for (let i = 0; i < 5; i++) await limiter.consume('ip:203.0.113.9');
    await limiter.consume('ip:198.51.100.1');
    clock.advance(1000);
    assert.equal(limiter.allowSync('ip:198.51.100.1'), true);
    const [first, second] = limiter.traffic!.points(2);
    assert.deepEqual(first, { at: T0, allowed: 4, limited: 2, shed: 0, rejected: 0, degraded: 0 });
    assert.deepEqual(second, { at: T0 + 1000, allowed: 1, limited: 0, shed: 0, rejected: 0, degraded: 0 });
    const top = limiter.traffic!.top('1m');
    assert.deepEqual(top.requests.clients[0], { key: 'ip:203.0.113.9', count: 5, error: 0 });
    assert.deepEqual(top.refusals.clients, [{ key: 'ip:203.0.113.9', count: 2, error: 0 }]);
    assert.equal(top.distinct, 2);
  });

  it('peek, refund and reset are not traffic; a limiter of your own keeps none unless asked', async () => {
    const limiter = new Limiter({ policies: { limit: 3, window: '1m' }, traffic: true });
    await limiter.peek('a');
    await limiter.refund('a');
    assert.equal(limiter.traffic!.top('15m').requests.total, 0);
    assert.equal(new Limiter({ policies: { limit: 3, window: '1m' }, traffic: false }).traffic, undefined);
    assert.equal(new Limiter({ policies: { limit: 3, window: '1m' } }).traffic, undefined);
  });

  it('refuses a traffic option that is not one, naming it', () => {
    for (const bad of [0, 1.5, 10_001, 'x'] as unknown[]) {
      assert.throws(
        () => new Limiter({ policies: { limit: 1, window: '1s' }, traffic: { clients: bad as number } }),
        /traffic\.clients/,
      );
    }
    assert.throws(
      () => new Limiter({ policies: { limit: 1, window: '1s' }, traffic: 3 as never }),
      /"traffic"/,
    );
  });

  it('the 1-minute view drops buckets older than a minute; the 15-minute one keeps them', () => {
    const clock = new ManualClock(T0);
    const traffic = new Traffic(() => clock.now());
    const decision = { allowed: true, reason: undefined } as never;
    traffic.decided('old', decision);
    clock.advance(70_000);
    traffic.decided('new', decision);
    assert.deepEqual(
      traffic.top('1m').requests.clients.map((c) => c.key),
      ['new'],
    );
    assert.deepEqual(
      traffic
        .top('15m')
        .requests.clients.map((c) => c.key)
        .sort(),
      ['new', 'old'],
    );
    clock.advance(15 * 60_000);
    assert.equal(traffic.top('15m').requests.total, 0, 'nothing older than 15 minutes');
    assert.equal(
      traffic.points(900).reduce((sum, p) => sum + p.allowed, 0),
      0,
    );
  });

  it('a decision of the outage policy is degraded, neither allowed nor limited', () => {
    const clock = new ManualClock(T0);
    const traffic = new Traffic(() => clock.now());
    traffic.decided('a', { allowed: true, reason: 'store-open' } as never);
    traffic.decided('a', { allowed: false, reason: 'store-closed' } as never);
    traffic.decided('a', { allowed: false, reason: 'cost-exceeds-limit' } as never);
    assert.deepEqual(traffic.points(1)[0], {
      at: T0,
      allowed: 0,
      limited: 1,
      shed: 0,
      rejected: 0,
      degraded: 2,
    });
  });

  it('memory stays fixed whatever the number of clients: 1 million distinct ones keep 64 counters a bucket', () => {
    const clock = new ManualClock(T0);
    const traffic = new Traffic(() => clock.now());
    const decision = { allowed: false, reason: 'limit' } as never;
    for (let i = 0; i < 1_000_000; i++) traffic.decided(`ip:${i}`, decision);
    const top = traffic.top('1m', 1_000_000);
    assert.equal(top.requests.clients.length, 64);
    assert.equal(top.refusals.clients.length, 64);
    assert.equal(top.requests.total, 1_000_000);
    assert.ok(Math.abs(top.distinct - 1_000_000) < 260_000, `distinct ${top.distinct}`);
  });

  it('the HTTP guard counts shed and rejected requests on its limiter', async () => {
    const limit = rateLimit({ policies: { limit: 5, window: '1m' }, cost: () => Number.NaN });
    const res = { statusCode: 200, headersSent: false, setHeader() {}, writeHead() {}, end() {}, on() {} };
    const req = { headers: {}, socket: { remoteAddress: '127.0.0.1' }, method: 'GET', url: '/' };
    assert.equal(await limit(req as never, res as never), false);
    const total = limit.limiter!.traffic!.points(5).reduce((sum, p) => sum + p.rejected, 0);
    assert.equal(total, 1);
  });
});

describe('suggested limits', () => {
  it('the limit that refuses the top 1%: the next client down, at its lower bound', () => {
    const clock = new ManualClock(T0);
    const traffic = new Traffic(() => clock.now(), { clients: 1000 });
    const decision = { allowed: true, reason: undefined } as never;
    // 200 clients: client i sends i + 1 requests in one minute.
    for (let i = 0; i < 200; i++) for (let n = 0; n <= i; n++) traffic.decided(`c${i}`, decision);
    clock.advance(59_999);
    const s = suggestLimits(traffic.top('15m', 1000), clock.now() + 1);
    assert.equal(s.clients, 200);
    assert.equal(s.busiestPerMinute, 200);
    // Top 1% = 2 clients (200, 199): a limit of 198 per minute refuses them.
    assert.deepEqual(s.limits[0], { share: 0.01, clients: 2, perMinute: 198, atMost: false });
    assert.deepEqual(s.limits[1], { share: 0.001, clients: 1, perMinute: 199, atMost: false });
  });
});

describe('clients as an operator reads them', () => {
  it('addresses and /64s as they are, digests by their start, labels when the application has them', () => {
    const digest = 'A'.repeat(43);
    assert.deepEqual(displayClient('ip:2001:db8:1:2::/64'), { kind: 'ip', label: '2001:db8:1:2::/64' });
    assert.deepEqual(displayClient(`key:${digest}`), { kind: 'api-key', label: 'API key AAAAAAAAAA…' });
    assert.deepEqual(
      displayClient(`key:${digest}`, () => 'acme-prod'),
      { kind: 'api-key', label: 'acme-prod' },
    );
    assert.deepEqual(displayClient(`user:${digest}`), { kind: 'user', label: 'user AAAAAAAAAA…' });
    assert.deepEqual(displayClient('user:42'), { kind: 'user', label: 'user 42' });
    assert.deepEqual(displayClient(`h:x-tenant:${digest}`), {
      kind: 'header',
      label: 'x-tenant AAAAAAAAAA…',
    });
    assert.deepEqual(displayClient(`~#${digest}`), { kind: 'digest', label: 'long identifier AAAAAAAAAA…' });
    assert.equal(displayClient('x'.repeat(500)).label.length, 81);
  });
});

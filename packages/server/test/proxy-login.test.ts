import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { codeBlocks, docSection, RedisServer } from '@floodgate/test-support';
import { pino } from 'pino';
import { parse } from 'yaml';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { failureOf } from '../src/proxy/rules.js';
import {
  type LoginUpstream,
  startLoginUpstream,
  startNodeUpstream,
  startStatusUpstream,
} from './helpers/upstreams.js';

// Outcome-based counting: a login rule that counts only the attempts the upstream failed, charged before the
// answer (so parallel guesses cannot overrun it) and given back when the answer is a success.

const running: RunningProxy[] = [];
let login: LoginUpstream;
let redis: RedisServer;
before(async () => {
  login = await startLoginUpstream();
  redis = await RedisServer.start();
});
after(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await login.close();
  await redis.stop();
});

async function proxyFor(data: Record<string, unknown>): Promise<RunningProxy> {
  const config = validateProxyConfig({ listen: 0, admin: false, upstream: login.url, ...data });
  const proxy = await startProxy(config, { log: pino({ level: 'silent' }) });
  running.push(proxy);
  return proxy;
}

const failedLogins = (limit: number, extra: Record<string, unknown> = {}) => ({
  rules: [
    {
      name: 'login',
      match: { method: 'POST', path: '/login' },
      countOnly: 'failed',
      policies: [{ limit, window: '15m', algorithm: 'fixed-window' }],
      ...extra,
    },
  ],
});

async function attempt(proxy: RunningProxy, password: string, signal?: AbortSignal): Promise<number> {
  const res = await fetch(`${proxy.url}/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: `password=${password}`,
    ...(signal === undefined ? {} : { signal }),
  });
  await res.arrayBuffer();
  return res.status;
}

async function attempts(proxy: RunningProxy, password: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await attempt(proxy, password));
  return out;
}

describe('proxy countOnly: failed logins', () => {
  it('right passwords are never locked out; wrong ones are, at the limit', async () => {
    const proxy = await proxyFor(failedLogins(3));
    assert.deepEqual(await attempts(proxy, 'right', 4), [200, 200, 200, 200]);
    assert.deepEqual(await attempts(proxy, 'wrong', 4), [401, 401, 401, 429]);
    // Locked out now, whatever the password: the guesser learns nothing more.
    assert.deepEqual(await attempts(proxy, 'right', 1), [429]);
  });

  for (const store of ['memory', 'redis'] as const) {
    it(`40 parallel guesses on ${store}: exactly the limit reaches the upstream, and only successes are given back`, async () => {
      const proxy = await proxyFor({
        ...failedLogins(5),
        ...(store === 'redis' ? { store: redis.url } : {}),
      });
      // Connected, and the script loaded: a first call slower than the store's timeout would be decided by
      // the outage policy instead (in memory, on this proxy alone).
      assert.deepEqual(await attempts(proxy, 'right', 1), [200]);
      login.hold();
      const before = login.received();
      const settled: number[] = [];
      const all = Array.from({ length: 40 }, (_, i) =>
        attempt(proxy, i % 2 === 0 ? 'right' : 'wrong').then((status) => {
          settled.push(status);
          return status;
        }),
      );
      // The five admitted wait at the upstream; every other guess was refused meanwhile, charged or not.
      while (settled.length < 35 || login.received() - before < 5) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(settled, Array(35).fill(429));
      login.release();
      const statuses = await Promise.all(all);
      assert.equal(login.received() - before, 5);
      const succeeded = statuses.filter((s) => s === 200).length;
      assert.equal(statuses.filter((s) => s === 401).length, 5 - succeeded);
      // What the successes gave back, and nothing more, is left for wrong guesses.
      const later = await attempts(proxy, 'wrong', succeeded + 1);
      assert.deepEqual(later, [...Array(succeeded).fill(401), 429]);
    });
  }

  it('an attempt whose answer never reached the client counts, even with the right password', async () => {
    const proxy = await proxyFor(failedLogins(1));
    login.hold();
    const before = login.received();
    const abort = new AbortController();
    const gone = attempt(proxy, 'right', abort.signal).catch((error: Error) => error.name);
    while (login.received() === before) await new Promise((r) => setTimeout(r, 5));
    const abandoned = login.nextAbandoned();
    abort.abort();
    assert.equal(await gone, 'AbortError');
    // The proxy saw the client go and gave up on the upstream exchange, before any answer.
    await abandoned;
    login.release();
    assert.deepEqual(await attempts(proxy, 'right', 1), [429]);
  });

  /**
   * Half a login on a connection of its own: the head says 100 bytes, a few come, then the client goes:
   * `end` (the proxy reads the end of the stream: its parser finds the body cut short and answers 400
   * itself), `destroy` (the same, without waiting for that answer) or `reset` (a TCP reset). Resolves once
   * the proxy has given up on the upstream exchange too.
   */
  async function abortMidBody(proxy: RunningProxy, how: 'end' | 'destroy' | 'reset'): Promise<void> {
    const { hostname, port } = new URL(proxy.url);
    const socket = connect(Number(port), hostname);
    socket.on('error', () => {});
    socket.resume();
    await once(socket, 'connect');
    const head = login.nextRequest();
    const abandoned = login.nextAbandoned();
    socket.write(
      'POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n' +
        'Content-Length: 100\r\n\r\npassword=ri',
    );
    // Decided, charged and forwarded: the upstream has the head and waits for the rest of the body.
    await head;
    if (how === 'end') socket.end();
    else if (how === 'destroy') socket.destroy();
    else socket.resetAndDestroy();
    await abandoned;
  }

  for (const how of ['end', 'destroy', 'reset'] as const)
    it(`a client that aborts mid-body (${how}) is charged each time, and locked out at the limit`, async () => {
      // The login's own failure status only: the proxy's 400 for the cut body is no answer of the upstream.
      const proxy = await proxyFor(failedLogins(3, { failedStatuses: [401] }));
      for (let i = 0; i < 3; i++) await abortMidBody(proxy, how);
      assert.deepEqual(await attempts(proxy, 'right', 1), [429]);
    });

  it('with countOnly: successful, an aborted attempt is no success: it is given back', async () => {
    const proxy = await proxyFor(failedLogins(2, { countOnly: 'successful', failedStatuses: [401] }));
    for (let i = 0; i < 2; i++) await abortMidBody(proxy, 'end');
    assert.deepEqual(await attempts(proxy, 'right', 3), [200, 200, 429]);
  });

  it('an answer the upstream cut short (a 200 whose body never came whole) is no success', async () => {
    const up = await startNodeUpstream();
    const proxy = await proxyFor({
      upstream: up.url,
      rules: [{ name: 'cut', countOnly: 'failed', policies: { limit: 2, window: '15m' } }],
    });
    const cut = async () => {
      const res = await fetch(`${proxy.url}/reset`);
      if (res.status !== 200) return res.status;
      return res.arrayBuffer().then(
        () => 'whole',
        () => 'cut',
      );
    };
    try {
      assert.deepEqual([await cut(), await cut(), await cut()], ['cut', 'cut', 429]);
    } finally {
      await up.close();
    }
  });

  it('failedStatuses says which answers count; a 502 or 504 (no answer from the upstream) always does', async () => {
    const up = await startStatusUpstream(403);
    const proxy = await proxyFor({
      upstream: up.url,
      ...failedLogins(3, { failedStatuses: [401] }),
    });
    assert.deepEqual(await attempts(proxy, 'x', 5), [403, 403, 403, 403, 403]);
    up.set(401);
    assert.deepEqual(await attempts(proxy, 'x', 1), [401]);
    await up.close();
    assert.deepEqual(await attempts(proxy, 'x', 3), [502, 502, 429]);
  });

  it('status classes: "4xx" is every status from 400 to 499', () => {
    const isFailure = failureOf(['4xx', 500])!;
    assert.deepEqual([399, 400, 403, 499, 500, 501, 502, 503, 504].map(isFailure), [
      false,
      true,
      true,
      true,
      true,
      false,
      true,
      false,
      true,
    ]);
    assert.equal(failureOf(undefined), undefined, "the library's default: every status from 400");
  });

  it('countOnly: successful counts only what the upstream served', async () => {
    const proxy = await proxyFor(failedLogins(2, { countOnly: 'successful' }));
    assert.deepEqual(await attempts(proxy, 'wrong', 3), [401, 401, 401]);
    assert.deepEqual(await attempts(proxy, 'right', 3), [200, 200, 429]);
  });

  it('refuses failedStatuses without countOnly, countOnly over a concurrency policy, and statuses that are none', () => {
    const rule = { name: 'login', policies: { limit: 5, window: '1m' } };
    const check = (extra: Record<string, unknown>) =>
      validateProxyConfig({ upstream: 'http://127.0.0.1:1', rules: [{ ...rule, ...extra }] });
    assert.throws(
      () => check({ failedStatuses: [401] }),
      /rules\[0\]\.failedStatuses: says which answers count/,
    );
    assert.throws(
      () =>
        check({ countOnly: 'failed', policies: { algorithm: 'concurrency', limit: 2, leaseTimeout: '1m' } }),
      /rules\[0\]\.countOnly: a concurrency policy/,
    );
    assert.throws(
      () => check({ countOnly: 'failed', failedStatuses: [600] }),
      /rules\[0\]\.failedStatuses\[0\]: must be a status from 100 to 599/,
    );
    assert.throws(
      () => check({ countOnly: 'failed', failedStatuses: ['4XX'] }),
      /rules\[0\]\.failedStatuses\[0\]/,
    );
    assert.throws(() => check({ countOnly: 'all' }), /rules\[0\]\.countOnly/);
  });
});

describe('proxy countOnly: the recipe of docs/proxy.md', () => {
  it('"protect a Python login endpoint" validates, and counts only the failed logins', async () => {
    const block = codeBlocks(
      docSection('docs/proxy.md', 'Recipe: protect a Python login endpoint'),
      'yaml',
    )[0];
    assert.ok(block !== undefined, 'docs/proxy.md has the recipe');
    const proxy = await proxyFor({ ...parse(block), listen: 0, upstream: login.url });
    assert.deepEqual(await attempts(proxy, 'right', 6), Array(6).fill(200));
    assert.deepEqual(await attempts(proxy, 'wrong', 6), [401, 401, 401, 401, 401, 429]);
    const other = await fetch(`${proxy.url}/anything`);
    await other.arrayBuffer();
    assert.equal(other.status, 404);
  });
});

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { freePort } from '@floodgate/test-support';
import { pino } from 'pino';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { metric, statuses } from './helpers/requests.js';
import { pattern, startNodeUpstream, startPythonUpstream, startStatusUpstream } from './helpers/upstreams.js';

// Failover: upstreams that fail are taken out of the rotation (with backoff), checked actively if asked,
// and a request that reached no upstream is sent to the next one; all against real upstreams.

const running: RunningProxy[] = [];
const closers: (() => Promise<void>)[] = [];
after(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await Promise.all(closers.map((c) => c()));
});

async function proxyFor(data: Record<string, unknown>, now?: () => number): Promise<RunningProxy> {
  const config = validateProxyConfig({ listen: 0, admin: 0, ...data });
  const proxy = await startProxy(config, { log: pino({ level: 'silent' }), ...(now ? { now } : {}) });
  running.push(proxy);
  return proxy;
}

interface UpstreamState {
  upstream: string;
  state: string;
  failures: number;
  ejections: number;
  returnsIn?: number;
}

async function health(proxy: RunningProxy): Promise<UpstreamState[]> {
  const body = (await (await fetch(`${proxy.adminUrl}/health`)).json()) as { upstreams: UpstreamState[] };
  return body.upstreams;
}

/** Waits for `check` to hold (a health check's verdict arriving), asking again every few milliseconds. */
async function until(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((r) => setTimeout(r, 10));
}

const authority = (url: string) => new URL(url).host;

describe('proxy failover: one upstream down', () => {
  it('no request fails: a refused connection goes to the next upstream, and the dead one is taken out', async () => {
    const a = await startStatusUpstream();
    closers.push(a.close);
    const dead = `http://127.0.0.1:${await freePort()}`;
    const proxy = await proxyFor({ upstream: [dead, a.url], failover: { failures: 2 } });
    assert.deepEqual(await statuses(`${proxy.url}/x`, 10), Array(10).fill(200));
    assert.equal(a.served(), 10);
    const [down, upState] = await health(proxy);
    assert.equal(down!.upstream, authority(dead));
    assert.equal(down!.state, 'ejected');
    assert.equal(down!.ejections, 1);
    assert.equal(upState!.state, 'up');
    assert.equal(
      await metric(proxy.adminUrl, `floodgate_proxy_upstream_up{upstream="${authority(dead)}"}`),
      0,
    );
    assert.equal(
      await metric(proxy.adminUrl, `floodgate_proxy_upstream_up{upstream="${authority(a.url)}"}`),
      1,
    );
    assert.equal(await metric(proxy.adminUrl, 'floodgate_proxy_upstream_retries_total{kind="connect"}'), 2);
    assert.equal(
      await metric(proxy.adminUrl, `floodgate_proxy_upstream_ejections_total{upstream="${authority(dead)}"}`),
      1,
    );
    // Nothing reached the client as an error.
    assert.equal(await metric(proxy.adminUrl, 'floodgate_proxy_upstream_errors_total{kind="connect"}'), 0);
  });

  it('a POST whose connection was refused is sent to the next upstream with its whole body', async () => {
    const up = await startNodeUpstream();
    closers.push(up.close);
    const dead = `http://127.0.0.1:${await freePort()}`;
    const proxy = await proxyFor({ upstream: [dead, up.url] });
    const body = pattern(1 << 20);
    const res = await fetch(`${proxy.url}/upload`, { method: 'POST', body });
    assert.equal(res.status, 200);
    const echoed = (await res.json()) as { bytes: number; sha256: string };
    assert.equal(echoed.bytes, body.length);
    assert.equal(echoed.sha256, createHash('sha256').update(body).digest('hex'));
  });

  it('with every upstream down, a 502 after trying each once', async () => {
    const dead = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
    const proxy = await proxyFor({ upstream: dead });
    const res = await fetch(`${proxy.url}/x`);
    assert.equal(res.status, 502);
    await res.arrayBuffer();
    assert.equal(await metric(proxy.adminUrl, 'floodgate_proxy_upstream_retries_total{kind="connect"}'), 1);
  });
});

describe('proxy failover: passive ejection', () => {
  it('consecutive 5xx take an upstream out; the 5xx themselves are answered, never sent twice', async () => {
    const good = await startStatusUpstream(200);
    const bad = await startStatusUpstream(503);
    closers.push(good.close, bad.close);
    const proxy = await proxyFor({ upstream: [bad.url, good.url], failover: { failures: 3 } });
    const seen = await statuses(`${proxy.url}/x`, 12);
    assert.equal(seen.filter((s) => s === 503).length, 3);
    assert.equal(bad.served(), 3);
    assert.equal(good.served(), 9);
    assert.equal((await health(proxy))[0]!.state, 'ejected');
  });

  it('backs off: each ejection without a success between lasts twice as long, up to maxEjectFor', async () => {
    let now = 1_000_000;
    const a = await startStatusUpstream();
    closers.push(a.close);
    const port = await freePort();
    const proxy = await proxyFor(
      {
        upstream: [`http://127.0.0.1:${port}`, a.url],
        failover: { failures: 2, ejectFor: '10s', maxEjectFor: '25s' },
      },
      () => now,
    );
    const url = `${proxy.url}/x`;
    const b = async () => (await health(proxy))[0]!;
    assert.deepEqual(await statuses(url, 4), [200, 200, 200, 200]);
    assert.deepEqual([(await b()).state, (await b()).returnsIn], ['ejected', 10_000]);
    // Still out 1 ms before its time: nothing is sent to it.
    now += 9_999;
    assert.deepEqual(await statuses(url, 4), [200, 200, 200, 200]);
    assert.equal((await b()).ejections, 1);
    // Back, and failing at once: out again for twice as long, then for the most allowed.
    now += 1;
    assert.deepEqual(await statuses(url, 2), [200, 200]);
    assert.deepEqual([(await b()).ejections, (await b()).returnsIn], [2, 20_000]);
    now += 20_000;
    assert.deepEqual(await statuses(url, 2), [200, 200]);
    assert.deepEqual([(await b()).ejections, (await b()).returnsIn], [3, 25_000]);
    // It comes back to life: a success clears its record, so the next ejection is the first again.
    const revived = await startStatusUpstream(200, port);
    closers.push(revived.close);
    now += 25_000;
    assert.deepEqual(await statuses(url, 4), [200, 200, 200, 200]);
    assert.equal(revived.served(), 2);
    assert.equal((await b()).state, 'up');
    revived.set(500);
    assert.deepEqual((await statuses(url, 4)).sort(), [200, 200, 500, 500]);
    assert.deepEqual([(await b()).ejections, (await b()).returnsIn], [4, 10_000]);
  });
});

describe('proxy failover: active health checks', () => {
  it('an upstream failing its health check is out until it passes again', async () => {
    const a = await startStatusUpstream();
    const b = await startStatusUpstream();
    closers.push(a.close, b.close);
    const proxy = await proxyFor({
      upstream: [a.url, b.url],
      failover: { healthCheck: { path: '/healthz', interval: '20ms', timeout: '1s' } },
    });
    b.set(503);
    await until(async () => (await health(proxy))[1]!.state === 'down');
    const before = b.served();
    b.set(200);
    // b answers 200 again; its next check brings it back.
    await until(async () => (await health(proxy))[1]!.state === 'up');
    assert.ok(b.served() > before);
    assert.equal(
      await metric(proxy.adminUrl, `floodgate_proxy_upstream_up{upstream="${authority(b.url)}"}`),
      1,
    );
  });

  it('refuses a bad failover section, naming the field', () => {
    assert.throws(
      () => validateProxyConfig({ upstream: 'http://127.0.0.1:1', failover: { failures: 0 } }),
      /failover\.failures/,
    );
    assert.throws(
      () => validateProxyConfig({ upstream: 'http://127.0.0.1:1', failover: { healthCheck: { path: 'x' } } }),
      /failover\.healthCheck\.path: must start with "\/"/,
    );
    assert.throws(
      () =>
        validateProxyConfig({
          upstream: 'http://127.0.0.1:1',
          failover: { healthCheck: { path: '/h', interval: 0 } },
        }),
      /failover\.healthCheck\.interval: must be a duration/,
    );
    assert.throws(
      () =>
        validateProxyConfig({
          upstream: 'http://127.0.0.1:1',
          failover: { ejectFor: '1m', maxEjectFor: '1s' },
        }),
      /failover\.maxEjectFor: maxEjectFor must be at least ejectFor/,
    );
  });
});

describe('proxy failover: an upstream killed under load', { timeout: 60_000 }, () => {
  it('clients see no error for their GETs while one of two Python upstreams dies mid-load', async () => {
    const a = await startPythonUpstream();
    const b = await startPythonUpstream();
    closers.push(a.close, b.close);
    const proxy = await proxyFor({ upstream: [a.url, b.url] });
    const total = 200;
    let sent = 0;
    let answered = 0;
    const failures: string[] = [];
    let killed: Promise<void> | undefined;
    const client = async () => {
      while (sent < total) {
        sent++;
        try {
          const res = await fetch(`${proxy.url}/continents`);
          const text = await res.text();
          if (res.status !== 200) failures.push(`${res.status} ${text}`);
        } catch (error) {
          failures.push(String(error));
        }
        // A quarter of the way through, b dies at once (SIGKILL: no goodbye on its connections).
        if (++answered === total / 4) {
          b.child.kill('SIGKILL');
          killed = new Promise((r) => b.child.once('exit', () => r()));
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, client));
    await killed;
    assert.deepEqual(failures, []);
    assert.equal((await health(proxy))[1]!.state, 'ejected');
  });
});

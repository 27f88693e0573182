import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { pino } from 'pino';
import { type Browser, chromium } from 'playwright-core';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// The dashboard in a real browser (Debian's chromium, driven by playwright-core): two proxies sharing one
// Redis, the first flooded by one of three clients, the flooder found on top, unblocked by a click, and its
// next request allowed; and the fleet of both drawn from what each published.

const TOKEN = 'dashboard-test-token-0123456789';
// docs/dashboard.png is made again with FLOODGATE_SCREENSHOT=1; otherwise the shot goes to a temporary file.
const SCREENSHOT =
  process.env.FLOODGATE_SCREENSHOT === '1'
    ? join(import.meta.dirname, '../../../docs/dashboard.png')
    : join(tmpdir(), `floodgate-dashboard-${process.pid}.png`);

function chromiumPath(): string {
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('this test needs chromium: apt-get install chromium');
  }
}

describe('the dashboard in a browser', () => {
  let upstream: NodeUpstream;
  let redis: RedisServer;
  let proxy: RunningProxy;
  let other: RunningProxy;
  let browser: Browser;
  const actions: Record<string, unknown>[] = [];

  before(async () => {
    upstream = await startNodeUpstream();
    redis = await RedisServer.start();
    const log = pino({ base: null }, { write: (line: string) => void actions.push(JSON.parse(line)) });
    const config = validateProxyConfig({
      upstream: upstream.url,
      listen: 0,
      admin: 0,
      store: redis.url,
      trustProxy: ['loopback'],
      rules: [{ name: 'api', policies: [{ limit: 20, window: '1h' }] }],
    });
    proxy = await startProxy(config, { log, adminToken: TOKEN });
    other = await startProxy(config, { log: pino({ level: 'silent' }), adminToken: TOKEN });
    browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  });
  after(async () => {
    await browser?.close();
    await Promise.all([proxy?.stop(), other?.stop()]);
    await redis?.stop();
    await upstream?.close();
  });

  const from = (ip: string, to = proxy) =>
    fetch(to.url, { headers: { 'x-forwarded-for': ip } }).then((r) => r.status);

  it('shows the flooding client on top; unblock lets its next request through', async () => {
    const flooder = '203.0.113.66';
    for (let i = 0; i < 60; i++) await from(flooder);
    for (let i = 0; i < 8; i++) await from('198.51.100.7');
    for (let i = 0; i < 3; i++) await from('192.0.2.10');
    assert.equal(await from(flooder), 429);
    // The other proxy: the flooder again (refused, the limit is shared), and one client more.
    for (let i = 0; i < 9; i++) assert.equal(await from(flooder, other), 429);
    for (let i = 0; i < 4; i++) await from('198.51.100.7', other);
    await Promise.all([proxy, other].map((p) => p.fleet!.publish()));

    const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
    await page.goto(`${proxy.adminUrl}/`);
    const first = page.locator('section[data-limiter="api"] table.top tbody tr').first();
    await first.locator('td.client').filter({ hasText: flooder }).waitFor();
    assert.equal(await first.locator('td.client').textContent(), flooder);
    assert.equal(await first.locator('td.n').first().textContent(), '61');
    await page.waitForSelector('section[data-limiter="api"] .suggestion:not(:empty)');

    // The fleet: both proxies' traffic summed, and each one's share.
    const fleet = page.locator('#fleet');
    await fleet.locator('#fleet-title').filter({ hasText: '2 processes' }).waitFor();
    assert.equal(await fleet.isVisible(), true);
    const whole = fleet.locator('.fleet-limiter[data-limiter="api"]');
    assert.equal(await whole.locator('h3').textContent(), 'api: 85 requests, 50 refused, over 2 processes');
    const rows = await whole
      .locator('tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    assert.deepEqual(rows, [
      [flooder, '70', '50'],
      ['198.51.100.7', '12', '0'],
      ['192.0.2.10', '3', '0'],
    ]);
    const processes = await fleet
      .locator('#fleet-processes tbody tr')
      .evaluateAll((trs) =>
        trs.map((tr) => [...tr.querySelectorAll('td')].slice(1, 3).map((td) => td.textContent)),
      );
    assert.deepEqual(
      processes.sort((a, b) => Number(b[0]) - Number(a[0])),
      [
        ['72', '41'],
        ['13', '9'],
      ],
      'each proxy its own share: the first took the flood',
    );
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Without the token the action is refused, and the client stays limited.
    await first.locator('button.unblock').click();
    await page.locator('#status').filter({ hasText: 'unblock refused' }).waitFor();
    assert.equal(await from(flooder), 429);

    await page.fill('#token', TOKEN);
    await page.locator('#token').dispatchEvent('change');
    await first.locator('button.unblock').click();
    await page
      .locator('#status')
      .filter({ hasText: `unblocked ${flooder}` })
      .waitFor();
    assert.equal(await from(flooder), 200);
    const logged = actions.find((a) => a.action === 'reset');
    assert.equal(logged?.client, flooder);
    assert.ok(!JSON.stringify(actions).includes(TOKEN), 'the token is never logged');
    await page.close();
  });
});

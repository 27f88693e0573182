import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { type Browser, chromium } from 'playwright-core';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// The dashboard in a real browser (Debian's chromium, driven by playwright-core): a proxy flooded by one
// of three clients, the flooder found on top, unblocked by a click, and its next request allowed.

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
  let proxy: RunningProxy;
  let browser: Browser;
  const actions: Record<string, unknown>[] = [];

  before(async () => {
    upstream = await startNodeUpstream();
    const log = pino({ base: null }, { write: (line: string) => void actions.push(JSON.parse(line)) });
    proxy = await startProxy(
      validateProxyConfig({
        upstream: upstream.url,
        listen: 0,
        admin: 0,
        trustProxy: ['loopback'],
        rules: [{ name: 'api', policies: [{ limit: 20, window: '1h' }] }],
      }),
      { log, adminToken: TOKEN },
    );
    browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] });
  });
  after(async () => {
    await browser?.close();
    await proxy?.stop();
    await upstream?.close();
  });

  const from = (ip: string) => fetch(proxy.url, { headers: { 'x-forwarded-for': ip } }).then((r) => r.status);

  it('shows the flooding client on top; unblock lets its next request through', async () => {
    const flooder = '203.0.113.66';
    for (let i = 0; i < 60; i++) await from(flooder);
    for (let i = 0; i < 8; i++) await from('198.51.100.7');
    for (let i = 0; i < 3; i++) await from('192.0.2.10');
    assert.equal(await from(flooder), 429);

    const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
    await page.goto(`${proxy.adminUrl}/`);
    const first = page.locator('section[data-limiter="api"] table.top tbody tr').first();
    await first.locator('td.client').filter({ hasText: flooder }).waitFor();
    assert.equal(await first.locator('td.client').textContent(), flooder);
    assert.equal(await first.locator('td.n').first().textContent(), '61');
    await page.waitForSelector('section[data-limiter="api"] .suggestion:not(:empty)');
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

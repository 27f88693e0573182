import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { codeBlocks, docSection } from '@floodgate/test-support';
import { pino } from 'pino';
import { parse } from 'yaml';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { type PythonUpstream, runPython } from './helpers/upstreams.js';

// The Python recipe of docs/proxy.md, run as written: its app.py under Debian's python3 (standard library
// only), behind the proxy its YAML configures.

const section = docSection('docs/proxy.md', 'Recipe: a Python service behind the proxy');
const yaml = codeBlocks(section, 'yaml')[0];
const app = codeBlocks(section, 'python')[0];

let python: PythonUpstream;
let proxy: RunningProxy;
before(async () => {
  assert.ok(yaml !== undefined && app !== undefined, 'docs/proxy.md has the recipe: its YAML and app.py');
  python = await runPython('app.py', app, { PORT: '0' });
  const config = validateProxyConfig(
    { ...parse(yaml), listen: 0, admin: false, upstream: python.url },
    'docs/proxy.md',
  );
  proxy = await startProxy(config, { log: pino({ level: 'silent' }) });
});
after(async () => {
  await proxy?.stop();
  await python?.close();
});

// biome-ignore lint/suspicious/noExplicitAny: the app's JSON, read field by field
async function get(headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${proxy.url}/account`, { headers });
  return { status: res.status, body: await res.json() };
}

async function login(password: string): Promise<number> {
  const res = await fetch(`${proxy.url}/login`, { method: 'POST', body: `password=${password}` });
  await res.arrayBuffer();
  return res.status;
}

describe('docs/proxy.md: a Python service behind the proxy', () => {
  it('the app listens on loopback only', () => {
    assert.equal(new URL(python.url).hostname, '127.0.0.1');
  });

  it('sees the client the proxy saw, whatever X-Forwarded-For the client sends', async () => {
    const { body } = await get({ 'X-Forwarded-For': '6.6.6.6' });
    assert.equal(body.client, '127.0.0.1');
  });

  it('is told the rule and what is left, and a client cannot write those fields itself', async () => {
    const first = await get({ 'Floodgate-Rule': 'admin', RateLimit: '"forged";r=1000000;t=1' });
    assert.equal(first.body.rule, 'api');
    assert.match(first.body.rateLimit, /;r=\d+;t=\d+$/);
    assert.doesNotMatch(first.body.rateLimit, /forged/);
    const second = await get();
    const left = (r: string) => Number(/;r=(\d+)/.exec(r)![1]);
    assert.equal(left(second.body.rateLimit), left(first.body.rateLimit) - 1);
  });

  it('counts only failed logins', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push(await login('right'));
    for (let i = 0; i < 6; i++) statuses.push(await login('wrong'));
    assert.deepEqual(statuses, [...Array(6).fill(200), ...Array(5).fill(401), 429]);
  });
});

import http from 'node:http';
import { startProxy } from '../packages/server/src/proxy/proxy.ts';
import { validateProxyConfig } from '../packages/server/src/proxy/config.ts';
const up = http.createServer((req, res) => { let n = 0; req.on('data', (c) => n += c.length); req.on('end', () => { res.setHeader('Set-Cookie', ['a=1','b=2']); res.end(JSON.stringify({ url: req.url, n, headers: req.headers })); }); });
await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
const port = (up.address() as any).port;
const config = validateProxyConfig({ listen: 0, admin: 0, upstream: `http://127.0.0.1:${port}`, rules: [{ name: 'api', match: { path: '/api' }, policies: [{ limit: 2, window: '1m' }] }] });
const p = await startProxy(config);
for (let i = 0; i < 3; i++) {
  const r = await fetch(`${p.url}/api/x/../y?q=1`, { method: 'POST', body: 'hello' });
  console.log(r.status, [...r.headers].filter(([k]) => k.startsWith('ratelimit') || k === 'set-cookie'), (await r.text()).slice(0, 300));
}
const r = await fetch(`${p.url}/other`);
console.log(r.status, await r.text().then(t=>t.slice(0,80)));
console.log((await (await fetch(`${p.adminUrl}/metrics`)).text()).split('\n').filter(l => l.startsWith('floodgate_proxy_requests')).join('\n'));
await p.stop(); up.close();

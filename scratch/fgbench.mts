import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import autocannon from 'autocannon';
const upc = spawn(process.execPath, ['-e', `require('http').createServer((q, s) => { s.writeHead(200, { 'Content-Length': 8 }); s.end('{"ok":1}'); }).listen(18931, '127.0.0.1')`], { stdio: 'inherit' });
for (const rules of [false, true]) {
  writeFileSync('/tmp/pf.yaml', `listen: 18932\nadmin: false\nupstream: http://127.0.0.1:18931\n` + (rules ? `rules:\n  - name: per-ip\n    policies: [{ limit: 100000, window: 1s }]\n` : ''));
  const px = spawn(process.execPath, ['packages/server/bin/floodgate.js', 'proxy', '--config', '/tmp/pf.yaml'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1200));
  for (const c of [64, 16]) {
    const r = await autocannon({ url: 'http://127.0.0.1:18932/x', connections: c, duration: 4 });
    console.log('rules', rules, c, 'rps', r.requests.average, 'p50', r.latency.p50, 'p99', r.latency.p99);
  }
  px.kill();
}
upc.kill();

import { spawn } from 'node:child_process';
import autocannon from 'autocannon';
const upc = spawn(process.execPath, ['-e', `require('http').createServer((q, s) => { s.writeHead(200, { 'Content-Length': 8 }); s.end('{"ok":1}'); }).listen(18931, '127.0.0.1')`], { stdio: 'inherit' });
for (const V of ['', 'a', 't', 'w', 'e']) {
const px = spawn(process.execPath, ['scratch/minproxy.mjs'], { stdio: 'inherit', env: { ...process.env, V } });
await new Promise((r) => setTimeout(r, 600));
const r = await autocannon({ url: 'http://127.0.0.1:18932/x', connections: 32, duration: 3 });
console.log(V || 'base', 'rps', r.requests.average, 'p50', r.latency.p50, 'p99', r.latency.p99);
px.kill();
}
upc.kill();

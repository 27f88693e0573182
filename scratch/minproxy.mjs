import http from 'node:http';
const V = process.env.V ?? '';
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, noDelay: true, ...(V.includes('a') ? { maxFreeSockets: 256, scheduling: 'lifo', timeout: 4000 } : {}) });
http.createServer((req, res) => {
  const u = http.request({ host: '127.0.0.1', port: 18931, path: req.url, method: req.method, headers: req.headers, agent, ...(V.includes('t') ? { timeout: 60000 } : {}) }, (up) => { res.writeHead(up.statusCode, up.headers); up.pipe(res); });
  if (V.includes('w')) { const t = setTimeout(() => {}, 30000); u.once('socket', (s) => { if (s.connecting) s.once('connect', () => {}); }); u.once('response', () => clearTimeout(t)); }
  u.on('error', () => { res.statusCode = 502; res.end(); });
  if (V.includes('e')) u.end(); else req.pipe(u);
}).listen(18932, '127.0.0.1');

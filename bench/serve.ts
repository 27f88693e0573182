// `floodgate serve` under load: GET /continents for authenticated users with autocannon, memory store vs
// Redis store, beside GET /health (no authentication, no database, no limit) on the same process.
// Writes the "serve" section of docs/BENCHMARKS.md.
//
//   npm run bench:serve         (or: node --import tsx bench/serve.ts [--quick])
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { RedisServer } from '@floodgate/test-support';
import autocannon from 'autocannon';
import { machine, writeSection } from './report.js';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 1 : 4;
const USERS = 20;
const bin = resolve(import.meta.dirname, '../packages/server/bin/floodgate.js');
const dir = mkdtempSync(join(tmpdir(), 'floodgate-bench-serve-'));
const redis = await RedisServer.start();
process.on('exit', () => {
  void redis.kill();
  rmSync(dir, { recursive: true, force: true });
});

// Users with real scrypt hashes, created through the command.
const db = `sqlite:${join(dir, 'bench.db')}`;
for (let i = 0; i < USERS; i++) {
  spawnSync(process.execPath, [bin, 'users', 'add', `user${i}`, '--db', db], { input: `password-${i}\n` });
}
const authHeaders = Array.from({ length: USERS }, (_, i) => ({
  authorization: `Basic ${Buffer.from(`user${i}:password-${i}`).toString('base64')}`,
}));

async function start(extra: string[]): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      bin,
      'serve',
      '--port',
      '0',
      '--no-admin',
      '--db',
      db,
      '--limit',
      '100000000',
      '--window',
      '1h',
      ...extra,
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const url = await new Promise<string>((resolveUrl, reject) => {
    child.once('exit', (code) => reject(new Error(`floodgate serve exited with ${code}`)));
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /"url":"([^"]+)"/.exec(out);
      if (m) resolveUrl(m[1]!);
    });
  });
  child.stdout!.resume();
  return { url, child };
}

async function load(url: string, path: string, withAuth: boolean) {
  const requests = withAuth
    ? authHeaders.map((headers) => ({ method: 'GET' as const, path, headers }))
    : [{ method: 'GET' as const, path }];
  // Steady state: each user's credential verified once (the slow hash), as a running service has them.
  let firstMs = 0;
  if (withAuth) {
    const t = performance.now();
    await Promise.all(authHeaders.map((headers) => fetch(url + path, { headers }).then((r) => r.text())));
    firstMs = (performance.now() - t) / USERS;
  }
  const opts = { url, connections: 32, requests };
  await autocannon({ ...opts, duration: 1 });
  const r = await autocannon({ ...opts, duration: SECONDS });
  return { rps: r.requests.average, p99: r.latency.p99, non2xx: r.non2xx, firstMs };
}

const rows: string[] = [];
const firstHash: number[] = [];
for (const [store, extra] of [
  ['memory', []],
  ['Redis', ['--redis', redis.url]],
] as const) {
  const { url, child } = await start([...extra]);
  const health = await load(url, '/health', false);
  const api = await load(url, '/continents', true);
  child.kill('SIGTERM');
  firstHash.push(api.firstMs);
  rows.push(
    `| ${store} | GET /health | ${Math.round(health.rps).toLocaleString('en-US')} | ${health.p99} ms | ${health.non2xx} |`,
    `| ${store} | GET /continents, ${USERS} users (Basic auth, limit, SQLite read) | ${Math.round(api.rps).toLocaleString('en-US')} | ${api.p99} ms | ${api.non2xx} |`,
  );
  console.log(store, health, api);
}
await redis.stop();

writeSection(
  'serve',
  `## \`floodgate serve\` (\`bench/serve.ts\`)

${machine()}. autocannon, 32 connections, ${SECONDS} s per row after 1 s of warm-up, one \`floodgate serve\` process
on SQLite; ${USERS} users with scrypt password hashes (N=2^15, about 50 ms each). A verified credential is
remembered for 60 s by digest of its header, so the slow hash runs once per user per minute, not per request,
and concurrent requests with one credential share one check. Verifying the ${USERS} users first, all at once, cost
${firstHash.map((ms) => `${ms.toFixed(0)} ms`).join(' and ')} per user (memory, Redis runs); the rows below are the steady state after it.

| store | request | requests/s | p99 | not 2xx |
| --- | --- | ---: | ---: | ---: |
${rows.join('\n')}
`,
);
console.log('wrote docs/BENCHMARKS.md (serve)');

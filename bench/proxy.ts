// `floodgate proxy` under load, beside nginx's limit_req configured for the same limit, in front of the same
// upstream, in the same run; and the upstream alone. Writes the "proxy" section of docs/BENCHMARKS.md.
//
// Needs nginx (Debian: apt-get install nginx-light). Everything runs on this machine: the upstream and each
// proxy in processes of their own, and autocannon in this one.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { RedisServer, requireBinary } from '@floodgate/test-support';
import autocannon from 'autocannon';
import { stringify } from 'yaml';
import { machine, writeSection } from './report.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONNECTIONS = 64;
// Long enough for V8 to optimise a fresh Node process's hot paths; nginx, compiled ahead, needs none.
const WARM_UP_SECONDS = 3;
const bin = resolve(import.meta.dirname, '../packages/server/bin/floodgate.js');

const nginx = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
if (nginx.error !== undefined) {
  console.error('bench/proxy.ts needs nginx: apt-get install nginx-light (or nginx)');
  process.exit(1);
}
const nginxVersion = (nginx.stderr || nginx.stdout).trim().replace('nginx version: ', '');

function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => r(port));
    });
  });
}

const UPSTREAM = `
const http = require('node:http');
const body = JSON.stringify({ continents: ['Africa', 'Antarctica', 'Asia', 'Australia', 'Europe', 'North America', 'South America'] });
http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}).listen(Number(process.argv[1]), '127.0.0.1', () => console.log('ready'));
`;

async function started(child: ChildProcess, ready: (text: string) => boolean): Promise<void> {
  let out = '';
  await new Promise<void>((resolvePromise, reject) => {
    const look = (d: Buffer) => {
      out += d;
      if (ready(out)) {
        // From now on the output is drained, not kept: the load generator in this process must not pay for it.
        child.stdout?.off('data', look);
        child.stderr?.off('data', look);
        child.stdout?.resume();
        child.stderr?.resume();
        resolvePromise();
      }
    };
    child.stdout?.on('data', look);
    child.stderr?.on('data', look);
    child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      await res.arrayBuffer();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error(`nothing listens on ${port}`);
}

interface Scenario {
  name: string;
  /** Requests per second per client IP, and the burst: one client (autocannon) sends everything. */
  rate: number;
  burst: number;
}

const SCENARIOS: Scenario[] = [
  { name: 'allowed (limit never reached)', rate: 100_000, burst: 100_000 },
  { name: 'limited (10 r/s per IP: nearly every request refused)', rate: 10, burst: 10 },
];

/** How a floodgate contender runs: one process on the memory store, or workers deciding through Redis. */
interface Setup {
  /** With `store`: `--workers`, over a Redis store with quota leases. */
  readonly workers?: number;
  readonly store?: string;
}

async function startFloodgate(dir: string, upstreamPort: number, s: Scenario, setup: Setup = {}) {
  const port = await freePort();
  const file = join(dir, 'floodgate.yaml');
  writeFileSync(
    file,
    stringify({
      listen: port,
      admin: false,
      upstream: `http://127.0.0.1:${upstreamPort}`,
      ...(setup.store === undefined ? {} : { store: setup.store, leases: true }),
      rules: [
        {
          name: 'per-ip',
          policies: [{ algorithm: 'token-bucket', limit: s.rate, window: '1s', burst: s.burst }],
        },
      ],
    }),
  );
  const workers = setup.workers ?? 1;
  const child = spawn(process.execPath, [bin, 'proxy', '--config', file, '--workers', String(workers)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // With workers, the primary says so once every one serves.
  await started(child, (t) =>
    workers === 1 ? t.includes('proxying') : t.includes(`with ${workers} workers`),
  );
  return { port, child };
}

async function startNginx(dir: string, upstreamPort: number, s: Scenario, workers = 1) {
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes ${workers};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  limit_req_zone $binary_remote_addr zone=perip:10m rate=${s.rate}r/s;
  limit_req_status 429;
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      limit_req zone=perip burst=${s.burst} nodelay;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`,
  );
  const child = spawn('nginx', ['-c', conf, '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  await waitForPort(port);
  return { port, child };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

interface Result {
  rps: number;
  p50: number;
  p99: number;
  ok: number;
  refused: number;
  errors: number;
}

async function load(port: number): Promise<Result> {
  const url = `http://127.0.0.1:${port}/continents`;
  await autocannon({ url, connections: CONNECTIONS, duration: WARM_UP_SECONDS });
  const r = await autocannon({ url, connections: CONNECTIONS, duration: SECONDS });
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    ok: r['2xx'],
    refused: r['4xx'],
    errors: r.errors + r.timeouts + r['5xx'],
  };
}

const dir = mkdtempSync(join(tmpdir(), 'floodgate-bench-proxy-'));
const upstreamPort = await freePort();
const upstream = spawn(process.execPath, ['-e', UPSTREAM, String(upstreamPort)], {
  stdio: ['ignore', 'pipe', 'pipe'],
});
await started(upstream, (t) => t.includes('ready'));

// The two-worker rows decide through Redis with quota leases, as a deployment of several cores would.
const redis = await RedisServer.start();
const WORKERS = 2;
const flushRedis = () => {
  spawnSync(requireBinary('redis-cli'), ['-p', new URL(redis.url).port, 'flushall'], { stdio: 'ignore' });
};

const rows: string[] = [];
const ratios: string[] = [];
try {
  for (const scenario of SCENARIOS) {
    const runs = new Map<string, Result[]>();
    const add = (name: string, r: Result) => runs.set(name, [...(runs.get(name) ?? []), r]);
    for (let round = 0; round < ROUNDS; round++) {
      if (scenario.rate > 1000) add('upstream alone (no proxy)', await load(upstreamPort));
      // Fresh proxies each round, so a limited scenario starts from a full bucket in both.
      const fg = await startFloodgate(dir, upstreamPort, scenario);
      add('floodgate proxy', await load(fg.port));
      await stop(fg.child);
      const ng = await startNginx(dir, upstreamPort, scenario);
      add(`nginx limit_req (${nginxVersion})`, await load(ng.port));
      await stop(ng.child);
      // A full bucket for each round, as for the fresh processes above.
      flushRedis();
      const fgWorkers = await startFloodgate(dir, upstreamPort, scenario, {
        workers: WORKERS,
        store: redis.url,
      });
      add(`floodgate proxy --workers ${WORKERS} (Redis, leases)`, await load(fgWorkers.port));
      await stop(fgWorkers.child);
      const ngWorkers = await startNginx(dir, upstreamPort, scenario, WORKERS);
      add(`nginx limit_req, worker_processes ${WORKERS}`, await load(ngWorkers.port));
      await stop(ngWorkers.child);
    }
    const best = new Map<string, Result>();
    for (const [name, list] of runs) {
      const top = list.reduce((a, b) => (b.rps > a.rps ? b : a));
      best.set(name, top);
      rows.push(
        `| ${scenario.name} | ${name} | ${Math.round(top.rps).toLocaleString('en-US')} (runs: ${list.map((r) => `${(r.rps / 1000).toFixed(1)}k`).join(', ')}) | ${top.p50} ms | ${top.p99} ms | ${top.ok.toLocaleString('en-US')} | ${top.refused.toLocaleString('en-US')} | ${top.errors} |`,
      );
      console.log(scenario.name, name, Math.round(top.rps), top.p99);
    }
    const ratio = (fgName: string, ngName: string, label: string) => {
      const fg = best.get(fgName)!;
      const ng = best.get(ngName)!;
      ratios.push(
        `| ${scenario.name} | ${label} | ${(fg.rps / ng.rps).toFixed(2)}x | ${ng.p99 === 0 ? 'n/a' : `${(fg.p99 / ng.p99).toFixed(2)}x`} |`,
      );
    };
    ratio('floodgate proxy', `nginx limit_req (${nginxVersion})`, 'one process / 1 worker');
    ratio(
      `floodgate proxy --workers ${WORKERS} (Redis, leases)`,
      `nginx limit_req, worker_processes ${WORKERS}`,
      `${WORKERS} workers each`,
    );
  }
} finally {
  await stop(upstream);
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}

writeSection(
  'proxy',
  `## \`floodgate proxy\` vs nginx \`limit_req\` (\`bench/proxy.ts\`)

${machine()}. One upstream (a minimal node:http server answering a small JSON body), then in turn: no proxy,
\`floodgate proxy\` (one process, memory store, one token-bucket rule per client IP), nginx (1 worker,
\`limit_req\` per \`$binary_remote_addr\` with the same rate and burst, \`nodelay\`, status 429, upstream
keep-alive); then both with ${WORKERS} workers: \`floodgate proxy --workers ${WORKERS}\` deciding through a local
redis-server with quota leases (each worker its own), nginx with \`worker_processes ${WORKERS}\` (its \`limit_req\`
zone is shared memory between its workers). Both proxies append \`X-Forwarded-For\`. autocannon, ${CONNECTIONS} connections, ${WARM_UP_SECONDS} s warm-up then
${SECONDS} s per row, ${ROUNDS} rounds interleaved; the best round is shown with all rounds in brackets. All processes
share the machine's cores with the load generator.

| scenario | contender | requests/s | p50 | p99 | 2xx | 429 | errors |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

Targets: one process at least 0.5x nginx's throughput, p99 within 2x; ${WORKERS} workers each at least 0.9x,
p99 no worse than nginx's.

| scenario | setup | floodgate / nginx requests/s | floodgate / nginx p99 |
| --- | --- | ---: | ---: |
${ratios.join('\n')}
`,
);

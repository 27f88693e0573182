// Instructions per request of a node:http server, bare and behind Floodgate, counted by valgrind's
// callgrind: a count, unlike a time, does not move with the neighbours of a shared machine. Writes the
// "instructions" section of docs/BENCHMARKS.md.
//
//   npm run bench:instructions        (needs valgrind: apt-get install valgrind; and the built package)
//
// Each server runs twice under callgrind, serving FEW then MANY requests before it exits; the difference
// of the two totals over the difference of the counts is the steady-state cost of one request, without
// start-up and with most of the JIT compilation left out.
import { type ChildProcessByStdio, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import autocannon from 'autocannon';
import { machine, writeSection } from './report.js';

const FEW = 12_000;
const MANY = 32_000;
const CONNECTIONS = 8;
const adapter = resolve(import.meta.dirname, '../packages/floodgate/dist/esm/http/node.js');
const proxyModule = resolve(import.meta.dirname, '../packages/server/dist/proxy/proxy.js');
const proxyConfigModule = resolve(import.meta.dirname, '../packages/server/dist/proxy/config.js');
// Which parts to run: `--part=servers`, `--part=frameworks` or `--part=proxy`; all by default.
const part = process.argv.find((a) => a.startsWith('--part='))?.slice('--part='.length);
const parts = part === undefined ? ['servers', 'frameworks', 'proxy'] : [part];
// `--only=floodgate,shed`: only these servers (printed, not written: the table needs them all), e.g. to
// compare a variant between two builds.
const only = process.argv
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');

if (spawnSync('valgrind', ['--version']).error !== undefined) {
  console.error('bench/instructions.ts needs valgrind: apt-get install valgrind');
  process.exit(1);
}
if (!existsSync(adapter) || !existsSync(proxyModule)) {
  console.error('bench/instructions.ts measures the built package: run npm run build first');
  process.exit(1);
}

// The same two field values Floodgate sends, set as constants: what sending the headers alone costs.
const POLICY = '"fixed-window-100000000-per-1h";q=100000000;w=3600';
const STATE = '"fixed-window-100000000-per-1h";r=99922050;t=3595';
const SERVER = `
import { createServer } from 'node:http';
import { rateLimit } from ${JSON.stringify(adapter)};
const variant = process.env.VARIANT;
const total = Number(process.env.REQUESTS);
const limiter = rateLimit({ policies: { algorithm: 'fixed-window', limit: 100_000_000, window: 3_600_000 } });
// The same, with load shedding: a limit of 100 that neither moves nor is reached, and the event loop's watch
// with a target that callgrind's slowness (and its JIT pauses) never reaches: each request pays the watch's
// check, not a refusal (its tick, every 30 s here and 5 ms by default, costs by time, not by request). SHED
// replaces these options (JSON), to count the same with a build whose options differ.
const shedding = rateLimit({
  policies: { algorithm: 'fixed-window', limit: 100_000_000, window: 3_600_000 },
  shed: process.env.SHED
    ? JSON.parse(process.env.SHED)
    : {
        limit: { algorithm: 'gradient2', initialLimit: 100, minLimit: 100, maxLimit: 100 },
        eventLoop: { target: '60s' },
      },
});
let served = 0;
const done = () => { if (++served === total) setImmediate(() => process.exit(0)); };
const handlers = {
  bare: (req, res) => { res.end('hello'); done(); },
  headers: (req, res) => {
    res.setHeader('RateLimit-Policy', ${JSON.stringify(POLICY)});
    res.setHeader('RateLimit', ${JSON.stringify(STATE)});
    res.end('hello');
    done();
  },
  async: async (req, res) => { await null; res.end('hello'); done(); },
  floodgate: async (req, res) => {
    if (!(await limiter(req, res))) return;
    res.end('hello');
    done();
  },
  shed: async (req, res) => {
    // A refusal counts too, so that a run that sheds ends (and shows in the count) rather than hangs.
    if (!(await shedding(req, res))) return done();
    res.end('hello');
    done();
  },
};
const server = createServer(handlers[variant]);
server.listen(0, '127.0.0.1', () => console.log('ready ' + server.address().port));
`;

const VARIANTS: [variant: string, label: string][] = [
  ['bare', 'bare node:http (sync handler)'],
  ['async', 'bare, async handler awaiting once'],
  ['headers', 'bare + the two RateLimit fields as constants'],
  ['floodgate', 'Floodgate `floodgate/node`, memory store, one fixed window'],
  ['shed', 'the same, with `shed` (a fixed limit of 100, the event loop watched)'],
];

const dir = mkdtempSync(join(tmpdir(), 'floodgate-bench-instructions-'));
const script = join(dir, 'server.mjs');
writeFileSync(script, SERVER);

/** The port a child prints as `ready PORT` once it listens. */
function readyPort(child: ChildProcessByStdio<null, Readable, Readable | null>, output: () => string) {
  return new Promise<number>((resolvePort, reject) => {
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /ready (\d+)/.exec(stdout);
      if (m) resolvePort(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code}: ${output()}`)));
  });
}

async function instructions(
  variant: string,
  requests: number,
  nodeArgs = [script],
  connections = CONNECTIONS,
  env: Record<string, string> = {},
  path = '/continents',
): Promise<number> {
  const out = join(dir, `callgrind.${variant}.${requests}`);
  const child = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, 'node', ...nodeArgs], {
    env: { ...process.env, ...env, VARIANT: variant, REQUESTS: String(requests) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const port = await readyPort(child, () => stderr);
  const exited = once(child, 'exit');
  await autocannon({ url: `http://127.0.0.1:${port}${path}`, connections, amount: requests });
  await exited;
  const collected = /Collected : (\d+)/.exec(stderr);
  if (!collected) throw new Error(`no instruction count from callgrind: ${stderr.slice(-500)}`);
  rmSync(out, { force: true });
  return Number(collected[1]);
}

function writeServers(): void {
  const bare = perRequest.get('bare')!;
  const rows = VARIANTS.map(([variant, label]) => {
    const n = perRequest.get(variant)!;
    const added = Math.round(n - bare);
    return `| ${label} | ${Math.round(n).toLocaleString('en-US')} | ${added < 0 ? '−' : '+'}${Math.abs(added).toLocaleString('en-US')} | ${(bare / n).toFixed(2)}x |`;
  });
  writeSection(
    'instructions',
    `## Instructions per request (\`bench/instructions.ts\`)

  ${machine()}; valgrind's callgrind. One node:http server
  answering \`hello\`, under callgrind, ${CONNECTIONS} keep-alive connections from autocannon; each server served ${FEW.toLocaleString('en-US')} then
  ${MANY.toLocaleString('en-US')} requests, and the difference is divided by ${(MANY - FEW).toLocaleString('en-US')}. Every instruction of the process counts (JIT,
  garbage collector, kernel calls' user side). Counts move far less than times with the machine's load, but
  they do move, by up to about 6% between runs (bare measured 50.8k and 53.9k on the same day), with how
  requests happen to arrive in batches; compare rows of one run. "As bare" is what requests/s would be if
  instructions were all that mattered.

  | server | instructions per request | added | as bare |
  | --- | ---: | ---: | ---: |
  ${rows.join('\n')}
  `,
  );
  console.log(rows.join('\n'));
}

// A minimal proxy and `floodgate proxy`, each under callgrind in front of the same upstream, which runs
// outside it. One connection: requests then never arrive in batches, which is what moves counts between
// runs, so two proxies' counts compare closely.
const PROXY_FEW = 3_000;
const PROXY_MANY = 9_000;
const UPSTREAM = `
import { createServer } from 'node:http';
const body = JSON.stringify({ continents: ['Africa', 'Antarctica', 'Asia', 'Australia', 'Europe', 'North America', 'South America'] });
const server = createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => console.log('ready ' + server.address().port));
`;
const MINIMAL_PROXY = `
import { Agent, createServer, request } from 'node:http';
const total = Number(process.env.REQUESTS);
let served = 0;
const agent = new Agent({ keepAlive: true, maxSockets: 256, noDelay: true });
const server = createServer((req, res) => {
  const up = request({ host: '127.0.0.1', port: Number(process.env.UPSTREAM_PORT), path: req.url, method: req.method, headers: req.headers, agent }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on('error', () => { res.statusCode = 502; res.end(); });
  res.on('finish', () => { if (++served === total) setImmediate(() => process.exit(0)); });
  up.end();
});
server.listen(0, '127.0.0.1', () => console.log('ready ' + server.address().port));
`;
// The same, on undici's pool and its lowest-level API, as `floodgate proxy` forwards: the floor for its design.
const undici = pathToFileURL(
  createRequire(resolve(import.meta.dirname, '../packages/server/package.json')).resolve('undici'),
).href;
const MINIMAL_UNDICI_PROXY = `
import { createServer } from 'node:http';
import { Pool } from ${JSON.stringify(undici)};
const total = Number(process.env.REQUESTS);
let served = 0;
const pool = new Pool('http://127.0.0.1:' + process.env.UPSTREAM_PORT, { connections: 256 });
const server = createServer((req, res) => {
  pool.dispatch({ path: req.url, method: req.method, headers: req.headers, body: null }, {
    onConnect() {},
    onHeaders(status, raw) {
      const headers = [];
      for (let i = 0; i < raw.length; i += 2) headers.push(raw[i].toString('latin1'), raw[i + 1].toString('latin1'));
      res.writeHead(status, headers);
      return true;
    },
    onData(chunk) { return res.write(chunk); },
    onComplete() { res.end(); },
    onError() { res.statusCode = 502; res.end(); },
  });
  res.on('finish', () => { if (++served === total) setImmediate(() => process.exit(0)); });
});
server.listen(0, '127.0.0.1', () => console.log('ready ' + server.address().port));
`;
const FLOODGATE_PROXY = `
import { startProxy } from ${JSON.stringify(proxyModule)};
import { validateProxyConfig } from ${JSON.stringify(proxyConfigModule)};
const total = Number(process.env.REQUESTS);
let served = 0;
const config = validateProxyConfig({
  listen: 0,
  admin: false,
  upstream: 'http://127.0.0.1:' + process.env.UPSTREAM_PORT,
  rules: [{ name: 'per-ip', policies: [{ algorithm: 'token-bucket', limit: 100000, window: '1s', burst: 100000 }] }],
});
const proxy = await startProxy(config);
proxy.server.on('request', (req, res) => res.on('finish', () => { if (++served === total) setImmediate(() => process.exit(0)); }));
console.log('ready ' + new URL(proxy.url).port);
`;
const PROXIES: [variant: string, label: string, source: string][] = [
  ['minimal', 'minimal node:http proxy (keep-alive agent, `pipe`, nothing else)', MINIMAL_PROXY],
  ['undici', 'minimal undici proxy (`Pool.dispatch`, nothing else)', MINIMAL_UNDICI_PROXY],
  ['floodgate', '`floodgate proxy`, memory store, one token-bucket rule per client IP', FLOODGATE_PROXY],
];

async function measureProxies(): Promise<void> {
  const upstreamFile = join(dir, 'upstream.mjs');
  writeFileSync(upstreamFile, UPSTREAM);
  const upstream = spawn(process.execPath, [upstreamFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await readyPort(upstream, () => '');
    for (const [variant, , source] of PROXIES) {
      const file = join(dir, `${variant}.mjs`);
      writeFileSync(file, source);
      const env = { UPSTREAM_PORT: String(port) };
      const few = await instructions(`proxy-${variant}`, PROXY_FEW, [file], 1, env);
      const many = await instructions(`proxy-${variant}`, PROXY_MANY, [file], 1, env);
      proxyPerRequest.set(variant, (many - few) / (PROXY_MANY - PROXY_FEW));
      console.log(`proxy ${variant}`, Math.round(proxyPerRequest.get(variant)!));
    }
  } finally {
    upstream.kill();
  }
}

function writeProxies(): void {
  const minimal = proxyPerRequest.get('minimal')!;
  const minimalUndici = proxyPerRequest.get('undici')!;
  const rows = PROXIES.map(([variant, label]) => {
    const n = proxyPerRequest.get(variant)!;
    return `| ${label} | ${Math.round(n).toLocaleString('en-US')} | ${(n / minimal).toFixed(2)}x | ${(n / minimalUndici).toFixed(2)}x |`;
  });
  writeSection(
    'proxy-instructions',
    `## Instructions per proxied request (\`bench/instructions.ts --part=proxy\`)

${machine()}; valgrind's callgrind. Each proxy runs under callgrind in front of
the same node:http upstream (outside it), one keep-alive connection from autocannon; each served
${PROXY_FEW.toLocaleString('en-US')} then ${PROXY_MANY.toLocaleString('en-US')} requests, and the difference is divided by ${(PROXY_MANY - PROXY_FEW).toLocaleString('en-US')}. Only the proxy process is counted.
With one connection requests never arrive in batches, so counts hold within about 2% between runs.

| proxy | instructions per request | vs minimal node:http | vs minimal undici |
| --- | ---: | ---: | ---: |
${rows.join('\n')}
`,
  );
  console.log(rows.join('\n'));
}

const perRequest = new Map<string, number>();
// Each framework bare, behind Floodgate (with its traffic accounting, and without: `traffic: false`), and
// behind its usual limiter: bench/http.ts's servers (memory stores, one client), under callgrind with one
// connection like the proxies, so the counts compare closely. A row is a framework on one path: allowed (a
// limit never reached) or denied (a limit of one, so every request but the first is refused with a 429).
const httpServer = resolve(import.meta.dirname, 'http-server.ts');
const USUAL: Record<string, string> = {
  express: 'express-rate-limit',
  fastify: '@fastify/rate-limit',
  hono: 'hono-rate-limiter',
};
// `FRAMEWORKS=fastify:allowed,hono:allowed` measures other rows.
const FRAMEWORKS = (process.env.FRAMEWORKS ?? 'express:allowed,hono:denied')
  .split(',')
  .map((row) => row.split(':') as [framework: string, path: string]);
const FRAMEWORK_VARIANTS: [variant: string, label: string][] = [
  ['bare', 'bare'],
  ['floodgate', 'Floodgate'],
  ['floodgate-untracked', 'Floodgate, `traffic: false`'],
  ['usual', 'usual limiter'],
];
// More requests than the proxies: a framework's JIT warm-up must be over before the first count ends.
const FRAMEWORK_FEW = Number(process.env.FRAMEWORK_FEW ?? 10_000);
const FRAMEWORK_MANY = Number(process.env.FRAMEWORK_MANY ?? 30_000);
const frameworkPerRequest = new Map<string, number>();

async function measureFrameworks(): Promise<void> {
  for (const [framework, path] of FRAMEWORKS) {
    for (const [variant] of FRAMEWORK_VARIANTS) {
      if (only !== undefined && !only.includes(variant)) continue;
      // One thread for V8's compiler and collector: their work then lands at the same requests every run.
      // A bare server refuses nothing: it is measured on the allowed path for either row.
      const on = variant === 'bare' ? 'allowed' : path;
      const args = ['--single-threaded', '--import', 'tsx', httpServer, framework, variant, on];
      const name = `${framework}-${path}-${variant}`;
      const few = await instructions(name, FRAMEWORK_FEW, args, 1, {}, '/');
      const many = await instructions(name, FRAMEWORK_MANY, args, 1, {}, '/');
      frameworkPerRequest.set(name, (many - few) / (FRAMEWORK_MANY - FRAMEWORK_FEW));
      console.log(name, Math.round(frameworkPerRequest.get(name)!));
    }
  }
}

function writeFrameworks(): void {
  const count = (n: number) => Math.round(n).toLocaleString('en-US');
  const rows = FRAMEWORKS.map(([framework, path]) => {
    const n = (variant: string) => frameworkPerRequest.get(`${framework}-${path}-${variant}`)!;
    const bare = n('bare');
    const cell = (v: number) => `${count(v)} (${(bare / v).toFixed(2)}x)`;
    const traffic = (n('floodgate') - n('floodgate-untracked')) / n('floodgate-untracked');
    return `| ${framework}, ${path} | ${count(bare)} | ${cell(n('floodgate'))} | ${cell(n('floodgate-untracked'))} | ${traffic >= 0 ? '+' : '−'}${Math.abs(traffic * 100).toFixed(1)}% | ${USUAL[framework]}: ${cell(n('usual'))} | ${(n('usual') / n('floodgate')).toFixed(2)}x |`;
  });
  writeSection(
    'framework-instructions',
    `## Instructions per request, by framework (\`bench/instructions.ts --part=frameworks\`)

${machine()}; valgrind's callgrind. bench/http.ts's servers (memory stores, a fixed window
per client IP, one client), each under callgrind, one keep-alive connection from autocannon; each served
${FRAMEWORK_FEW.toLocaleString('en-US')} then ${FRAMEWORK_MANY.toLocaleString('en-US')} requests, and the difference is divided by ${(FRAMEWORK_MANY - FRAMEWORK_FEW).toLocaleString('en-US')}. Allowed: a limit never reached;
denied: a limit of one, every request but the first refused with a 429 (bare answers \`hello\` either way).
In brackets: what requests/s would be, as a share of bare, if instructions were all that mattered. "Traffic"
is what the accounting for \`floodgate/admin\` adds to the middleware (on by default; \`traffic: false\` in
the limiter given turns it off). Each limiter sends its default header fields: Floodgate the two
\`RateLimit\` fields (and \`Retry-After\` on a 429), hono-rate-limiter four draft-6 fields, express-rate-limit
(draft-7 here) two.

| framework, path | bare | Floodgate | Floodgate, \`traffic: false\` | traffic | usual limiter | Floodgate's speed / usual's |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}
`,
  );
  console.log(rows.join('\n'));
}

const proxyPerRequest = new Map<string, number>();
try {
  if (parts.includes('frameworks')) await measureFrameworks();
  if (parts.includes('servers')) {
    for (const [variant] of VARIANTS) {
      if (only !== undefined && !only.includes(variant)) continue;
      const few = await instructions(variant, FEW);
      const many = await instructions(variant, MANY);
      perRequest.set(variant, (many - few) / (MANY - FEW));
      console.log(variant, Math.round(perRequest.get(variant)!));
    }
  }
  if (parts.includes('proxy')) await measureProxies();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

if (parts.includes('servers') && only === undefined) writeServers();
if (parts.includes('frameworks') && only === undefined) writeFrameworks();
if (parts.includes('proxy')) writeProxies();

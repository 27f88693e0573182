// Instructions per request of a node:http server, bare and behind Floodgate, counted by valgrind's
// callgrind: a count, unlike a time, does not move with the neighbours of a shared machine. Writes the
// "instructions" section of docs/BENCHMARKS.md.
//
//   npm run bench:instructions        (needs valgrind: apt-get install valgrind; and the built package)
//
// Each server runs twice under callgrind, serving FEW then MANY requests before it exits; the difference
// of the two totals over the difference of the counts is the steady-state cost of one request, without
// start-up and with most of the JIT compilation left out.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import { machine, writeSection } from './report.js';

const FEW = 12_000;
const MANY = 32_000;
const CONNECTIONS = 8;
const adapter = resolve(import.meta.dirname, '../packages/floodgate/dist/esm/http/node.js');

if (spawnSync('valgrind', ['--version']).error !== undefined) {
  console.error('bench/instructions.ts needs valgrind: apt-get install valgrind');
  process.exit(1);
}
if (!existsSync(adapter)) {
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
};
const server = createServer(handlers[variant]);
server.listen(0, '127.0.0.1', () => console.log('ready ' + server.address().port));
`;

const VARIANTS: [variant: string, label: string][] = [
  ['bare', 'bare node:http (sync handler)'],
  ['async', 'bare, async handler awaiting once'],
  ['headers', 'bare + the two RateLimit fields as constants'],
  ['floodgate', 'Floodgate `floodgate/node`, memory store, one fixed window'],
];

const dir = mkdtempSync(join(tmpdir(), 'floodgate-bench-instructions-'));
const script = join(dir, 'server.mjs');
writeFileSync(script, SERVER);

async function instructions(variant: string, requests: number): Promise<number> {
  const out = join(dir, `callgrind.${variant}.${requests}`);
  const child = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, 'node', script], {
    env: { ...process.env, VARIANT: variant, REQUESTS: String(requests) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const port = await new Promise<number>((resolvePort, reject) => {
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /ready (\d+)/.exec(stdout);
      if (m) resolvePort(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  const exited = once(child, 'exit');
  await autocannon({ url: `http://127.0.0.1:${port}/`, connections: CONNECTIONS, amount: requests });
  await exited;
  const collected = /Collected : (\d+)/.exec(stderr);
  if (!collected) throw new Error(`no instruction count from callgrind: ${stderr.slice(-500)}`);
  rmSync(out, { force: true });
  return Number(collected[1]);
}

const perRequest = new Map<string, number>();
try {
  for (const [variant] of VARIANTS) {
    const few = await instructions(variant, FEW);
    const many = await instructions(variant, MANY);
    perRequest.set(variant, (many - few) / (MANY - FEW));
    console.log(variant, Math.round(perRequest.get(variant)!));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

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

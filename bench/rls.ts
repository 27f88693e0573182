// `floodgate rls` under a Node gRPC load loop, beside plain @grpc/grpc-js answering OK without deciding (the
// transport's ceiling): calls/s, p99 and the server process's CPU per call at 1, 16 and 128 calls in flight,
// on the memory store and on Redis (a redis-server the script starts), each request two descriptors (a
// client among 1,000 and a route), all allowed. CPU per call is the number to read: the machine is shared,
// and rates move with its load. The three servers run side by side, taken in turn, ROUNDS times over; each
// keeps its run of least CPU per call (what other work on the machine adds is never negative). Writes the
// "rls" section of docs/BENCHMARKS.md.
//
//   npm run bench:rls          (or: node --import tsx bench/rls.ts [--quick] [--profile DIR] [--only memory:16])
//
// --profile DIR writes each server's CPU profiles (node --cpu-prof) under DIR/<server>/; --only runs one
// server at one depth, printed, not written.
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisServer } from '@floodgate/test-support';
import { credentials } from '@grpc/grpc-js';
import { rateLimitService } from '../packages/server/src/rls/protocol.js';
import { machine, writeSection } from './report.js';

const quick = process.argv.includes('--quick');
const option = (name: string) => {
  const at = process.argv.indexOf(name);
  return at === -1 ? undefined : process.argv[at + 1];
};
const profile = option('--profile');
const only = option('--only');
const SECONDS = quick ? 1 : 2;
const ROUNDS = quick ? 1 : 3;
const INFLIGHT = [1, 16, 128];
const CLIENTS = 1000;

const dir = mkdtempSync(join(tmpdir(), 'floodgate-bench-rls-'));
const config = join(dir, 'bench.yaml');
writeFileSync(
  config,
  `domain: bench
descriptors:
  - key: client
    rate_limit: { unit: hour, requests_per_unit: 100000000 }
  - key: path
    value: /api
    rate_limit: { unit: second, requests_per_unit: 100000000 }
`,
);
const redis = await RedisServer.start();
process.on('exit', () => void redis.kill());

type Call = (request: object, callback: (error: Error | null) => void) => void;

interface Result {
  store: string;
  inflight: number;
  rate: number;
  p50: number;
  p99: number;
  cpuUs: number;
}

interface Running {
  store: string;
  call(i: number): Promise<number>;
  /** The server process's CPU time so far, µs. */
  cpu(): Promise<number>;
  stop(): Promise<void>;
}

async function start(store: string): Promise<Running> {
  const child = fork(
    new URL('./rls-server.ts', import.meta.url),
    [config, store === 'redis' ? redis.url : store],
    {
      execArgv: [
        '--import',
        'tsx',
        ...(profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', join(profile, store)]),
      ],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    },
  );
  const [{ address }] = (await once(child, 'message')) as [{ address: string }];
  const Service = rateLimitService();
  const client = new Service(address, credentials.createInsecure()) as unknown as {
    ShouldRateLimit: Call;
    close(): void;
  };
  return {
    store,
    call: (i) =>
      new Promise<number>((resolve, reject) => {
        const started = performance.now();
        client.ShouldRateLimit(
          {
            domain: 'bench',
            descriptors: [
              { entries: [{ key: 'client', value: `c${i % CLIENTS}` }] },
              { entries: [{ key: 'path', value: '/api' }] },
            ],
          },
          (error) => (error === null ? resolve(performance.now() - started) : reject(error)),
        );
      }),
    cpu: async () => {
      const reply = once(child, 'message');
      child.send('cpu');
      const [{ cpu: c }] = (await reply) as [{ cpu: NodeJS.CpuUsage }];
      return c.user + c.system;
    },
    stop: async () => {
      client.close();
      child.send('exit');
      await once(child, 'exit');
    },
  };
}

let n = 0;
async function measure(server: Running, inflight: number, warm: number): Promise<Result> {
  const run = async (ms: number, latencies?: number[]) => {
    const until = performance.now() + ms;
    let done = 0;
    await Promise.all(
      Array.from({ length: inflight }, async () => {
        while (performance.now() < until) {
          const latency = await server.call(n++);
          latencies?.push(latency);
          done++;
        }
      }),
    );
    return done;
  };
  await run(warm);
  const latencies: number[] = [];
  const before = await server.cpu();
  const started = performance.now();
  const done = await run(SECONDS * 1000, latencies);
  const elapsed = (performance.now() - started) / 1000;
  const used = (await server.cpu()) - before;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return {
    store: server.store,
    inflight,
    rate: done / elapsed,
    p50: at(0.5),
    p99: at(0.99),
    cpuUs: used / done,
  };
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(', ');
const STORES = ['echo', 'answer', 'memory', 'redis'].filter(
  (s) => only === undefined || only.startsWith(`${s}:`),
);
const servers: Running[] = [];
for (const store of STORES) servers.push(await start(store));
const loadBefore = load();
const best = new Map<string, Result>();
for (let round = 0; round < ROUNDS; round++) {
  for (const inflight of INFLIGHT) {
    if (only !== undefined && !only.endsWith(`:${inflight}`)) continue;
    for (const server of servers) {
      // The first round warms each server up longer: its code is compiled then.
      const r = await measure(server, inflight, round === 0 ? 1000 : 300);
      console.log(
        `round ${round + 1}: ${r.store} ${inflight} in flight: ${Math.round(r.rate)} calls/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.cpuUs.toFixed(0)} µs server CPU/call`,
      );
      const id = `${r.store}:${inflight}`;
      if ((best.get(id)?.cpuUs ?? Number.POSITIVE_INFINITY) > r.cpuUs) best.set(id, r);
    }
  }
}
const loadAfter = load();
for (const server of servers) await server.stop();
await redis.stop();
// One server at one depth is a look, not a run to record.
if (only !== undefined) process.exit(0);
const results = INFLIGHT.flatMap((inflight) => STORES.map((store) => best.get(`${store}:${inflight}`)!));

const NAMES: Record<string, string> = {
  echo: 'grpc-js echo (no decision)',
  answer: "grpc-js echo of floodgate's answer",
  memory: 'floodgate rls, memory',
  redis: 'floodgate rls, Redis',
};
const echoOf = (r: Result, store = 'echo') =>
  results.find((e) => e.store === store && e.inflight === r.inflight)!;
const table = [
  '| server | in flight | calls/s | p50 | p99 | server CPU / call | vs echo | vs echo of the answer |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...results.map(
    (r) =>
      `| ${NAMES[r.store]} | ${r.inflight} | ${Math.round(r.rate).toLocaleString('en-US')} | ${r.p50.toFixed(2)} ms | ${r.p99.toFixed(2)} ms | ${r.cpuUs.toFixed(0)} µs | ${(r.cpuUs / echoOf(r).cpuUs).toFixed(2)}x | ${r.store === 'echo' ? '' : `${(r.cpuUs / echoOf(r, 'answer').cpuUs).toFixed(2)}x`} |`,
  ),
];
writeSection(
  'rls',
  `## \`floodgate rls\`: Envoy's rate-limit service (\`bench/rls.ts\`)

${machine()}. The service in a process of its own; one Node gRPC client (@grpc/grpc-js, one HTTP/2
connection per server) keeps 1, 16 or 128 \`ShouldRateLimit\` calls in flight for ${SECONDS} s after a warm-up. Each call
carries two descriptors (a client among ${CLIENTS.toLocaleString('en-US')}, fixed window per hour, and a route, per second), decided together;
all allowed. Redis: a redis-server the script starts, exact path (no leases). The echo is plain @grpc/grpc-js
with the same protos, answering \`{ overall_code: OK }\` without deciding: the transport's ceiling. Floodgate's answer also
carries a status per descriptor and the RateLimit header fields (225 bytes, against 2): the echo of the
answer is the same server answering those bytes, made once at its start, without deciding. Server CPU / call is the
server process's own \`process.cpuUsage()\` over the measured seconds, divided by the calls: the number to
compare, since the rates move with the machine's load. The three servers ran side by side, taken in turn at
each depth, ${ROUNDS} rounds; each row is the server's round of least CPU per call (its rate and latencies
from that round). The load loop shares the cores with the server and
with other work: load average ${loadBefore} before the run, ${loadAfter} after.

${table.join('\n')}
`,
);
console.log('wrote docs/BENCHMARKS.md (rls)');

// Each framework bare, behind Floodgate (memory store and Redis store) and behind its usual limiter, in the
// same run: requests/s with autocannon and the server process's CPU time per request. Allowed path and
// all-denied path. Writes the "http" section of docs/BENCHMARKS.md.
//
//   npm run bench:http          (or: node --import tsx bench/http.ts [--quick] [--frameworks=fastify,node:http])
// --frameworks measures only those and prints the results without writing the report.
import { RedisServer } from '@floodgate/test-support';
import { type Measure, measureServer } from './load.js';
import { machine, writeSection } from './report.js';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 1 : 3;
const RUNS = quick ? 1 : 2;
const CONNECTIONS = 32;
const only = process.argv.find((a) => a.startsWith('--frameworks='));
const FRAMEWORKS = only
  ? only.slice('--frameworks='.length).split(',')
  : ['express', 'fastify', 'hono', 'koa', 'node:http'];
const USUAL: Record<string, string> = {
  express: 'express-rate-limit',
  fastify: '@fastify/rate-limit',
  hono: 'hono-rate-limiter',
};
// Quota leases where the Redis issue set its targets: one hot client, node:http and Fastify.
const LEASES = ['fastify', 'node:http'];
// The usual limiter on Redis, where it has a Redis store: node:http has no framework limiter, and
// rate-limiter-flexible is what such servers reach for.
const USUAL_REDIS: Record<string, string> = {
  fastify: '@fastify/rate-limit, Redis',
  'node:http': 'rate-limiter-flexible, Redis',
};

const redis = await RedisServer.start();
process.on('exit', () => void redis.kill());

function measure(framework: string, variant: string, path: string): Promise<Measure> {
  return measureServer(
    new URL('./http-server.ts', import.meta.url),
    [framework, variant, path, String(redis.port)],
    { connections: CONNECTIONS, seconds: SECONDS },
  );
}

type Row = { framework: string; path: string; variant: string; runs: Measure[] };
const rows: Row[] = [];
for (let run = 0; run < RUNS; run++) {
  for (const path of ['allowed', 'denied']) {
    for (const framework of FRAMEWORKS) {
      const variants = [
        'bare',
        'floodgate-memory',
        'floodgate-redis',
        ...(LEASES.includes(framework) ? ['floodgate-redis-leases'] : []),
        ...(USUAL[framework] ? ['usual'] : []),
        ...(USUAL_REDIS[framework] ? ['usual-redis'] : []),
      ];
      for (const variant of variants) {
        const m = await measure(framework, variant, path);
        let row = rows.find((r) => r.framework === framework && r.path === path && r.variant === variant);
        if (row === undefined) {
          row = { framework, path, variant, runs: [] };
          rows.push(row);
        }
        row.runs.push(m);
        console.log(
          `run ${run + 1} ${path} ${framework} ${variant}: ${Math.round(m.rps)} req/s, ${m.cpuUs.toFixed(1)} µs CPU/req, ${m.non2xx}/${m.total} not 2xx`,
        );
      }
    }
  }
}
/** The least disturbed run: the one whose server spent the least CPU per request. */
const best = (r: Row) => r.runs.reduce((a, b) => (b.cpuUs < a.cpuUs ? b : a));
await redis.stop();
if (only) process.exit(0);

const name = (framework: string, variant: string) =>
  variant === 'bare'
    ? 'bare'
    : variant === 'usual'
      ? USUAL[framework]!
      : variant === 'usual-redis'
        ? USUAL_REDIS[framework]!
        : variant === 'floodgate-memory'
          ? 'Floodgate, memory'
          : variant === 'floodgate-redis-leases'
            ? 'Floodgate, Redis, leases'
            : 'Floodgate, Redis';
const sections: string[] = [];
for (const path of ['allowed', 'denied']) {
  const table = [
    `| framework | limiter | requests/s | vs bare | server CPU / request | CPU vs bare | refused |`,
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const framework of FRAMEWORKS) {
    const bareRow = rows.find((r) => r.framework === framework && r.path === path && r.variant === 'bare')!;
    const bareRps = Math.max(...bareRow.runs.map((m) => m.rps));
    const bareCpu = best(bareRow).cpuUs;
    for (const r of rows.filter((x) => x.framework === framework && x.path === path)) {
      const m = best(r);
      const rps = Math.max(...r.runs.map((x) => x.rps));
      const all = r.runs.map((x) => `${(x.rps / 1000).toFixed(1)}k`).join(', ');
      table.push(
        `| ${framework} | ${name(framework, r.variant)} | ${Math.round(rps).toLocaleString('en-US')} (${all}) | ${(rps / bareRps).toFixed(2)}x | ${m.cpuUs.toFixed(1)} µs | ${(m.cpuUs / bareCpu).toFixed(2)}x | ${((100 * m.non2xx) / m.total).toFixed(0)}% |`,
      );
    }
  }
  sections.push(
    `### ${path === 'allowed' ? 'Allowed path (no request refused)' : 'Denied path (every request refused, 429)'}\n\n${table.join('\n')}`,
  );
}

writeSection(
  'http',
  `## HTTP middleware (\`bench/http.ts\`)

${machine()}. autocannon, ${CONNECTIONS} connections, ${SECONDS} s per measurement after 1 s of warm-up, ${RUNS} run(s) interleaved; requests/s is the best run (all runs in brackets), CPU per request the lowest; one server process per row
(so its CPU time can be read), loopback; the load generator shares the 2 cores. Fixed window, keyed by client IP.
Redis rows use a redis-server started by the script. "vs bare" compares with the same framework without a
limiter; on the denied path "bare" still answers 200, so those ratios compare the cost of a refusal with
the cost of serving. The usual limiters run with their memory stores, and where they have one with their Redis
store (rate-limiter-flexible's \`RateLimiterRedis\` for node:http). Every request comes from one client: on
Redis, one hot key.

${sections.join('\n\n')}
`,
);
console.log('wrote docs/BENCHMARKS.md (http)');

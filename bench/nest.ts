// Floodgate's Nest module beside @nestjs/throttler, on both of Nest's HTTP platforms, in the same run:
// requests/s with autocannon and the server's CPU time per request, allowed and denied; then a flood of
// 1,000,000 distinct clients through each one's memory store: heap held and timers created.
// Writes the "nest" section of docs/BENCHMARKS.md.
//
//   npm run bench:nest          (or: node --import tsx bench/nest.ts [--quick])
import { execFileSync } from 'node:child_process';
import { type Measure, measureServer } from './load.js';
import { machine, writeSection } from './report.js';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 1 : 3;
const RUNS = quick ? 1 : 2;
const CONNECTIONS = 32;
const FLOOD = quick ? 100_000 : 1_000_000;
const PLATFORMS = ['express', 'fastify'];
const VARIANTS = ['bare', 'floodgate', 'throttler'];
const NAMES: Record<string, string> = {
  bare: 'bare',
  floodgate: 'Floodgate (floodgate/nest)',
  throttler: '@nestjs/throttler',
};

type Row = { platform: string; path: string; variant: string; runs: Measure[] };
const rows: Row[] = [];
for (let run = 0; run < RUNS; run++) {
  for (const path of ['allowed', 'denied']) {
    for (const platform of PLATFORMS) {
      for (const variant of VARIANTS) {
        const m = await measureServer(
          new URL('./nest-server.ts', import.meta.url),
          [platform, variant, path],
          {
            connections: CONNECTIONS,
            seconds: SECONDS,
            // @nestjs/throttler is CommonJS and requires Nest 12, which is ESM: tsx's require hook would load
            // a second copy of @nestjs/core, where Node's own require(esm) shares the one already loaded.
            loader: 'tsx/esm',
          },
        );
        let row = rows.find((r) => r.platform === platform && r.path === path && r.variant === variant);
        if (row === undefined) {
          row = { platform, path, variant, runs: [] };
          rows.push(row);
        }
        row.runs.push(m);
        console.log(
          `run ${run + 1} ${path} ${platform} ${variant}: ${Math.round(m.rps)} req/s, ${m.cpuUs.toFixed(1)} µs CPU/req, ${m.non2xx}/${m.total} not 2xx`,
        );
      }
    }
  }
}

interface Flood {
  contender: string;
  heldBytes: number;
  timers: number;
  seconds: number;
}
const floods: Flood[] = [];
for (const contender of ['floodgate', 'throttler']) {
  const out = execFileSync(
    process.execPath,
    [
      '--expose-gc',
      '--import',
      'tsx/esm',
      new URL('./nest-flood.ts', import.meta.url).pathname,
      contender,
      String(FLOOD),
    ],
    { encoding: 'utf8' },
  );
  const flood = JSON.parse(out.trim().split('\n').at(-1)!) as Flood;
  floods.push(flood);
  console.log(
    `flood ${contender}: ${(flood.heldBytes / 2 ** 20).toFixed(0)} MiB held, ${flood.timers} timers`,
  );
}

/** The least disturbed run: the one whose server spent the least CPU per request. */
const best = (r: Row) => r.runs.reduce((a, b) => (b.cpuUs < a.cpuUs ? b : a));
const sections: string[] = [];
for (const path of ['allowed', 'denied']) {
  const table = [
    '| platform | guard | requests/s | vs bare | server CPU / request | CPU vs bare | refused |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const platform of PLATFORMS) {
    const bareRow = rows.find((r) => r.platform === platform && r.path === path && r.variant === 'bare')!;
    const bareRps = Math.max(...bareRow.runs.map((m) => m.rps));
    const bareCpu = best(bareRow).cpuUs;
    for (const r of rows.filter((x) => x.platform === platform && x.path === path)) {
      const m = best(r);
      const rps = Math.max(...r.runs.map((x) => x.rps));
      const all = r.runs.map((x) => `${(x.rps / 1000).toFixed(1)}k`).join(', ');
      table.push(
        `| ${platform} | ${NAMES[r.variant]} | ${Math.round(rps).toLocaleString('en-US')} (${all}) | ${(rps / bareRps).toFixed(2)}x | ${m.cpuUs.toFixed(1)} µs | ${(m.cpuUs / bareCpu).toFixed(2)}x | ${((100 * m.non2xx) / m.total).toFixed(0)}% |`,
      );
    }
  }
  sections.push(
    `### ${path === 'allowed' ? 'Allowed path (no request refused)' : 'Denied path (every request refused, 429)'}\n\n${table.join('\n')}`,
  );
}
const floodTable = [
  `| store | heap held after ${FLOOD.toLocaleString('en-US')} clients | per client | timers created | time |`,
  '| --- | ---: | ---: | ---: | ---: |',
  ...floods.map(
    (f) =>
      `| ${NAMES[f.contender]} | ${(f.heldBytes / 2 ** 20).toFixed(0)} MiB | ${Math.round(f.heldBytes / FLOOD)} B | ${f.timers} | ${f.seconds.toFixed(2)} s |`,
  ),
];

writeSection(
  'nest',
  `## NestJS: floodgate/nest beside @nestjs/throttler (\`bench/nest.ts\`)

${machine()}. One Nest application per row in a process of its own (so its CPU time can be read), a single
\`GET /\` route, the guard registered globally (\`APP_GUARD\`), keyed by client IP, memory stores: Floodgate's
fixed window, @nestjs/throttler's default. autocannon, ${CONNECTIONS} connections, ${SECONDS} s per measurement after 1 s of
warm-up, ${RUNS} run(s) interleaved; requests/s is the best run (all runs in brackets), CPU per request the
lowest. On the denied path "bare" still answers 200.

${sections.join('\n\n')}

### A flood of distinct clients

Each store, alone in a process, takes one request from each of ${FLOOD.toLocaleString('en-US')} distinct clients as its guard
would make it (a 10-per-minute limit), then holds them: heap used after a full GC, less before; timers
counted with an async hook.

${floodTable.join('\n')}
`,
);
console.log('wrote docs/BENCHMARKS.md (nest)');

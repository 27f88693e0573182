// Load shedding under overload, the demonstration: a Fastify server whose handler waits on a simulated
// database (DB_PARALLEL queries at once, DB_MS each: a capacity of DB_PARALLEL / DB_MS requests per ms),
// driven open-loop (requests sent at a fixed rate whatever the answers) at 0.5x, 1x, 2x and 4x that
// capacity: unprotected, behind @fastify/under-pressure, and behind Floodgate's shedder, in the same run.
// Goodput: responses 200 within the latency objective, per second. Writes the "shed" section of
// docs/BENCHMARKS.md and docs/shed.svg.
//
//   npm run bench:shed          (or: node --import tsx bench/shed.ts [--quick])
// SHED_WORK=cpu makes the handler burn the same capacity in CPU instead of waiting (printed, and written
// to the report like the default; the report in docs/ is of the database case).
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { resolve } from 'node:path';
import { machine, writeSection } from './report.js';

const quick = process.argv.includes('--quick');
const DB_PARALLEL = 8;
const DB_MS = 20;
const SECONDS = quick ? 4 : 10;
const OBJECTIVE = 250; // ms
const TIMEOUT = 3000; // ms: a request not answered by then counts as failed
const CAPACITY = (DB_PARALLEL / DB_MS) * 1000; // requests/s
const LOADS = [0.5, 1, 2, 4];
const VARIANTS = ['none', 'under-pressure', 'floodgate'] as const;

interface Outcome {
  offered: number;
  goodput: number;
  okShare: number;
  shedShare: number;
  p50: number;
  p99: number;
}

/** Sends `rate` requests/s for SECONDS, on time whatever the answers; classifies every answer. */
async function openLoop(port: number, rate: number): Promise<Outcome> {
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  const latencies: number[] = [];
  let good = 0;
  let shed = 0;
  let sent = 0;
  const pending: Promise<void>[] = [];
  const one = () =>
    new Promise<void>((done) => {
      const start = performance.now();
      const req = request({ host: '127.0.0.1', port, path: '/', agent, timeout: TIMEOUT }, (res) => {
        res.resume();
        res.on('end', () => {
          const ms = performance.now() - start;
          if (res.statusCode === 200) {
            latencies.push(ms);
            if (ms <= OBJECTIVE) good++;
          } else if (res.statusCode === 503) shed++;
          done();
        });
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => done());
      req.end();
    });
  const start = performance.now();
  await new Promise<void>((finish) => {
    const tick = setInterval(() => {
      const elapsed = (performance.now() - start) / 1000;
      if (elapsed >= SECONDS) {
        clearInterval(tick);
        finish();
        return;
      }
      for (const due = Math.floor(elapsed * rate); sent < due; sent++) pending.push(one());
    }, 5);
  });
  await Promise.all(pending);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0;
  return {
    offered: rate,
    goodput: good / SECONDS,
    okShare: latencies.length / sent,
    shedShare: shed / sent,
    p50: at(0.5),
    p99: at(0.99),
  };
}

const results = new Map<string, Outcome[]>();
for (const variant of VARIANTS) {
  const outcomes: Outcome[] = [];
  for (const load of LOADS) {
    // A fresh server for every load: nothing learned or queued carries over.
    const server = fork(
      new URL('./shed-server.ts', import.meta.url),
      [variant, String(DB_PARALLEL), String(DB_MS), process.env.SHED_WORK ?? 'db'],
      {
        execArgv: ['--import', 'tsx'],
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      },
    );
    const [{ port }] = (await once(server, 'message')) as [{ port: number }];
    const o = await openLoop(port, load * CAPACITY);
    server.kill();
    await once(server, 'exit');
    outcomes.push(o);
    console.log(
      `${variant} ${load}x: goodput ${Math.round(o.goodput)}/s (${((100 * o.goodput) / CAPACITY).toFixed(0)}% of capacity), p50 ${o.p50.toFixed(0)} ms p99 ${o.p99.toFixed(0)} ms, shed ${(100 * o.shedShare).toFixed(1)}%`,
    );
  }
  results.set(variant, outcomes);
}

const NAMES: Record<(typeof VARIANTS)[number], string> = {
  none: 'unprotected',
  'under-pressure': '@fastify/under-pressure (maxEventLoopDelay 100 ms)',
  floodgate: "Floodgate's shedder (gradient2, objective 250 ms)",
};
const rows: string[] = [];
for (const variant of VARIANTS) {
  for (const [i, o] of results.get(variant)!.entries()) {
    rows.push(
      `| ${NAMES[variant]} | ${LOADS[i]}x | ${Math.round(o.goodput)} (${(o.goodput / CAPACITY).toFixed(2)}x) | ${o.p50.toFixed(0)} ms | ${o.p99.toFixed(0)} ms | ${(100 * o.shedShare).toFixed(1)}% |`,
    );
  }
}
const unloaded = results.get('floodgate')![0]!.p99;

// The picture: goodput and admitted p99 against offered load, one line per contender.
const COLORS = ['#b22', '#888', '#16a'];
function svg(): string {
  const W = 640;
  const H = 260;
  const pad = 50;
  const x = (load: number) => pad + ((W / 2 - pad - 20) * (load - 0.5)) / 3.5;
  const panel = (dx: number, title: string, value: (o: Outcome) => number, max: number, unit: string) => {
    const y = (v: number) => H - pad - ((H - 2 * pad) * Math.min(v, max)) / max;
    const lines = VARIANTS.map((variant, k) => {
      const pts = results.get(variant)!.map((o, i) => `${dx + x(LOADS[i]!)},${y(value(o))}`);
      return `<polyline fill="none" stroke="${COLORS[k]}" stroke-width="2" points="${pts.join(' ')}"/>`;
    });
    const ticks = LOADS.map(
      (l) => `<text x="${dx + x(l)}" y="${H - pad + 16}" font-size="11" text-anchor="middle">${l}x</text>`,
    );
    return [
      `<text x="${dx + W / 4}" y="20" font-size="13" text-anchor="middle">${title}</text>`,
      `<line x1="${dx + pad}" y1="${H - pad}" x2="${dx + W / 2 - 20}" y2="${H - pad}" stroke="#000"/>`,
      `<line x1="${dx + pad}" y1="${pad}" x2="${dx + pad}" y2="${H - pad}" stroke="#000"/>`,
      `<text x="${dx + pad - 6}" y="${pad + 4}" font-size="11" text-anchor="end">${max}${unit}</text>`,
      `<text x="${dx + pad - 6}" y="${H - pad}" font-size="11" text-anchor="end">0</text>`,
      ...ticks,
      ...lines,
    ].join('\n');
  };
  const legend = VARIANTS.map(
    (v, k) => `<text x="${pad}" y="${H + 4 + 14 * k}" font-size="11" fill="${COLORS[k]}">${NAMES[v]}</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + 40}" font-family="sans-serif">
<title>Goodput and admitted p99 against offered load: unprotected, @fastify/under-pressure, Floodgate's shedder</title>
<rect width="100%" height="100%" fill="#fff"/>
${panel(0, 'goodput/s within 250 ms, by offered load', (o) => o.goodput, Math.round(CAPACITY * 1.2), '')}
${panel(W / 2, 'p99 of admitted, by offered load', (o) => o.p99, TIMEOUT, ' ms')}
${legend.join('\n')}
</svg>
`;
}
writeFileSync(resolve(import.meta.dirname, '../docs/shed.svg'), svg());

writeSection(
  'shed',
  `## Load shedding under overload (\`bench/shed.ts\`)

${machine()}. A Fastify server whose handler waits on a simulated database that runs ${DB_PARALLEL} queries at once,
${DB_MS} ms each (more wait in line): a capacity of ${CAPACITY} requests/s. An open-loop load (requests sent at a fixed
rate whatever the answers, ${SECONDS} s per point, a ${TIMEOUT / 1000} s client timeout) at 0.5x to 4x that capacity, a fresh
server per point. Goodput counts 200 responses within ${OBJECTIVE} ms, per second.

| server | offered | goodput/s (x capacity) | p50 admitted | p99 admitted | shed (503) |
| --- | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

Targets: at 2x and 4x, goodput at least 0.9x of capacity and admitted p99 at most 3x the unloaded one
(${unloaded.toFixed(0)} ms at 0.5x, so ${(3 * unloaded).toFixed(0)} ms); at 0.5x, nothing shed.

@fastify/under-pressure watches the event loop, the heap and the RSS: a server waiting on its database has
an idle event loop however long the line at the database grows, so it never sheds here. The shedder reads
the latency of the requests themselves. A CPU-bound handler, where the event loop is the signal, is the
other case to measure (the shedder watches the loop too, with \`eventLoop\`).

![goodput and p99 against offered load](shed.svg)
`,
);
console.log('wrote docs/BENCHMARKS.md (shed) and docs/shed.svg');

// Load shedding under overload. A Fastify server waiting on a simulated database of fixed parallelism
// (8 x 20 ms, 4 x 50 ms, 40 x 100 ms), or burning 5 ms of CPU per request, driven open loop from this
// process (Poisson arrivals, latency from when each request was due) at 0.5x, 2x and 4x its capacity:
// unprotected, behind @fastify/under-pressure, behind Floodgate's shedder (gradient2, and aimd), in one
// run, a fresh server per point. Then the database 10x slower mid-run, and five early aborts. Writes the
// "shed" section of docs/BENCHMARKS.md (printed too), docs/shed.json, and the plots (bench/shed-plot.ts).
//
//   npm run bench:shed          (or: node --import tsx bench/shed.ts [--quick])
// --quick: 3 s per point, without aimd, for iterating; the docs are written from a full run.
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { machine, writeSection } from './report.js';
import { type Answer, abortive, openLoop } from './shed-load.js';
import { type Point, plot, type Results, type Step } from './shed-plot.js';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 3 : 8;
const OBJECTIVE = 250; // ms
const TIMEOUT = 2000; // ms: a request not answered by then counts as failed
const SHAPES = [
  { name: '8 x 20 ms', work: 'db', parallel: 8, ms: 20 },
  { name: '4 x 50 ms', work: 'db', parallel: 4, ms: 50 },
  { name: '40 x 100 ms', work: 'db', parallel: 40, ms: 100 },
  { name: 'CPU 5 ms', work: 'cpu', parallel: 1, ms: 5 },
] as const;
const LOADS = [0.5, 2, 4];
const SERVERS = quick
  ? (['none', 'under-pressure', 'floodgate'] as const)
  : (['none', 'under-pressure', 'floodgate', 'floodgate-aimd'] as const);
type Server = (typeof SERVERS)[number];

async function start(server: Server, work: string, parallel: number, ms: number) {
  const child = fork(
    new URL('./shed-server.ts', import.meta.url),
    [server, work, String(parallel), String(ms)],
    {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    },
  );
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  return { child, port };
}

async function stop(child: ChildProcess): Promise<void> {
  child.kill();
  await once(child, 'exit');
}

interface ShedderState {
  limit: number;
  waitedTooLong: number;
  shed: number;
}

function stateOf(child: ChildProcess): Promise<ShedderState> {
  child.send({ limit: true });
  return once(child, 'message').then(([m]) => m as ShedderState);
}

const limitOf = (child: ChildProcess) => stateOf(child).then((s) => s.limit);

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;
}

function summarise(
  answers: Answer[],
  seconds: number,
  capacity: number,
  load: number,
): Omit<Point, 'server' | 'waitedTooLong'> {
  const admitted = answers
    .filter((a) => a.status === 200)
    .map((a) => a.latency)
    .sort((a, b) => a - b);
  const good = answers.filter((a) => a.status === 200 && a.latency <= OBJECTIVE).length;
  const shed = answers.filter((a) => a.status === 503);
  return {
    load,
    goodput: good / seconds,
    ratio: good / seconds / capacity,
    p50: quantile(admitted, 0.5),
    p99: quantile(admitted, 0.99),
    shed: shed.length / answers.length,
    shedFirstSecond: shed.filter((a) => a.due < 1000).length,
    failed: answers.filter((a) => a.status === 0).length / answers.length,
  };
}

// A machine busy with other work distorts every number here (the servers and the load share its cores):
// the load average before and after says how busy it was.
const loadBefore = loadavg()[0]!;
const results: Results = { quick, objective: OBJECTIVE, shapes: [], step: [], aborts: undefined };
for (const shape of SHAPES) {
  const capacity = (shape.parallel * 1000) / shape.ms;
  const points: Point[] = [];
  for (const load of LOADS) {
    for (const server of SERVERS) {
      const { child, port } = await start(server, shape.work, shape.parallel, shape.ms);
      const answers = await openLoop({ port, rate: load * capacity, ms: SECONDS * 1000, timeout: TIMEOUT });
      const state = await stateOf(child);
      await stop(child);
      const point = {
        server,
        ...summarise(answers, SECONDS, capacity, load),
        waitedTooLong: state.waitedTooLong,
      };
      points.push(point);
      console.log(
        `${shape.name} ${server} ${load}x: goodput ${point.goodput.toFixed(0)}/s (${point.ratio.toFixed(2)}x), p50 ${point.p50.toFixed(0)} ms p99 ${point.p99.toFixed(0)} ms, shed ${(100 * point.shed).toFixed(1)}% (${point.shedFirstSecond} in the first second, ${point.waitedTooLong} for the event loop), failed ${(100 * point.failed).toFixed(1)}%`,
      );
    }
  }
  results.shapes.push({ ...shape, capacity, points });
}

// The database 10x slower mid-run, then back: 8 x 20 ms (400/s) at 2x; goodput per half second.
const STEP = quick ? { slow: 3000, back: 8000, end: 11_000 } : { slow: 4000, back: 10_000, end: 14_000 };
for (const server of SERVERS) {
  const { child, port } = await start(server, 'db', 8, 20);
  const answers = await openLoop({
    port,
    rate: 800,
    ms: STEP.end,
    timeout: TIMEOUT,
    at: [
      { ms: STEP.slow, run: () => child.send({ service: 200 }) },
      { ms: STEP.back, run: () => child.send({ service: 20 }) },
    ],
  });
  await stop(child);
  const goodIn = (from: number, to: number) =>
    answers.filter((a) => a.status === 200 && a.latency <= OBJECTIVE && a.due >= from && a.due < to).length /
    ((to - from) / 1000);
  const series = Array.from({ length: STEP.end / 500 }, (_, i) => goodIn(i * 500, (i + 1) * 500));
  const step: Step = {
    server,
    series,
    fifthSecondSlowed: goodIn(STEP.slow + 4000, STEP.slow + 5000),
    secondSecondBack: goodIn(STEP.back + 1000, STEP.back + 2000),
  };
  results.step.push(step);
  console.log(
    `step ${server}: ${step.fifthSecondSlowed.toFixed(0)}/s in the 5th second slowed (of 40/s), ${step.secondSecondBack.toFixed(0)}/s in the 2nd second back (of 400/s)`,
  );
}
results.stepTimes = STEP;

// Five clients giving up 2 ms into their requests, under a healthy load (8 x 20 ms at 0.5x); and the same
// run without them, as the control (a busy machine moves the limit too).
async function limitAcross(aborts: number): Promise<{ before: number; after: number }> {
  const { child, port } = await start('floodgate', 'db', 8, 20);
  const limits: Promise<number>[] = [];
  await openLoop({
    port,
    rate: 200,
    ms: 6000,
    timeout: TIMEOUT,
    at: [
      { ms: 2900, run: () => limits.push(limitOf(child)) },
      { ms: 3000, run: () => abortive(port, aborts, 2) },
      { ms: 5900, run: () => limits.push(limitOf(child)) },
    ],
  });
  const [before = 0, after = 0] = await Promise.all(limits);
  await stop(child);
  return { before, after };
}
results.aborts = { ...(await limitAcross(5)), control: await limitAcross(0) };
console.log(`aborts: ${JSON.stringify(results.aborts)}`);

writeFileSync(resolve(import.meta.dirname, '../docs/shed.json'), `${JSON.stringify(results, null, 1)}\n`);
plot(results);

const NAMES: Record<Server, string> = {
  none: 'unprotected',
  'under-pressure': '@fastify/under-pressure',
  floodgate: 'Floodgate gradient2',
  'floodgate-aimd': 'Floodgate aimd',
};
const rows: string[] = [];
for (const shape of results.shapes) {
  const unloaded = shape.points.find((p) => p.server === 'none' && p.load === 0.5)!.p99;
  const least = shape.work === 'cpu' ? 0.8 : 0.9;
  for (const p of shape.points) {
    const met =
      p.load === 0.5
        ? p.shed === 0
        : p.ratio >= least && p.p99 <= 3 * unloaded && (shape.work === 'cpu' || p.p99 <= OBJECTIVE);
    rows.push(
      `| ${shape.name} | ${NAMES[p.server as Server]} | ${p.load}x | ${p.goodput.toFixed(0)} (${p.ratio.toFixed(2)}x) | ${p.p50.toFixed(0)} | ${p.p99.toFixed(0)} | ${(100 * p.shed).toFixed(1)}% (${p.shedFirstSecond}) | ${met ? 'yes' : 'no'} |`,
    );
  }
}
const stepRows = results.step.map(
  (s) =>
    `| ${NAMES[s.server as Server]} | ${s.fifthSecondSlowed.toFixed(0)} (${(s.fifthSecondSlowed / 40).toFixed(2)}x) | ${s.secondSecondBack.toFixed(0)} (${(s.secondSecondBack / 400).toFixed(2)}x) |`,
);
const unloadedNote = results.shapes
  .map((s) => `${s.name} ${s.points.find((p) => p.server === 'none' && p.load === 0.5)!.p99.toFixed(0)} ms`)
  .join(', ');
const loadAfter = loadavg()[0]!;
const section = `## Load shedding under overload (\`bench/shed.ts\`)

${machine()}${quick ? ' (--quick: 3 s per point)' : ''}; load average ${loadBefore.toFixed(1)} before the run,
${loadAfter.toFixed(1)} after (on ${cpus().length} cores: above that, the servers and the load generator wait for CPU,
and every latency and goodput here is distorted). A Fastify server whose handler waits on a simulated
database of fixed parallelism (8 x 20 ms: 400/s, 4 x 50 ms: 80/s, 40 x 100 ms: 400/s), or burns 5 ms of CPU
(200/s). Open loop from another process: Poisson arrivals at 0.5x, 2x and 4x the capacity, ${SECONDS} s per
point, a fresh server per point, latency counted from when each request was due, a ${TIMEOUT / 1000} s client
timeout. Goodput: 200 responses within ${OBJECTIVE} ms, per second. Floodgate runs \`shed\` alone with a
${OBJECTIVE} ms objective and its defaults (event-loop watch on); under-pressure with \`maxEventLoopDelay: 100\`.

| shape | server | offered | goodput/s (x capacity) | p50 ms | p99 ms (admitted) | shed (first second) | targets met |
| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |
${rows.join('\n')}

Targets: at 0.5x nothing shed; at 2x and 4x goodput at least 0.9x capacity (0.8x for CPU), admitted p99 at
most 3x the unloaded p99 (the unprotected server's at 0.5x: ${unloadedNote}) and within ${OBJECTIVE} ms.

The database 10x slower (8 x 200 ms: 40/s) from ${STEP.slow / 1000} s to ${STEP.back / 1000} s, offered 800/s throughout:

| server | goodput/s in the 5th second slowed (of 40/s) | in the 2nd second back (of 400/s) |
| --- | ---: | ---: |
${stepRows.join('\n')}

Five clients giving up 2 ms into their requests, under 0.5x (8 x 20 ms): gradient2's limit
${results.aborts!.before} before, ${results.aborts!.after} three seconds after (the same run without them:
${results.aborts!.control.before}, then ${results.aborts!.control.after}).

![goodput and p99 against offered load](shed.svg)

![goodput over time as the database slows down 10x and recovers](shed-step.svg)
`;
writeSection('shed', section);
console.log(`\n${section}`);
console.log('wrote docs/BENCHMARKS.md (shed), docs/shed.json, docs/shed.svg, docs/shed-step.svg');

// Decisions per second of the memory store, beside rate-limiter-flexible's RateLimiterMemory, the `limiter`
// package and a minimal hand-written Map token bucket, in the same run. Writes docs/BENCHMARKS.md.
//
//   npm run bench                 (or: node --import tsx bench/memory.ts [--quick])
import { execFileSync } from 'node:child_process';
import { RateLimiter as LimiterPkg } from 'limiter';
import { do_not_optimize, measure } from 'mitata';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { Limiter, MemoryStore } from '../packages/floodgate/src/index.js';
import { fmt, machine, writeSection } from './report.js';

const quick = process.argv.includes('--quick');
const KEYS = 100_000;
const WARM_UP_CALLS = 2_000_000;
const keys = Array.from({ length: KEYS }, (_, i) => `user:${i}`);

/** The baseline: the least a token bucket can do (no validation, no decision object, one policy). */
function handWrittenBucket(capacity: number, perMs: number) {
  const buckets = new Map<string, { tokens: number; last: number }>();
  return (key: string): boolean => {
    const now = Date.now();
    let b = buckets.get(key);
    if (b === undefined) {
      b = { tokens: capacity, last: now };
      buckets.set(key, b);
    } else {
      b.tokens = Math.min(capacity, b.tokens + (now - b.last) * perMs);
      b.last = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  };
}

type Case = { name: string; fn: () => unknown };

/**
 * A process as a server's is: several limiters alive, of every algorithm and policy count, on their own
 * stores and on a shared one, each used enough for V8 to have compiled the shared code paths for all of
 * them. A limiter made afterwards is then measured on code that has seen many shapes, not one.
 */
function busyProcess(): void {
  const shapes = [
    { limit: 50, window: '1s' },
    { algorithm: 'gcra', limit: 10, window: '1s', burst: 3 },
    { algorithm: 'fixed-window', limit: 100, window: '1m' },
    { algorithm: 'sliding-window-counter', limit: 100, window: '1m' },
    { algorithm: 'sliding-window-log', limit: 20, window: '10s' },
    [
      { name: 'burst', limit: 10, window: '1s' },
      { name: 'daily', algorithm: 'fixed-window', limit: 10_000, window: '1d' },
    ],
    { algorithm: 'concurrency', limit: 5, leaseTimeout: '1m' },
  ] as const;
  const shared = new MemoryStore();
  const limiters = shapes.flatMap((policies) => [
    new Limiter({ policies: policies as never }),
    new Limiter({ policies: policies as never, store: shared }),
  ]);
  for (let round = 0; round < 20_000; round++) {
    for (const limiter of limiters) {
      const key = keys[round % 1000]!;
      limiter.allowSync(key);
      const d = limiter.consumeSync(key);
      if (d.leaseId !== undefined) void limiter.release(key, d.leaseId);
    }
  }
}

function scenario(path: 'allowed' | 'denied', spread: 'hot' | 'keys', busy: boolean) {
  if (busy) busyProcess();
  // Allowed: a limit never reached during the run. Denied: one request an hour, already spent.
  // Over 100k keys, each key comes back only every few tens of ms, so its bucket must refill slower than
  // that (one token a second here) to still hold state when it does, as a real client's would. With a
  // faster refill every decision would find its state expired and measure re-creation, which the
  // hand-written bucket never does. A hot key takes millions a second, hence its larger limit.
  const limit = path === 'denied' ? 1 : spread === 'hot' ? 1_000_000_000 : 1_000_000;
  const windowMs = path === 'denied' ? 3_600_000 : spread === 'hot' ? 1000 : 1_000_000_000;
  const fg = new Limiter({ policies: { limit, window: windowMs } });
  const rlf = new RateLimiterMemory({ points: limit, duration: windowMs / 1000 });
  const hand = handWrittenBucket(limit, limit / windowMs);
  // The same bucket behind a promise: the most any async API can do, whatever it does inside.
  const handAsync = handWrittenBucket(limit, limit / windowMs);
  const pkg = new Map<string, LimiterPkg>();
  const pkgFor = (key: string) => {
    let l = pkg.get(key);
    if (l === undefined) {
      l = new LimiterPkg({ tokensPerInterval: limit, interval: windowMs });
      pkg.set(key, l);
    }
    return l;
  };
  const n = spread === 'hot' ? 1 : KEYS;
  if (path === 'denied') {
    for (let i = 0; i < n; i++) {
      fg.consumeSync(keys[i]!);
      rlf.consume(keys[i]!).catch(() => {});
      hand(keys[i]!);
      handAsync(keys[i]!);
      pkgFor(keys[i]!).tryRemoveTokens(1);
    }
  }
  let i = 0;
  const cycle = () => {
    i = i + 1 === KEYS ? 0 : i + 1;
    return keys[i]!;
  };
  const next = spread === 'hot' ? () => keys[0]! : cycle;
  const cases: Case[] = [
    // Each contender is its own function literal, handed to mitata as is: a shared wrapper would make one
    // megamorphic call site of them all and measure that instead.
    { name: 'hand-written Map bucket (sync, boolean)', fn: () => do_not_optimize(hand(next())) },
    { name: 'floodgate allowSync (sync, boolean)', fn: () => do_not_optimize(fg.allowSync(next())) },
    { name: 'floodgate consumeSync (sync, Decision)', fn: () => do_not_optimize(fg.consumeSync(next())) },
    {
      name: 'limiter tryRemoveTokens (sync, boolean)',
      fn: () => do_not_optimize(pkgFor(next()).tryRemoveTokens(1)),
    },
    {
      name: 'floodgate consume (async, Decision)',
      fn: async () => do_not_optimize(await fg.consume(next())),
    },
    {
      name: 'rate-limiter-flexible consume (async)',
      fn: async () => do_not_optimize(await rlf.consume(next()).catch((rejection: unknown) => rejection)),
    },
    {
      name: 'hand-written Map bucket behind a promise (async, boolean)',
      fn: async () => do_not_optimize(await Promise.resolve(handAsync(next()))),
    },
  ];
  return cases;
}

async function opsPerSecond(c: Case): Promise<number> {
  // Too few samples stop before V8 has optimised the deeper call chains: mitata's defaults or more.
  const opts = quick ? { min_cpu_time: 200e6 } : { min_cpu_time: 600e6 };
  const stats = await measure(c.fn, opts);
  return 1e9 / stats.p50;
}

type Spread = 'hot' | 'keys';
type Path = 'allowed' | 'denied';
type Process = 'alone' | 'busy';

/** Measures one scenario in this process and prints its medians as JSON. */
async function measureScenario(spread: Spread, path: Path, proc: Process): Promise<void> {
  const cases = scenario(path, spread, proc === 'busy');
  // Warm every contender up in a plain loop first, as a server's traffic would. Left to mitata's own
  // generated loop, V8 sometimes compiles the deeper call chains in a state it keeps for the whole
  // process, up to 10x slower, for any contender of more than a few calls (seen for Floodgate's paths).
  for (const c of cases) {
    for (let k = 0; k < WARM_UP_CALLS; k++) {
      const r = c.fn();
      if (r instanceof Promise) await r;
    }
  }
  const results = new Map<string, number[]>();
  // Interleave rounds so drift on a shared machine hits every contender alike; keep the median.
  for (let round = 0; round < 3; round++) {
    for (const c of cases) {
      const r = await opsPerSecond(c);
      if (process.env.BENCH_DEBUG) console.error(round, c.name, fmt(r));
      results.set(c.name, [...(results.get(c.name) ?? []), r]);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(JSON.stringify([...results].map(([name, v]) => [name, median(v)])));
}

const only = process.argv.find((a) => a.startsWith('--scenario='))?.slice('--scenario='.length);
if (only) {
  const [spread, path, proc = 'alone'] = only.split(':') as [Spread, Path, Process?];
  await measureScenario(spread, path, proc);
  process.exit(0);
}

const PROCESSES = 3;
const rows: string[] = [];
const ratios: Record<string, Record<string, number>> = {};
const SCENARIOS: [Spread, Path, Process][] = [
  ['hot', 'allowed', 'alone'],
  ['hot', 'denied', 'alone'],
  ['keys', 'allowed', 'alone'],
  ['keys', 'denied', 'alone'],
  // The allowed paths again, in a process where 14 other limiters of every shape ran first.
  ['hot', 'allowed', 'busy'],
  ['keys', 'allowed', 'busy'],
];
for (const [spread, path, proc] of SCENARIOS) {
  {
    const label = `${spread === 'hot' ? 'one hot key' : `${KEYS / 1000}k keys`}, ${path}${proc === 'busy' ? ', busy process' : ''}`;
    // A process per scenario, three times: JIT feedback from one scenario must not slow the next, and V8
    // sometimes settles on slower code for a whole process, so the spread across processes is reported.
    const runs: Map<string, number>[] = [];
    for (let proc = 0; proc < PROCESSES; proc++) {
      const out = execFileSync(
        process.execPath,
        [
          '--import',
          'tsx',
          import.meta.filename,
          `--scenario=${spread}:${path}:${proc}`,
          ...(quick ? ['--quick'] : []),
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
      );
      runs.push(new Map<string, number>(JSON.parse(out.trim().split('\n').pop()!)));
    }
    const names = [...runs[0]!.keys()];
    const across = (name: string) => runs.map((r) => r.get(name)!).sort((a, b) => a - b);
    const med = (name: string) => across(name)[Math.floor(PROCESSES / 2)]!;
    const m = new Map(names.map((name) => [name, med(name)]));
    const hand = m.get(names[0]!)!;
    const rlf = m.get(names[5]!)!;
    ratios[label] = {
      'allowSync / hand-written': m.get(names[1]!)! / hand,
      'consumeSync / hand-written': m.get(names[2]!)! / hand,
      'consume / rate-limiter-flexible': m.get(names[4]!)! / rlf,
      'async floor / rate-limiter-flexible': m.get(names[6]!)! / rlf,
      'consume / async floor': m.get(names[4]!)! / m.get(names[6]!)!,
    };
    for (const name of names) {
      const xs = across(name);
      rows.push(
        `| ${label} | ${name} | ${fmt(m.get(name)!)} | ${fmt(xs[0]!)} – ${fmt(xs[xs.length - 1]!)} |`,
      );
    }
    console.log(label, Object.fromEntries([...m].map(([k, v]) => [k, fmt(v)])));
  }
}

const ratioRows = Object.entries(ratios).map(
  ([label, r]) =>
    `| ${label} | ${r['allowSync / hand-written']!.toFixed(2)}x | ${r['consumeSync / hand-written']!.toFixed(2)}x | ${r['consume / rate-limiter-flexible']!.toFixed(1)}x | ${r['async floor / rate-limiter-flexible']!.toFixed(1)}x | ${r['consume / async floor']!.toFixed(2)}x |`,
);
const body = `## Memory store: decisions per second

${machine()}${quick ? ' (quick run)' : ''}. \`bench/memory.ts\`; mitata. Each scenario runs in ${PROCESSES} fresh
processes; in each, every contender is first warmed up with ${(WARM_UP_CALLS / 1e6).toFixed(0)} M calls in a plain loop, then its per-call p50 is
taken over three interleaved rounds (median kept). One policy: a token bucket. "Allowed": a limit never reached
during the run (one hot key: 1e9 per second; 100k keys: 1e6 with one token back a second, so each key still holds
state when it comes round again); "denied": one request per hour, already spent. rate-limiter-flexible rejects its promise on a denial, which is part of
its cost. The \`limiter\` package has no identifiers: one instance per key in a \`Map\`. "Busy process": before the
contenders are made, 14 Floodgate limiters of every algorithm and policy count (on their own stores and on a
shared one) run 20,000 rounds each, as in a server with several limiters alive; the limiter measured is then a
fresh one on code that has seen every shape.

| scenario | contender | decisions/s (median process) | range over ${PROCESSES} processes |
| --- | --- | --- | --- |
${rows.join('\n')}

Targets, as ratios in this run: sync path ≥ 0.8x the hand-written bucket; async API ≥ 3x
rate-limiter-flexible when allowed and ≥ 10x when denied. "Async floor" is the hand-written bucket returning
\`Promise.resolve(boolean)\`: no decision object, no validation, only the promise and its \`await\`. It bounds
what any async API can reach in this harness, so its ratio to rate-limiter-flexible bounds the async targets.

| scenario | allowSync / hand-written | consumeSync / hand-written | consume / rate-limiter-flexible | async floor / rate-limiter-flexible | consume / async floor |
| --- | --- | --- | --- | --- | --- |
${ratioRows.join('\n')}
`;
writeSection('memory', body);
console.log(body);

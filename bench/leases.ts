// Quota leases where they matter: several processes sharing one Redis. Writes the "leases" section of
// docs/BENCHMARKS.md.
// 1. Fairness: 4 processes share one hot identifier (a fixed window of LIMIT per second), offered twice the
//    limit in total at fixed arrival rates, unevenly (one process 70%), for 30 s. Admitted in total against
//    the limit, and each process's share of admissions against its share of the offered load.
// 2. How people deploy it: 4 node:http workers (node:cluster, one port) behind one Redis, one hot client,
//    bare, exact and with leases: requests/s and script calls per decision.
//
//   npm run bench:leases        (or: node --import tsx bench/leases.ts [--quick])
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { RedisServer } from '@floodgate/test-support';
import autocannon from 'autocannon';
import { machine, writeSection } from './report.js';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 5 : 30;
const LIMIT = 1000;
const SHARES = [0.7, 0.1, 0.1, 0.1];
const worker = new URL('./leases-worker.ts', import.meta.url);

const redis = await RedisServer.start();
process.on('exit', () => void redis.kill());

interface Offered {
  offered: number;
  allowed: number;
  scripts: number;
  local: number;
  lapsed: number;
}

/** Each process offers its share of 2 x LIMIT per second, in 10 ms ticks, on one identifier. */
async function fairness(leases: boolean): Promise<Offered[]> {
  const children = SHARES.map(() =>
    fork(worker, ['fair', String(redis.port)], { execArgv: ['--import', 'tsx'], stdio: 'inherit' }),
  );
  await Promise.all(children.map((c) => once(c, 'message')));
  const key = `fair:${leases}:${Date.now()}`;
  const done = children.map((c) => once(c, 'message') as Promise<[Offered]>);
  children.forEach((c, i) => {
    c.send({ key, leases, rate: 2 * LIMIT * SHARES[i]!, seconds: SECONDS, limit: LIMIT });
  });
  const results = (await Promise.all(done)).map(([r]) => r);
  for (const c of children) c.kill();
  return results;
}

interface Served {
  rps: number;
  perDecision: number;
}

/** 4 node:http workers on one port (node:cluster), autocannon from one client: one hot identifier. */
async function deployed(variant: 'bare' | 'exact' | 'leases'): Promise<Served> {
  const primary = fork(worker, ['http', String(redis.port), variant], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const [{ port }] = (await once(primary, 'message')) as [{ port: number }];
  const url = `http://127.0.0.1:${port}/`;
  await autocannon({ url, connections: 64, duration: 1 });
  const r = await autocannon({ url, connections: 64, duration: quick ? 2 : 5 });
  const stats = once(primary, 'message') as Promise<[{ scripts: number; decisions: number }]>;
  primary.send('stats');
  const [{ scripts, decisions }] = await stats;
  primary.kill();
  await once(primary, 'exit');
  return { rps: r.requests.average, perDecision: decisions === 0 ? 0 : scripts / decisions };
}

const fair: Record<string, Offered[]> = {};
for (const leases of [false, true]) {
  fair[String(leases)] = await fairness(leases);
  console.log(leases ? 'leases' : 'exact', fair[String(leases)]);
}
const served: Record<string, Served[]> = { bare: [], exact: [], leases: [] };
for (let run = 0; run < (quick ? 1 : 2); run++) {
  for (const variant of ['bare', 'exact', 'leases'] as const) {
    const s = await deployed(variant);
    served[variant]!.push(s);
    console.log(
      `run ${run + 1} 4 workers ${variant}: ${Math.round(s.rps)} req/s, ${s.perDecision.toFixed(4)} calls/decision`,
    );
  }
}
await redis.stop();

const windows = SECONDS; // one window a second, opened by the first request
const fairRows = Object.entries(fair).map(([leases, results]) => {
  const allowed = results.reduce((s, r) => s + r.allowed, 0);
  const offered = results.reduce((s, r) => s + r.offered, 0);
  const shares = results.map((r, i) => {
    const share = (100 * r.allowed) / allowed;
    return `${share.toFixed(1)}% (offered ${(100 * SHARES[i]!).toFixed(0)}%)`;
  });
  const scripts = results.reduce((s, r) => s + r.scripts, 0);
  const decisions = results.reduce((s, r) => s + r.offered, 0);
  const lapsed = results.reduce((s, r) => s + r.lapsed, 0);
  return `| ${leases === 'true' ? 'leases' : 'exact'} | ${offered.toLocaleString('en-US')} | ${allowed.toLocaleString('en-US')} | ${(allowed / (LIMIT * windows)).toFixed(3)} | ${shares.join(', ')} | ${(scripts / decisions).toFixed(3)} | ${lapsed} |`;
});
const best = (v: string) => served[v]!.reduce((a, b) => (b.rps > a.rps ? b : a));
const bare = best('bare').rps;
const servedRows = ['bare', 'exact', 'leases'].map((v) => {
  const s = best(v);
  const all = served[v]!.map((x) => `${(x.rps / 1000).toFixed(1)}k`).join(', ');
  return `| ${v === 'bare' ? 'bare' : v === 'exact' ? 'Floodgate, Redis' : 'Floodgate, Redis, leases'} | ${Math.round(s.rps).toLocaleString('en-US')} (${all}) | ${(s.rps / bare).toFixed(2)}x | ${v === 'bare' ? '' : s.perDecision.toFixed(4)} |`;
});

writeSection(
  'leases',
  `## Quota leases, several processes on one Redis (\`bench/leases.ts\`)

${machine()}; redis-server started by the script on loopback; ioredis.

**Fairness.** 4 processes share one identifier, a fixed window of ${LIMIT.toLocaleString('en-US')} per second, offered twice
the limit in total at fixed arrival rates (every 10 ms), unevenly: ${SHARES.map((s) => `${100 * s}%`).join(', ')}; ${SECONDS} s, so
${windows} windows (admitted / limit compares with ${(LIMIT * windows).toLocaleString('en-US')}).

| mode | offered | admitted | admitted / limit | share of admissions, by process | script calls / decision | lapsed units |
| --- | ---: | ---: | ---: | --- | ---: | ---: |
${fairRows.join('\n')}

**4 node:http workers** (node:cluster, one port) in front of one Redis, one hot client (autocannon, 64
connections), a limit never reached; best of ${quick ? 1 : 2} runs.

| server | requests/s | vs bare | script calls / decision |
| --- | ---: | ---: | ---: |
${servedRows.join('\n')}
`,
);
console.log('wrote docs/BENCHMARKS.md (leases)');

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RedisServer, requireBinary } from '@floodgate/test-support';
import { stringify } from 'yaml';
import { workersOf } from '../src/cli/proxy.js';
import { restartDelay } from '../src/shared/workers.js';
import { assertUsageErrors, bin, type RunningCommand, startCommand } from './helpers/command.js';
import { metric, statuses } from './helpers/requests.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// `floodgate proxy --workers N`: a primary and N worker processes on one port, spawned for real, deciding
// through a real redis-server.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-proxy-workers-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let up: NodeUpstream;
let redis: RedisServer;
before(async () => {
  up = await startNodeUpstream();
  redis = await RedisServer.start();
});
after(async () => {
  await up.close();
  await redis.stop();
});

const floodgate = (...args: string[]) =>
  spawnSync(process.execPath, [bin, 'proxy', ...args], { encoding: 'utf8', timeout: 20_000 });

/** Each test starts from an empty Redis: the proxies' keys are the same (one client IP, one rule). */
const flushAll = () => {
  const { port } = new URL(redis.url);
  const run = spawnSync(requireBinary('redis-cli'), ['-p', port, 'flushall'], { encoding: 'utf8' });
  assert.equal(run.stdout.trim(), 'OK');
};

type Log = Record<string, unknown>;

/** Waits until the command's log holds what `seen` looks for. */
async function untilLogged(proxy: RunningCommand, seen: (logs: Log[]) => boolean): Promise<void> {
  while (!seen(proxy.logs())) await once(proxy.child.stdout!, 'data');
}

const allServing = (logs: Log[]) => logs.some((l) => l.msg === 'proxying ' + l.url + ' with 2 workers');

/** A proxy with two workers over the test Redis; resolves once both serve. */
async function startWorkers(args: string[]): Promise<RunningCommand> {
  const proxy = await startCommand(['proxy', '--workers', '2', ...args]);
  await untilLogged(proxy, allServing);
  return proxy;
}

/** The statuses of `n` requests sent all at once (each on a connection of its own, as fetch opens them). */
async function parallel(url: string, n: number): Promise<number[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const res = await fetch(url);
      await res.arrayBuffer();
      return res.status;
    }),
  );
}

const adminOf = (proxy: RunningCommand) =>
  proxy.logs().find((l) => typeof l.admin === 'string' && l.workers === 2)!.admin as string;

interface Health {
  status: string;
  workers: { wanted: number; ready: number; restarts: number };
}
const healthOf = async (admin: string) => (await (await fetch(`${admin}/health`)).json()) as Health;

const servingPids = (logs: Log[]) =>
  logs.filter((l) => l.msg === 'worker serving').map((l) => l.pid as number);

const simple = (limit: number, ...more: string[]) => [
  '--upstream',
  up.url,
  '--port',
  '0',
  '--admin-port',
  '0',
  '--redis',
  redis.url,
  '--limit',
  String(limit),
  '--window',
  '1h',
  // A store call timing out on a loaded machine must not be decided in memory (the default), which would
  // admit past the shared limit: it is refused instead, and counted.
  '--on-store-error',
  'closed',
  ...more,
];

describe('floodgate proxy --workers', () => {
  it('two workers share one limit through Redis: exactly L of N parallel requests allowed, served by both', async () => {
    flushAll();
    const proxy = await startWorkers(simple(20));
    try {
      const codes = await parallel(`${proxy.url}/echo`, 60);
      const failures = await metric(adminOf(proxy), 'floodgate_store_errors_total');
      assert.equal(codes.filter((c) => c === 200).length, 20, `store failures: ${failures}`);
      assert.equal(codes.filter((c) => c === 429).length, 40);
      const admin = adminOf(proxy);
      const one = await metric(admin, 'floodgate_proxy_worker_requests_total{worker="1"}');
      const two = await metric(admin, 'floodgate_proxy_worker_requests_total{worker="2"}');
      assert.ok(one > 0 && two > 0, `both workers decided: ${one} and ${two}`);
      assert.equal(one + two, 60);
      // The primary sums the workers' registries.
      assert.equal(
        await metric(admin, 'floodgate_proxy_requests_total{rule="per-ip",decision="allowed"}'),
        20,
      );
      assert.equal(await metric(admin, 'floodgate_proxy_workers'), 2);
      const health = await healthOf(admin);
      assert.deepEqual(health.workers, { wanted: 2, ready: 2, restarts: 0 });
      assert.equal(health.status, 'ok');
    } finally {
      assert.equal(await proxy.stop(), 0);
    }
  });

  it('with quota leases (one set per worker), never more than L of N parallel requests allowed', async () => {
    flushAll();
    const proxy = await startWorkers(simple(20, '--leases'));
    try {
      for (let round = 0; round < 3; round++) {
        const allowed = (await parallel(`${proxy.url}/echo`, 40)).filter((c) => c === 200).length;
        assert.ok(allowed <= 20, `round ${round}: ${allowed} allowed`);
      }
      const total = await metric(
        adminOf(proxy),
        'floodgate_proxy_requests_total{rule="per-ip",decision="allowed"}',
      );
      assert.ok(total > 0 && total <= 20, `${total} allowed in all`);
    } finally {
      assert.equal(await proxy.stop(), 0);
    }
  });

  it('a worker killed with SIGKILL is started again, and the proxy keeps answering meanwhile', async () => {
    flushAll();
    const proxy = await startWorkers(simple(1000));
    try {
      const [first, second] = servingPids(proxy.logs());
      process.kill(first!, 'SIGKILL');
      await untilLogged(proxy, (logs) => logs.some((l) => l.msg === 'worker exited; starting another'));
      // The other worker serves while the new one starts.
      assert.deepEqual(await statuses(`${proxy.url}/echo`, 3), [200, 200, 200]);
      await untilLogged(proxy, (logs) => servingPids(logs).length === 3);
      const pids = servingPids(proxy.logs());
      assert.ok(!pids.slice(2).includes(first!) && !pids.slice(2).includes(second!), 'a new process');
      assert.deepEqual(await parallel(`${proxy.url}/echo`, 10), Array(10).fill(200));
      const admin = adminOf(proxy);
      assert.equal(await metric(admin, 'floodgate_proxy_worker_restarts_total'), 1);
      const health = await healthOf(admin);
      assert.deepEqual(health.workers, { wanted: 2, ready: 2, restarts: 1 });
    } finally {
      assert.equal(await proxy.stop(), 0);
    }
  });

  it('SIGTERM answers the request in flight, then every worker stops and the primary exits 0', async () => {
    const proxy = await startWorkers(simple(1000));
    const reached = up.nextRequest();
    const slow = fetch(`${proxy.url}/slow`);
    assert.equal(await reached, '/slow');
    const exited = proxy.stop();
    const res = await slow;
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'slow');
    assert.equal(await exited, 0);
    const stopped = proxy.logs().filter((l) => l.msg === 'stopped');
    assert.deepEqual(stopped.map((l) => l.worker ?? 'primary').sort(), [1, 2, 'primary']);
  });

  it('a stop while the workers start is clean; a start that cannot work fails once, saying why once', async () => {
    const early = await startCommand(['proxy', '--workers', '2', ...simple(10)]);
    assert.equal(await early.stop(), 0, 'stopped as soon as the first worker serves');
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const { port } = blocker.address() as { port: number };
    try {
      const busy = floodgate(
        ...['--upstream', up.url, '--port', String(port), '--admin-port', '0'],
        ...['--redis', redis.url, '--workers', '2'],
      );
      assert.equal(busy.status, 1, busy.stderr);
      const said = busy.stderr.match(/already in use; choose another with --port or "listen"/g) ?? [];
      assert.equal(said.length, 1, busy.stderr);
    } finally {
      blocker.close();
    }
  });

  it('SIGHUP to the primary reloads the configuration in every worker', async () => {
    const file = join(dir, 'hup.yaml');
    const config = (limit: number) =>
      stringify({
        upstream: up.url,
        listen: 0,
        admin: 0,
        store: redis.url,
        rules: [{ name: `r${limit}`, policies: [{ limit, window: '1h' }] }],
      });
    writeFileSync(file, config(1));
    const proxy = await startWorkers(['--config', file]);
    try {
      writeFileSync(file, config(5));
      proxy.child.kill('SIGHUP');
      // A worker may also see the file change and reload on its own: each says so at least once.
      await untilLogged(proxy, (logs) => {
        const reloaded = logs.filter((l) => l.msg === 'configuration reloaded').map((l) => l.worker);
        return reloaded.includes(1) && reloaded.includes(2);
      });
      assert.equal(proxy.child.exitCode, null, 'SIGHUP does not stop it');
      const health = await healthOf(adminOf(proxy));
      assert.equal(health.workers.ready, 2);
    } finally {
      assert.equal(await proxy.stop(), 0);
    }
  });

  it('is refused at start: more than one with the memory store, or a value that is no count', () => {
    const file = join(dir, 'memory.yaml');
    writeFileSync(file, stringify({ upstream: up.url, listen: 0, admin: 0, rules: [] }));
    const memory =
      /--workers 2: with the memory store each worker would count alone, admitting 2 times every limit/;
    assertUsageErrors(floodgate, [
      [['--upstream', up.url, '--workers', '2'], memory],
      [['--config', file, '--workers', '2'], memory],
      ...['0', '-1', '1.5', 'abc', '10000'].map((value): [string[], RegExp] => [
        ['--upstream', up.url, '--redis', redis.url, `--workers=${value}`],
        new RegExp(
          `--workers must be a whole number from 1 to 9999, or "auto"; got "${value.replace('.', '\\.')}"`,
        ),
      ]),
    ]);
  });

  it('defaults to one per core with Redis, 1 with memory; restarts back off after quick deaths', () => {
    assert.equal(workersOf(undefined, 'redis://127.0.0.1:6379', 8), 8);
    assert.equal(workersOf('auto', 'redis://127.0.0.1:6379', 8), 8);
    assert.equal(workersOf(undefined, 'memory', 8), 1);
    assert.equal(workersOf('auto', 'memory', 8), 1);
    assert.equal(workersOf('1', 'memory', 8), 1);
    assert.equal(workersOf('3', 'redis://127.0.0.1:6379', 8), 3);
    assert.deepEqual([1, 2, 3, 4, 10, 20].map(restartDelay), [0, 250, 500, 1000, 15_000, 15_000]);
  });
});

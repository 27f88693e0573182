import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RedisServer, send } from '@floodgate/test-support';
import { pino } from 'pino';
import { type RunningRls, startRls } from '../src/rls/rls.js';
import { resolveConfig } from '../src/serve/config.js';
import { type Running, serve } from '../src/serve/serve.js';
import { ask, clientOf } from './helpers/rls.js';

// `floodgate rls` and `floodgate serve` join the fleet on a Redis store as the proxy does (the runtime
// publishes for every command): two processes of one command on one real Redis, and the fleet view of
// either one sums both. Each process publishes when asked here, not on its 5 s timer.

interface FleetLimiter {
  name: string;
  processes: number;
  top: {
    requests: { total: number; bound: number; clients: { count: number }[] };
    refusals: { total: number; clients: { count: number }[] };
  };
}

interface FleetProcess {
  id: string;
  requests: number;
  refusals: number;
}

async function fleetOf(adminUrl: string): Promise<{ processes: FleetProcess[]; limiters: FleetLimiter[] }> {
  const res = await send(`${adminUrl}/api/fleet?window=1m`);
  assert.equal(res.status, 200, res.body);
  return JSON.parse(res.body);
}

describe('floodgate rls: the fleet, two services on one Redis', () => {
  const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-fleet-'));
  const path = join(dir, 'fleet.yaml');
  writeFileSync(
    path,
    'domain: f\ndescriptors:\n  - key: tenant\n    rate_limit: { unit: hour, requests_per_unit: 6 }\n',
  );
  let redis: RedisServer;
  const services: RunningRls[] = [];
  before(async () => {
    redis = await RedisServer.start();
    for (let i = 0; i < 2; i++)
      services.push(
        await startRls(
          path,
          { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, store: redis.url },
          { log: pino({ level: 'silent' }), watch: false },
        ),
      );
  });
  after(async () => {
    await Promise.all(services.map((s) => s.stop()));
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("sums both services' decisions: 9 calls for one tenant over two processes, 3 refused fleet-wide", async () => {
    const call = { domain: 'f', descriptors: [{ entries: [{ key: 'tenant', value: 'acme' }] }] };
    const [a, b] = services as [RunningRls, RunningRls];
    for (const [service, n] of [
      [a, 5],
      [b, 4],
    ] as const) {
      const client = clientOf(service.address);
      try {
        for (let i = 0; i < n; i++) await ask(client, call);
      } finally {
        client.close();
      }
    }
    assert.ok(a.fleet && b.fleet, 'with Redis, each service is in the fleet');
    await Promise.all(services.map((s) => s.fleet!.publish()));
    for (const s of services) {
      const fleet = await fleetOf(s.adminUrl!);
      assert.equal(fleet.processes.length, 2);
      assert.equal(fleet.limiters.length, 1);
      const [tenant] = fleet.limiters as [FleetLimiter];
      assert.equal(tenant.processes, 2);
      assert.equal(tenant.top.requests.total, 9);
      assert.deepEqual(
        tenant.top.requests.clients.map((c) => c.count),
        [9],
      );
      assert.equal(tenant.top.requests.bound, 0, 'no summary was full: the counts are exact');
      assert.equal(tenant.top.refusals.total, 3, 'the limit of 6 is shared through Redis');
      assert.deepEqual(
        fleet.processes.map((p) => [p.requests, p.refusals]).sort((x, y) => y[0]! - x[0]!),
        [
          [5, 0],
          [4, 3],
        ],
        "each process's own share: the second came past the limit",
      );
    }
  });

  it('a service on the memory store is in no fleet: /api/fleet says so', async () => {
    const alone = await startRls(
      path,
      { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, store: 'memory' },
      { log: pino({ level: 'silent' }), watch: false },
    );
    try {
      assert.equal(alone.fleet, undefined);
      assert.equal((await send(`${alone.adminUrl}/api/fleet`)).status, 404);
    } finally {
      await alone.stop();
    }
  });
});

describe('floodgate serve: the fleet, two APIs on one Redis', () => {
  let redis: RedisServer;
  const apis: Running[] = [];
  const auth = `Basic ${Buffer.from('john_doe:EXAMPLE_PASSWORD').toString('base64')}`;
  before(async () => {
    redis = await RedisServer.start();
    // Each with its own database in memory, seeded with the tutorial's user; the limit (5 a minute per
    // user) is shared through Redis.
    const config = resolveConfig({ port: '0', adminPort: '0', db: 'sqlite::memory:', redis: redis.url }, {});
    for (let i = 0; i < 2; i++) apis.push(await serve(config, { log: pino({ level: 'silent' }) }));
  });
  after(async () => {
    await Promise.all(apis.map((s) => s.stop()));
    await redis?.stop();
  });

  it("sums both APIs' traffic: 7 requests of one user over two processes, 2 refused fleet-wide", async () => {
    const [a, b] = apis as [Running, Running];
    for (const [api, n] of [
      [a, 4],
      [b, 3],
    ] as const)
      for (let i = 0; i < n; i++) await send(`${api.url}/continents`, { headers: { authorization: auth } });
    assert.ok(a.fleet && b.fleet, 'with Redis, each API is in the fleet');
    await Promise.all(apis.map((s) => s.fleet!.publish()));
    for (const s of apis) {
      const fleet = await fleetOf(s.adminUrl!);
      assert.equal(fleet.processes.length, 2);
      const api = fleet.limiters.find((l) => l.name === 'api');
      assert.ok(api, JSON.stringify(fleet.limiters.map((l) => l.name)));
      assert.equal(api.processes, 2);
      assert.equal(api.top.requests.total, 7);
      assert.deepEqual(
        api.top.requests.clients.map((c) => c.count),
        [7],
      );
      assert.equal(api.top.refusals.total, 2, 'the limit of 5 is shared through Redis');
    }
    const one = JSON.parse((await send(`${a.adminUrl}/api/limiters/api/top?window=1m`)).body);
    assert.equal(one.requests.total, 4, 'a process alone sees only its own');
  });
});

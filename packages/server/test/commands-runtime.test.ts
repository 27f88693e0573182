import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { type Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { rateLimitService } from '../src/rls/protocol.js';
import { type RunningCommand, startCommand } from './helpers/command.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// Every command runs on one runtime: its Redis store's failures are counted in one series, and a stop
// closes the store (what leases give back included) before the client quits, with requests in flight.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-runtime-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const rlsConfig = join(dir, 'rls.yaml');
writeFileSync(
  rlsConfig,
  'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 1000 }\n',
);

let up: NodeUpstream;
before(async () => {
  up = await startNodeUpstream();
});
after(() => up.close());

const basic = (credentials: string) => `Basic ${Buffer.from(credentials).toString('base64')}`;

type Call = (
  request: object,
  callback: (error: ServiceError | null, reply: { overall_code: string }) => void,
) => void;

function rlsClient(cmd: RunningCommand) {
  const Service = rateLimitService();
  return new Service(cmd.url.slice('grpc://'.length), credentials.createInsecure()) as unknown as Client & {
    ShouldRateLimit: Call;
  };
}

function rlsCall(client: ReturnType<typeof rlsClient>, value: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client.ShouldRateLimit({ domain: 'd', descriptors: [{ entries: [{ key: 'k', value }] }] }, (e, r) =>
      e === null ? resolve(r.overall_code) : reject(e),
    ),
  );
}

/**
 * Each command, started over `redis` (with `leases` for those that take them), and a request it answers
 * (its status or code) for `client`, an identifier of the test's choosing where the command keys by one.
 */
const COMMANDS: {
  name: string;
  start(redis: string, leases: boolean): Promise<RunningCommand>;
  request(cmd: RunningCommand, client?: string): Promise<string>;
}[] = [
  {
    // open for the API, fallback for logins: two stores on one client, one count. An unknown user costs
    // two store calls (per user and IP, per IP) and a hash check, and is answered 401.
    name: 'serve',
    start: (redis) =>
      startCommand(
        ['serve', '--port', '0', '--admin-port', '0', '--redis', redis, '--on-store-error', 'open'],
        { cwd: mkdtempSync(join(dir, 'serve-')) },
      ),
    request: async (cmd, client = 'nobody') => {
      const res = await fetch(`${cmd.url}/continents`, { headers: { authorization: basic(`${client}:pw`) } });
      await res.arrayBuffer();
      return String(res.status);
    },
  },
  {
    name: 'proxy',
    start: (redis, leases) =>
      startCommand([
        'proxy',
        ...['--upstream', up.url, '--port', '0', '--admin-port', '0', '--redis', redis],
        ...(leases ? ['--leases'] : []),
      ]),
    request: async (cmd) => {
      const res = await fetch(`${cmd.url}/slow`);
      return `${res.status} ${await res.text()}`;
    },
  },
  {
    name: 'rls',
    start: (redis, leases) =>
      startCommand([
        'rls',
        ...['--config', rlsConfig, '--port', '0', '--admin-port', '0', '--redis', redis],
        ...(leases ? ['--leases'] : []),
      ]),
    request: async (cmd, client = 'v') => {
      const rls = rlsClient(cmd);
      try {
        return await rlsCall(rls, client);
      } finally {
        rls.close();
      }
    },
  },
];

const ANSWER: Record<string, string> = { serve: '401', proxy: '200 slow', rls: 'OK' };

function adminOf(cmd: RunningCommand): string {
  const line = cmd.logs().find((l) => typeof l.admin === 'string');
  assert.ok(line, 'the admin URL is logged');
  return line.admin as string;
}

/**
 * Sends a request that stays in flight until `release`: the proxy's upstream holds it 300 ms; for the
 * others, Redis holds its store call (writes paused) until released.
 */
async function holdRequest(name: string, cmd: RunningCommand, redis: Redis) {
  const command = COMMANDS.find((c) => c.name === name)!;
  if (name === 'proxy') {
    const arrived = up.nextRequest();
    const answer = command.request(cmd);
    await arrived;
    return { answer, release: async () => {} };
  }
  await redis.call('CLIENT', 'PAUSE', '30000', 'WRITE');
  // A client seen for the first time: decided in Redis, never from a lease.
  const answer = command.request(cmd, 'first-seen');
  while (!/blocked_clients:[1-9]/.test(await redis.info('clients'))) {}
  return { answer, release: () => redis.call('CLIENT', 'UNPAUSE') };
}

describe('one runtime for every command', () => {
  for (const command of COMMANDS) {
    it(`${command.name}: a Redis outage is counted once, in one floodgate_store_errors_total`, {
      timeout: 60_000,
    }, async () => {
      const redis = await RedisServer.start();
      const cmd = await command.start(redis.url, false);
      try {
        assert.equal(await command.request(cmd), ANSWER[command.name], 'before the outage');
        await redis.kill();
        await command.request(cmd); // decided by the outage policy
        const text = await (await fetch(`${adminOf(cmd)}/metrics`)).text();
        const lines = text.split('\n').filter((l) => l.includes('floodgate_store_errors_total'));
        assert.deepEqual(
          lines.filter((l) => l.startsWith('#')).map((l) => l.split(' ').slice(0, 3).join(' ')),
          ['# HELP floodgate_store_errors_total', '# TYPE floodgate_store_errors_total'],
        );
        const samples = lines.filter((l) => !l.startsWith('#'));
        assert.equal(samples.length, 1, samples.join('\n'));
        const counted = Number(samples[0]!.split(' ')[1]);
        assert.equal(await cmd.stop(), 0);
        const logged = cmd.logs().filter((l) => String(l.msg).startsWith('rate-limit store failed'));
        assert.ok(counted >= 1, 'the outage is counted');
        assert.equal(counted, logged.length, 'each failed call counted once, and logged once');
      } finally {
        if (cmd.child.exitCode === null) cmd.child.kill('SIGKILL');
        await redis.stop();
      }
    });

    it(`${command.name}: a stop with a request in flight answers it, closes the Redis store, exits 0`, {
      timeout: 60_000,
    }, async () => {
      const redis = await RedisServer.start();
      const cmd = await command.start(redis.url, true);
      const client = new Redis(redis.port, '127.0.0.1');
      let stderr = '';
      cmd.child.stderr!.on('data', (d) => (stderr += d));
      try {
        // Enough traffic that the leases (proxy, rls) hold units to give back when the store closes.
        for (let i = 0; i < 5; i++) assert.equal(await command.request(cmd), ANSWER[command.name]);
        const held = await holdRequest(command.name, cmd, client);
        const exited = once(cmd.child, 'exit');
        cmd.child.kill('SIGTERM');
        await held.release();
        assert.equal(await held.answer, ANSWER[command.name], 'the request in flight is answered');
        const [code] = await exited;
        assert.equal(code, 0, stderr);
        assert.equal(stderr, '', 'nothing uncaught');
        assert.ok(cmd.logs().some((l) => l.msg === 'stopped'));
      } finally {
        client.disconnect();
        if (cmd.child.exitCode === null) cmd.child.kill('SIGKILL');
        await redis.stop();
      }
    });
  }
});

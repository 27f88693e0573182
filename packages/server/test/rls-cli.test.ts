import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RedisServer } from '@floodgate/test-support';
import { type Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { rateLimitService } from '../src/rls/protocol.js';
import { assertUsageErrors, bin, startCommand } from './helpers/command.js';

// The real `floodgate rls` command, spawned as a child process and spoken to over gRPC.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const floodgate = (...args: string[]) =>
  spawnSync(process.execPath, [bin, 'rls', ...args], { encoding: 'utf8', timeout: 20_000 });

function config(name: string, limit: number): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    `domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: ${limit} }\n`,
  );
  return path;
}

type Call = (
  request: object,
  callback: (error: ServiceError | null, reply: { overall_code: string }) => void,
) => void;

async function codes(address: string, n: number): Promise<string[]> {
  const Service = rateLimitService();
  const client = new Service(address, credentials.createInsecure()) as unknown as Client & {
    ShouldRateLimit: Call;
  };
  const out: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const reply = await new Promise<{ overall_code: string }>((resolve, reject) =>
        client.ShouldRateLimit(
          { domain: 'd', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] },
          (e, r) => (e === null ? resolve(r) : reject(e)),
        ),
      );
      out.push(reply.overall_code);
    }
  } finally {
    client.close();
  }
  return out;
}

describe('floodgate rls (the command)', () => {
  it('serves the file it is given, reloads it on SIGHUP, and stops on SIGTERM', async () => {
    const file = config('hup.yaml', 1);
    const rls = await startCommand(['rls', '--config', file, '--port', '0', '--admin-port', '0']);
    const address = rls.url.slice('grpc://'.length);
    assert.deepEqual(await codes(address, 2), ['OK', 'OVER_LIMIT']);
    config('hup.yaml', 5);
    rls.child.kill('SIGHUP');
    while (!rls.logs().some((l) => l.msg === 'configuration reloaded')) await once(rls.child.stdout!, 'data');
    assert.deepEqual(await codes(address, 1), ['OK']);
    assert.equal(await rls.stop(), 0);
  });

  it("--shadow and SHADOW_MODE=true (upstream's variable) refuse nothing; without them the limit holds", async () => {
    const file = config('shadow.yaml', 1);
    for (const [args, env, expected] of [
      [['--shadow'], {}, ['OK', 'OK', 'OK']],
      [[], { SHADOW_MODE: 'true' }, ['OK', 'OK', 'OK']],
      [[], { SHADOW_MODE: 'false' }, ['OK', 'OVER_LIMIT', 'OVER_LIMIT']],
    ] as const) {
      const rls = await startCommand(['rls', '--config', file, '--port', '0', '--no-admin', ...args], {
        env,
      });
      try {
        assert.deepEqual(
          await codes(rls.url.slice('grpc://'.length), 3),
          expected,
          JSON.stringify([args, env]),
        );
      } finally {
        assert.equal(await rls.stop(), 0);
      }
    }
  });

  it('fails at start with a message naming the bad flag or field', () => {
    const good = config('good.yaml', 1);
    const cases: [string[], RegExp][] = [
      [[], /give --config/],
      [['--config', join(dir, 'none.yaml')], /cannot read ".*none\.yaml": ENOENT/],
      [['--config', good, '--port', 'x'], /--port must be a port number from 0 to 65535; got "x"/],
      [['--config', good, '--leases'], /--leases needs --redis/],
      [
        ['--config', good, '--no-admin', '--admin-port', '1'],
        /--admin-port cannot be combined with --no-admin/,
      ],
      [
        ['--config', good, '--redis', 'redis://x:1/zz'],
        /--redis: the path of redis:\/\/x:1\/zz must be a database number/,
      ],
    ];
    assertUsageErrors(floodgate, cases);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, request_per_unit: 5 }\n',
    );
    const run = floodgate('--config', bad);
    assert.equal(run.status, 2);
    assert.match(run.stderr, /bad\.yaml: descriptors\[0\]\.rate_limit: unknown field "request_per_unit"/);
  });

  it('exits 1 when its environment is wrong: a port in use, Redis unreachable', async () => {
    const good = config('env.yaml', 1);
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const { port } = blocker.address() as { port: number };
    try {
      const busy = floodgate('--config', good, '--port', String(port), '--admin-port', '0');
      assert.equal(busy.status, 1, busy.stderr);
      assert.match(busy.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`));
      // floodgate's message, and nothing of grpc-js's before it.
      assert.match(busy.stderr, /^floodgate: /, busy.stderr);
      assert.doesNotMatch(busy.stderr, /No address added/);
      const admin = floodgate('--config', good, '--port', '0', '--admin-port', String(port));
      assert.equal(admin.status, 1);
      assert.match(admin.stderr, /already in use; choose another with --admin-port/);
    } finally {
      blocker.close();
    }
    const redis = floodgate(
      '--config',
      good,
      '--port',
      '0',
      '--no-admin',
      '--redis',
      'redis://:hunter2@127.0.0.1:1',
    );
    assert.equal(redis.status, 1);
    assert.match(redis.stderr, /cannot connect to Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1/);
    assert.doesNotMatch(redis.stderr, /hunter2/);
  });
});

describe('floodgate rls --on-store-error', () => {
  it('is refused without --redis, or with a bad value (exit 2)', () => {
    const good = config('outage-flags.yaml', 1);
    assertUsageErrors(floodgate, [
      [['--config', good, '--on-store-error', 'open'], /--on-store-error needs --redis/],
      [
        ['--config', good, '--redis', 'redis://127.0.0.1:1', '--on-store-error', 'shut'],
        /--on-store-error must be one of open, closed, fallback; got "shut"/,
      ],
    ]);
  });

  it('open: OK past the limit once the redis-server is killed', async () => {
    const redis = await RedisServer.start();
    const file = config('outage-open.yaml', 1);
    const rls = await startCommand([
      'rls',
      '--config',
      file,
      '--port',
      '0',
      '--no-admin',
      '--redis',
      redis.url,
      '--on-store-error',
      'open',
    ]);
    try {
      const address = rls.url.slice('grpc://'.length);
      assert.deepEqual(await codes(address, 1), ['OK']);
      await redis.kill();
      assert.deepEqual(await codes(address, 3), ['OK', 'OK', 'OK']);
    } finally {
      await rls.stop();
      await redis.stop();
    }
  });
});

describe('floodgate rls --check', () => {
  it('validates a file or a folder and exits 0 saying what it holds; an invalid one exits 1 naming the file and field', () => {
    const peer = fileURLToPath(new URL('./peer/envoyproxy-ratelimit/', import.meta.url));
    const good = floodgate('--check', join(peer, 'config/basic_config.yaml'));
    assert.equal(good.status, 0, good.stderr);
    assert.match(good.stdout, /basic_config\.yaml: valid: test-domain \(12 descriptors\)/);
    const folder = floodgate('--check', join(peer, 'integration'));
    assert.equal(folder.status, 0, folder.stderr);
    assert.match(folder.stdout, /valid: another \(\d+ descriptors\), basic \(\d+ descriptors\)/);
    const bad = floodgate('--check', join(peer, 'config/bad_limit_unit.yaml'));
    assert.equal(bad.status, 1);
    assert.match(
      bad.stderr,
      /^floodgate: .*bad_limit_unit\.yaml: descriptors\[0\]\.rate_limit\.unit: must be one of/,
    );
    assert.equal(bad.stdout, '');
    const missing = floodgate('--check', join(dir, 'none.yaml'));
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cannot read .*none\.yaml/);
  });

  it('--merge-domains checks a domain spread over files as one; without it, the second file is refused', () => {
    const merged = mkdtempSync(join(dir, 'merged-'));
    const peer = fileURLToPath(new URL('./peer/envoyproxy-ratelimit/config/', import.meta.url));
    for (const f of ['merge_domain_key1.yaml', 'merge_domain_key2.yaml'])
      writeFileSync(join(merged, f), readFileSync(join(peer, f)));
    const joined = floodgate('--check', merged, '--merge-domains');
    assert.equal(joined.status, 0, joined.stderr);
    assert.match(joined.stdout, /valid: test-domain \(2 descriptors\)/);
    const refused = floodgate('--check', merged);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /merge_domain_key2\.yaml: domain "test-domain" is also in/);
  });
});

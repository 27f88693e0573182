import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { stringify } from 'yaml';
import { assertUsageErrors, bin, halfSentRequest, startCommand } from './helpers/command.js';
import { statuses as codes } from './helpers/requests.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// The real `floodgate proxy` command, spawned as a child process.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-proxy-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let up: NodeUpstream;
before(async () => {
  up = await startNodeUpstream();
});
after(() => up.close());

const floodgate = (...args: string[]) =>
  spawnSync(process.execPath, [bin, 'proxy', ...args], { encoding: 'utf8', timeout: 20_000 });

const startProxy = (args: string[]) => startCommand(['proxy', ...args]);
/** Flags every test's proxy needs: the test upstream, and free ports. */
const onFreePorts = () => ['--upstream', up.url, '--port', '0', '--admin-port', '0'];

describe('floodgate proxy (command)', () => {
  it('a stop waits for requests in flight at most --grace, then closes what is left', {
    timeout: 60_000,
  }, async () => {
    const proxy = await startProxy([...onFreePorts(), '--grace', '300ms']);
    const socket = await halfSentRequest(proxy.url);
    const closed = once(socket, 'close');
    assert.equal(await proxy.stop(), 0);
    await closed;
    assert.ok(proxy.logs().some((l) => l.msg === 'grace period over: closing the connections still open'));
    const bad = floodgate(...onFreePorts(), '--grace', 'soon');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--grace: must be a duration/);
  });

  it('runs from flags alone: one limit per client IP, then stops on SIGTERM', async () => {
    const proxy = await startProxy([...onFreePorts(), '--limit', '2', '--window', '1m']);
    assert.deepEqual(await codes(`${proxy.url}/echo`, 3), [200, 200, 429]);
    assert.equal(await proxy.stop(), 0);
  });

  it('--no-admin starts no admin listener; --algorithm concurrency holds a slot for each request in flight', async () => {
    const proxy = await startProxy([
      '--upstream',
      up.url,
      '--port',
      '0',
      '--no-admin',
      '--algorithm',
      'concurrency',
      '--limit',
      '1',
      '--window',
      '1m',
    ]);
    try {
      const start = proxy.logs().find((l) => typeof l.url === 'string')!;
      assert.equal(start.admin, undefined, 'no admin URL');
      assert.deepEqual(
        await codes(`${proxy.url}/echo`, 3),
        [200, 200, 200],
        'each slot given back when its request ends',
      );
      const slow = fetch(`${proxy.url}/slow`); // holds the only slot for a while
      await new Promise((r) => setImmediate(r));
      let refused = 0;
      for (let i = 0; i < 50 && refused === 0; i++)
        refused += (await codes(`${proxy.url}/echo`, 1)).filter((c) => c === 429).length;
      assert.equal(refused, 1, 'a second request while the first holds the slot');
      assert.equal((await slow).status, 200);
    } finally {
      await proxy.stop();
    }
  });

  it('reloads its configuration file on SIGHUP', async () => {
    const file = join(dir, 'hup.yaml');
    writeFileSync(
      file,
      stringify({
        upstream: up.url,
        listen: 0,
        admin: 0,
        rules: [{ name: 'r', policies: [{ limit: 1, window: '1m' }] }],
      }),
    );
    const proxy = await startProxy(['--config', file]);
    assert.deepEqual(await codes(`${proxy.url}/a`, 2), [200, 429]);
    proxy.child.kill('SIGHUP');
    while (!proxy.logs().some((l) => l.msg === 'configuration reloaded'))
      await once(proxy.child.stdout!, 'data');
    assert.equal(proxy.child.exitCode, null, 'SIGHUP does not stop it');
    assert.equal(await proxy.stop(), 0);
  });

  it('fails at start with a message naming the bad flag or field', () => {
    const cases: [string[], RegExp][] = [
      [[], /give --config FILE\.yaml, or --upstream URL/],
      [['--upstream', 'ftp://x'], /--upstream: must be a URL like "http:\/\/127\.0\.0\.1:8000"/],
      [['--upstream', up.url, '--limit', '0'], /--limit: must be a positive integer; got 0/],
      [
        ['--upstream', up.url, '--window', 'soon'],
        /--window: must be a positive integer of milliseconds or a string like "10s"/,
      ],
      [['--upstream', up.url, '--port', 'x'], /--port must be a port number from 0 to 65535; got "x"/],
      [['--upstream', up.url, '--redis', 'mongodb://x'], /--redis: must be "memory", redis:\/\/host:port/],
      [['--upstream', up.url, '--colour'], /^floodgate: unknown option '--colour'/],
    ];
    assertUsageErrors(floodgate, cases);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      stringify({
        upstream: up.url,
        rules: [{ name: 'r', key: { jwt: 'sub' }, policies: [{ limit: 1, window: '1m' }] }],
      }),
    );
    const run = floodgate('--config', bad);
    assert.equal(run.status, 2);
    assert.match(run.stderr, /bad\.yaml: rules\[0\]\.key\.jwt: needs a top-level "jwt" section/);
    const mixed = floodgate('--config', bad, '--limit', '5');
    assert.equal(mixed.status, 2);
    assert.match(mixed.stderr, /--limit cannot be combined with --config/);
    const secret = join(dir, 'secret.yaml');
    writeFileSync(
      secret,
      stringify({
        upstream: up.url,
        admin: false,
        listen: 0,
        jwt: { secretEnv: 'FLOODGATE_TEST_NO_SUCH_VAR' },
      }),
    );
    const noSecret = floodgate('--config', secret);
    assert.equal(noSecret.status, 2);
    assert.match(
      noSecret.stderr,
      /jwt\.secretEnv: environment variable FLOODGATE_TEST_NO_SUCH_VAR must hold a secret/,
    );
  });

  it('exits 1 when its environment is wrong: a port in use, Redis unreachable', async () => {
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const { port } = blocker.address() as { port: number };
    try {
      const busy = floodgate('--upstream', up.url, '--port', String(port), '--admin-port', '0');
      assert.equal(busy.status, 1);
      assert.match(
        busy.stderr,
        new RegExp(
          `port ${port} on 127\\.0\\.0\\.1 is already in use; choose another with --port or "listen"`,
        ),
      );
      const admin = floodgate('--upstream', up.url, '--port', '0', '--admin-port', String(port));
      assert.equal(admin.status, 1);
      assert.match(admin.stderr, /already in use; choose another with --admin-port or "admin"/);
    } finally {
      blocker.close();
    }
    const redis = floodgate(...onFreePorts(), '--redis', 'redis://127.0.0.1:1');
    assert.equal(redis.status, 1);
    assert.match(redis.stderr, /cannot connect to Redis at redis:\/\/127\.0\.0\.1:1/);
  });
});

describe('floodgate proxy --on-store-error', () => {
  it('is refused without --redis, with --config, or with a bad value (exit 2)', () => {
    const file = join(dir, 'outage.yaml');
    writeFileSync(file, stringify({ upstream: up.url, rules: [] }));
    assertUsageErrors(floodgate, [
      [['--upstream', up.url, '--on-store-error', 'closed'], /--on-store-error needs --redis/],
      [['--config', file, '--on-store-error', 'closed'], /--on-store-error cannot be combined with --config/],
      [
        ['--upstream', up.url, '--redis', 'redis://127.0.0.1:1', '--on-store-error', 'no'],
        /--on-store-error: /,
      ],
    ]);
  });

  it('closed: 503 once the redis-server is killed', async () => {
    const redis = await RedisServer.start();
    const proxy = await startProxy([...onFreePorts(), '--redis', redis.url, '--on-store-error', 'closed']);
    try {
      assert.deepEqual(await codes(proxy.url, 1), [200]);
      await redis.kill();
      assert.deepEqual(await codes(proxy.url, 2), [503, 503]);
    } finally {
      await proxy.stop();
      await redis.stop();
    }
  });
});

describe('floodgate proxy --check and start-up warnings', () => {
  const write = (name: string, data: unknown) => {
    const file = join(dir, name);
    writeFileSync(file, stringify(data));
    return file;
  };
  const rule = (name: string, match?: unknown) => ({
    name,
    ...(match === undefined ? {} : { match }),
    policies: { limit: 5, window: '1m' },
  });

  it('--check FILE: exit 0 for a valid file, saying what it never limits; 1 for an invalid one, naming the field', () => {
    const good = write('good.yaml', {
      upstream: up.url,
      rules: [rule('login', { path: '/login' }), rule('all')],
    });
    const ok = floodgate('--check', good);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /good\.yaml: the configuration is valid \(2 rules\)/);
    assert.doesNotMatch(ok.stdout, /warning/);
    const shadowed = write('shadowed.yaml', {
      upstream: up.url,
      rules: [rule('all'), rule('login', { path: '/login' })],
    });
    const warned = floodgate('--check', shadowed);
    assert.equal(warned.status, 0);
    assert.match(
      warned.stdout,
      /warning: rules\[1\] \("login"\) never applies: rule "all" before it matches all of its requests/,
    );
    const none = floodgate('--check', write('none.yaml', { upstream: up.url }));
    assert.equal(none.status, 0);
    assert.match(none.stdout, /warning: no rules: every request is forwarded without a limit/);
    const bad = floodgate(
      '--check',
      write('bad.yaml', { upstream: up.url, rules: [{ name: 'r', policies: { limit: 0, window: '1m' } }] }),
    );
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /bad\.yaml: rules\[0\]\.policies\.limit/);
    const key = floodgate(
      '--check',
      write('jwt.yaml', { upstream: up.url, jwt: { secretEnv: 'NO_SUCH_VARIABLE_HERE' } }),
    );
    assert.equal(key.status, 1, 'what is read only at start is checked too');
    assert.match(key.stderr, /jwt\.secretEnv/);
    assert.equal(floodgate('--check', join(dir, 'missing.yaml')).status, 1);
  });

  it('warns at start when the configuration limits nothing', async () => {
    const file = write('start.yaml', {
      upstream: up.url,
      listen: 0,
      admin: false,
      rules: [rule('all'), rule('api', { path: '/api' })],
    });
    const proxy = await startProxy(['--config', file]);
    assert.deepEqual(await codes(`${proxy.url}/echo`, 1), [200]);
    assert.equal(await proxy.stop(), 0);
    assert.ok(
      proxy.logs().some((l) => l.level === 40 && /rules\[1\] \("api"\) never applies/.test(String(l.msg))),
    );
  });

  it("--grace works with --config, over the file's grace", { timeout: 60_000 }, async () => {
    const file = write('grace.yaml', {
      upstream: up.url,
      listen: 0,
      admin: false,
      grace: '1h',
      rules: [rule('all')],
    });
    const proxy = await startProxy(['--config', file, '--grace', '300ms']);
    const socket = await halfSentRequest(proxy.url);
    const closed = once(socket, 'close');
    assert.equal(await proxy.stop(), 0);
    await closed;
    assert.ok(proxy.logs().some((l) => l.msg === 'grace period over: closing the connections still open'));
    const bad = floodgate('--config', file, '--grace', 'soon');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--grace: must be a duration/);
  });
});

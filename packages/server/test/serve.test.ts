import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, RedisCluster, RedisServer } from '@floodgate/test-support';
import { Redis } from 'ioredis';
import { bin, halfSentRequest, type RunningCommand, startCommand } from './helpers/command.js';

// The real `floodgate serve`, spawned as a child process and spoken to over HTTP.

const USER = 'john_doe:EXAMPLE_PASSWORD';
const auth = (credentials: string) => `Basic ${Buffer.from(credentials).toString('base64')}`;

const dirs: string[] = [];
function workdir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'floodgate-serve-'));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Starts `floodgate serve` on a free port (its admin listener too) and waits for its "listening" log line. */
function startServe(args: string[], cwd = workdir(), env: NodeJS.ProcessEnv = {}): Promise<RunningCommand> {
  const admin = args.includes('--no-admin') || args.includes('--admin-port') ? [] : ['--admin-port', '0'];
  return startCommand(['serve', '--port', '0', ...admin, ...args], { cwd, env });
}

/** The admin listener's URL, from the "listening" log line. */
function adminOf(s: RunningCommand): string {
  const line = s.logs().find((l) => typeof l.admin === 'string');
  assert.ok(line, 'the admin URL is logged');
  return line.admin as string;
}

function run(args: string[], options: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}) {
  return spawnSync(process.execPath, [bin, ...args], {
    cwd: options.cwd ?? workdir(),
    input: options.input ?? '',
    encoding: 'utf8',
    env: { ...process.env, ...options.env },
    timeout: 30_000,
  });
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe('floodgate serve, embedded defaults (SQLite file, memory store)', () => {
  let s: RunningCommand;
  let cwd: string;
  before(async () => {
    cwd = workdir();
    s = await startServe([], cwd);
  });
  after(async () => {
    assert.equal(await s.stop(), 0, 'a graceful stop exits 0');
    assert.ok(s.logs().some((l) => l.msg === 'stopped'));
  });

  it('seeds the database on first run and announces the example user', () => {
    const logs = s.logs();
    assert.ok(logs.some((l) => /seven continents/.test(String(l.msg))));
    assert.ok(logs.some((l) => l.user === 'john_doe' && l.password === 'EXAMPLE_PASSWORD'));
  });

  it("the tutorial's check: five answers, then the wait message", async () => {
    const answers = [];
    for (let i = 1; i <= 10; i++) answers.push(await get(`${s.url}/?${i}`, { authorization: auth(USER) }));
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200, 200, 200, 429, 429, 429, 429, 429],
    );
    assert.deepEqual(JSON.parse(answers[0]!.text)[0], { continent_id: 1, continent_name: 'ASIA' });
    assert.equal(JSON.parse(answers[0]!.text).length, 7);
    assert.equal(answers[0]!.headers.get('ratelimit'), '"per-user";r=4;t=60');
    const refused = answers[5]!;
    assert.equal(refused.headers.get('retry-after'), '60');
    assert.equal(refused.headers.get('ratelimit-policy'), '"per-user";q=5;w=60');
    assert.match(JSON.parse(refused.text).message, /Wait 60 seconds before trying again\.$/);
    // GET /continents shares the user's limit.
    assert.equal((await get(`${s.url}/continents`, { authorization: auth(USER) })).status, 429);
  });

  it('401 with WWW-Authenticate for a missing, malformed or wrong credential; never a crash', async () => {
    for (const header of [
      undefined,
      'Basic',
      'Basic %%%',
      'Bearer abc',
      auth('john_doe'),
      auth(':x'),
      auth('nobody:pw'),
    ]) {
      const res = await get(s.url, header === undefined ? {} : { authorization: header });
      assert.equal(res.status, 401, String(header));
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
    }
    assert.equal((await get(`${s.url}/health`)).status, 200, 'still serving');
  });

  it('limits failed logins per IP: after 5 wrong passwords even the right one waits', async () => {
    const victim = 'mallory-target:wrong';
    const add = run(['users', 'add', 'mallory-target'], { cwd, input: 'correct horse battery\n' });
    assert.equal(add.status, 0, add.stderr);
    for (let i = 0; i < 5; i++) assert.equal((await get(s.url, { authorization: auth(victim) })).status, 401);
    const blocked = await get(s.url, { authorization: auth('mallory-target:correct horse battery') });
    assert.equal(blocked.status, 429);
    assert.match(JSON.parse(blocked.text).message, /^Too many failed logins\. Wait \d+ seconds/);
  });

  it('/health and /metrics are not limited; /metrics speaks Prometheus', async () => {
    for (let i = 0; i < 12; i++) assert.equal((await get(`${s.url}/health`)).status, 200);
    const metrics = await get(`${adminOf(s)}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /floodgate_decisions_total\{policy="per-user",outcome="allowed"\} 5/);
    assert.match(metrics.text, /floodgate_decisions_total\{policy="per-user",outcome="denied"\} \d+/);
    assert.match(metrics.text, /floodgate_store_latency_seconds_bucket/);
    assert.match(
      metrics.text,
      /floodgate_http_request_duration_seconds_count\{route="health",status="200"\} \d+/,
    );
  });

  it('the admin listener shows the API and login limiters and who hit them; without a token, no action', async () => {
    const list = JSON.parse((await get(`${adminOf(s)}/api`)).text) as { limiters: { name: string }[] };
    assert.deepEqual(
      list.limiters.map((l) => l.name),
      ['api', 'login perUserAndIp', 'login perIp'],
    );
    const top = JSON.parse((await get(`${adminOf(s)}/api/limiters/login%20perIp/top?window=15m`)).text) as {
      requests: { clients: { kind: string; label: string; count: number }[] };
    };
    assert.equal(top.requests.clients[0]?.kind, 'ip');
    assert.ok((top.requests.clients[0]?.count ?? 0) >= 5);
    const reset = await fetch(`${adminOf(s)}/api/limiters/api/clients/x/reset`, { method: 'POST' });
    assert.equal(reset.status, 403);
  });

  it('60 parallel guesses: at most 5 reach the password check, and a right one inside the burst waits', async () => {
    const add = run(['users', 'add', 'burst-target'], { cwd, input: 'the right password\n' });
    assert.equal(add.status, 0, add.stderr);
    const guesses = Array.from({ length: 60 }, (_, i) =>
      i === 42 ? 'burst-target:the right password' : `burst-target:guess-${i}`,
    );
    const statuses = await Promise.all(
      guesses.map(async (g) => (await get(s.url, { authorization: auth(g) })).status),
    );
    const checked = statuses.filter((status) => status === 401 || status === 200).length;
    assert.equal(checked, 5, `statuses: ${statuses.join(' ')}`);
    assert.equal(statuses.filter((status) => status === 429).length, 55);
  });

  it('a password checked a moment ago does not skip the lockout', async () => {
    const add = run(['users', 'add', 'cached-user'], { cwd, input: 'cached password\n' });
    assert.equal(add.status, 0, add.stderr);
    assert.equal((await get(s.url, { authorization: auth('cached-user:cached password') })).status, 200);
    for (let i = 0; i < 5; i++)
      assert.equal((await get(s.url, { authorization: auth('cached-user:wrong') })).status, 401);
    assert.equal((await get(s.url, { authorization: auth('cached-user:cached password') })).status, 429);
  });

  it('a removed user, or a changed password, takes effect on the next request', async () => {
    const add = run(['users', 'add', 'leaver'], { cwd, input: 'first password\n' });
    assert.equal(add.status, 0, add.stderr);
    const first = auth('leaver:first password');
    assert.equal((await get(s.url, { authorization: first })).status, 200);
    const passwd = run(['users', 'passwd', 'leaver'], { cwd, input: 'second password\n' });
    assert.equal(passwd.stdout, 'changed the password of leaver\n', passwd.stderr);
    assert.equal((await get(s.url, { authorization: first })).status, 401, 'the old password');
    const second = auth('leaver:second password');
    assert.equal((await get(s.url, { authorization: second })).status, 200, 'the new password');
    assert.equal(run(['users', 'remove', 'leaver'], { cwd }).stdout, 'removed leaver\n');
    assert.equal((await get(s.url, { authorization: second })).status, 401, 'removed by another process');
  });

  it('unknown routes get 404, other methods 405, and every request is logged with its decision', async () => {
    assert.equal((await get(`${s.url}/nope`)).status, 404);
    const post = await fetch(s.url, { method: 'POST' });
    assert.equal(post.status, 405);
    const logged = s.logs().filter((l) => l.msg === 'request');
    assert.ok(logged.some((l) => (l.decision as { allowed?: boolean } | undefined)?.allowed === false));
    assert.ok(logged.every((l) => typeof l.status === 'number' && typeof l.ms === 'number'));
  });
});

describe('floodgate users', () => {
  it('adds (password from stdin), lists and removes users; bad input is refused', () => {
    const cwd = workdir();
    assert.equal(run(['users', 'add', 'alice'], { cwd, input: 'alice-password\n' }).stdout, 'added alice\n');
    assert.equal(run(['users', 'list'], { cwd }).stdout, 'alice\n');
    const again = run(['users', 'add', 'alice'], { cwd, input: 'alice-password\n' });
    assert.equal(again.status, 2);
    assert.match(again.stderr, /user "alice" already exists/);
    assert.match(run(['users', 'add', 'bob'], { cwd, input: 'short\n' }).stderr, /at least 8 characters/);
    assert.match(run(['users', 'add', 'bad name!'], { cwd }).stderr, /needs a NAME/);
    assert.match(run(['users', 'frobnicate'], { cwd }).stderr, /unknown command 'frobnicate'/);
    assert.equal(run(['users', 'remove', 'alice'], { cwd }).stdout, 'removed alice\n');
    assert.match(run(['users', 'remove', 'alice'], { cwd }).stderr, /no user "alice"/);
    const passwd = run(['users', 'passwd', 'alice'], { cwd, input: 'alice-password\n' });
    assert.equal(passwd.status, 2);
    assert.match(passwd.stderr, /no user "alice"/);
    run(['users', 'add', 'frank'], { cwd, input: 'frank-password\n' });
    assert.match(
      run(['users', 'passwd', 'frank'], { cwd, input: 'short\n' }).stderr,
      /at least 8 characters/,
    );
  });

  it('a new user can call the API', async () => {
    const cwd = workdir();
    run(['users', 'add', 'carol'], { cwd, input: 'carol-password\n' });
    const s = await startServe(['--limit', '2'], cwd);
    try {
      assert.equal((await get(s.url, { authorization: auth('carol:carol-password') })).status, 200);
    } finally {
      await s.stop();
    }
  });
});

describe('floodgate serve settings and errors', () => {
  it('flags beat environment variables, which beat the config file', async () => {
    const cwd = workdir();
    writeFileSync(join(cwd, 'floodgate.yaml'), 'limit: 3\nwindow: 30s\nalgorithm: fixed-window\n');
    const s = await startServe(['--config', 'floodgate.yaml', '--window', '20s'], cwd, {
      FLOODGATE_LIMIT: '2',
    });
    try {
      const res = await get(s.url, { authorization: auth(USER) });
      assert.equal(res.headers.get('ratelimit-policy'), '"per-user";q=2;w=20');
    } finally {
      await s.stop();
    }
  });

  it('--algorithm concurrency: --window is the lease timeout, and a slot is given back when its request ends', async () => {
    const s = await startServe(['--algorithm', 'concurrency', '--limit', '1', '--window', '1m']);
    try {
      for (let i = 0; i < 4; i++) {
        const res = await get(s.url, { authorization: auth(USER) });
        assert.equal(res.status, 200, `request ${i}`);
        assert.equal(res.headers.get('ratelimit-policy'), '"per-user";q=1');
      }
    } finally {
      await s.stop();
    }
  });

  it('serves from a database in memory with --db sqlite::memory:', async () => {
    const s = await startServe(['--db', 'sqlite::memory:']);
    try {
      assert.equal((await get(s.url, { authorization: auth(USER) })).status, 200);
    } finally {
      await s.stop();
    }
  });

  const errors: [string, string[], number, RegExp, (cwd: string) => void][] = [
    ['invalid limit', ['--limit', '0'], 2, /--limit must be an integer from 1/, () => {}],
    [
      'invalid window',
      ['--window', 'soon'],
      2,
      /^floodgate: --window must be a positive integer of/,
      () => {},
    ],
    ['invalid algorithm', ['--algorithm', 'magic'], 2, /^floodgate: --algorithm must be one of/, () => {}],
    [
      'invalid window from the environment',
      ['--env', 'FLOODGATE_WINDOW=soon'],
      2,
      /^floodgate: FLOODGATE_WINDOW must be a positive integer of/,
      () => {},
    ],
    [
      'invalid window in the config file',
      ['--config', 'w.yaml'],
      2,
      /^floodgate: "window" in w\.yaml must be a positive integer of/,
      (cwd) => writeFileSync(join(cwd, 'w.yaml'), 'window: soon\n'),
    ],
    ['unknown flag', ['--colour'], 2, /^floodgate: unknown option '--colour'/, () => {}],
    ['bad database URL', ['--db', 'postgres://x'], 2, /--db must be sqlite:PATH/, () => {}],
    [
      'a SQLite file in a directory that does not exist',
      ['--db', 'sqlite:./typo/dir/x.db'],
      2,
      /the directory .*typo\/dir does not exist/,
      () => {},
    ],
    ['bad Redis URL', ['--redis', 'localhost:6379'], 2, /--redis must be redis:\/\/host:port/, () => {}],
    [
      'missing config file',
      ['--config', 'nope.yaml'],
      2,
      /cannot read config file "nope.yaml": ENOENT/,
      () => {},
    ],
    [
      'invalid YAML',
      ['--config', 'bad.yaml'],
      2,
      /bad\.yaml: not valid YAML/,
      (cwd) => writeFileSync(join(cwd, 'bad.yaml'), 'a: ['),
    ],
    [
      'unknown setting',
      ['--config', 'odd.yaml'],
      2,
      /unknown setting "colour"/,
      (cwd) => writeFileSync(join(cwd, 'odd.yaml'), 'colour: red\n'),
    ],
    [
      'bad setting type',
      ['--config', 'list.yaml'],
      2,
      /"limit" in list.yaml must be an integer/,
      (cwd) => writeFileSync(join(cwd, 'list.yaml'), 'limit: [1]\n'),
    ],
  ];
  for (const [name, args, code, message, prepare] of errors) {
    it(`${name}: exit ${code}, a message, no stack trace`, () => {
      const cwd = workdir();
      prepare(cwd);
      // `--env NAME=VALUE` here sets an environment variable rather than a flag.
      const env = args[0] === '--env' ? Object.fromEntries([args[1]!.split('=')]) : {};
      const r = run(['serve', '--port', '0', ...(args[0] === '--env' ? [] : args)], { cwd, env });
      assert.equal(r.status, code, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      if (name.startsWith('a SQLite file'))
        assert.equal(existsSync(join(cwd, 'typo')), false, 'nothing created');
    });
  }

  it('a stop waits for requests in flight at most --grace, then closes what is left', {
    timeout: 60_000,
  }, async () => {
    const s = await startServe(['--grace', '300ms']);
    const socket = await halfSentRequest(s.url);
    const closed = once(socket, 'close');
    assert.equal(await s.stop(), 0);
    await closed;
    const logs = s.logs();
    assert.ok(
      logs.some((l) => l.msg === 'grace period over: closing the connections still open' && l.grace === 300),
    );
    assert.ok(logs.some((l) => l.msg === 'stopped'));
    const bad = run(['serve', '--port', '0', '--grace', 'soon']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--grace must be a duration such as "500ms", "10s" or "1m"; got "soon"/);
  });

  it('a port in use: exit 1 saying so', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address() as { port: number };
    try {
      const r = run(['serve', '--port', String(port)]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`port ${port} on 127.0.0.1 is already in use`));
    } finally {
      blocker.close();
    }
  });

  it('an unreachable database or Redis: exit 1 saying which, never a hang', async () => {
    const port = await freePort();
    const db = run(['serve', '--port', '0', '--db', `mysql://root@127.0.0.1:${port}/x`]);
    assert.equal(db.status, 1);
    assert.match(db.stderr, new RegExp(`cannot use the MySQL database at 127.0.0.1:${port}/x`));
    const redis = run(['serve', '--port', '0', '--redis', `redis://127.0.0.1:${port}`]);
    assert.equal(redis.status, 1);
    assert.match(redis.stderr, new RegExp(`cannot connect to Redis at redis://127.0.0.1:${port}`));
  });
});

describe('credentials in URLs never reach a log line or an error message', () => {
  it('an unreachable MySQL or Redis, a bad --db or --redis, a bad config value: the password is hidden', async () => {
    const port = await freePort();
    const cases: [string[], RegExp][] = [
      [['--db', `mysql://fg:db-secret-1@127.0.0.1:${port}/x`], /cannot use the MySQL database/],
      [['--redis', `redis://:redis-secret-2@127.0.0.1:${port}`], /redis:\/\/:\*\*\*@127\.0\.0\.1/],
      [['--redis', `redis://default:redis-secret-3@127.0.0.1:${port}/0`], /redis:\/\/default:\*\*\*@/],
      [['--redis', 'http://u:redis-secret-4@127.0.0.1'], /--redis must be/],
      [['--db', 'postgres://u:db-secret-5@127.0.0.1/x'], /--db must be/],
      [['--db', `mysql://127.0.0.1:${port}/x?password=db-secret-6`], /cannot use the MySQL database/],
    ];
    for (const [args, message] of cases) {
      const r = run(['serve', '--port', '0', ...args]);
      assert.notEqual(r.status, 0, args.join(' '));
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr + r.stdout, /secret/, args.join(' '));
    }
  });
});

describe('floodgate serve with Redis', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.stop();
  });

  it('--redis redis://host:port/N keeps its limits in database N, and refuses a database the server lacks', async () => {
    const s = await startServe(['--redis', `${redis.url}/3`]);
    try {
      assert.equal((await get(s.url, { authorization: auth(USER) })).status, 200);
    } finally {
      await s.stop();
    }
    const client = new Redis(redis.port, '127.0.0.1');
    try {
      assert.equal(await client.dbsize(), 0, 'nothing in database 0');
      await client.select(3);
      assert.ok((await client.dbsize()) > 0, 'the limits are in database 3');
    } finally {
      client.disconnect();
    }
    const missing = run(['serve', '--port', '0', '--redis', `${redis.url}/99`]);
    assert.equal(missing.status, 1);
    assert.match(
      missing.stderr,
      /cannot use database 99 of Redis at redis:\/\/127\.0\.0\.1:\d+\/99: ERR DB index is out of range/,
    );
    const odd = run(['serve', '--port', '0', '--redis', `${redis.url}/three`]);
    assert.equal(odd.status, 2);
    assert.match(odd.stderr, /must be a database number, such as \/3/);
  });

  it('two serve processes sharing one Redis allow exactly 5 of 50 concurrent requests for one user', async () => {
    const cwd = workdir();
    const a = await startServe(['--redis', redis.url], cwd);
    const b = await startServe(['--redis', redis.url], cwd);
    try {
      // Warm each process's credential check, so the 50 requests race on the limit alone.
      await Promise.all([a, b].map((s) => get(`${s.url}/health`)));
      const responses = await Promise.all(
        Array.from({ length: 50 }, (_, i) => get([a, b][i % 2]!.url, { authorization: auth(USER) })),
      );
      assert.equal(responses.filter((r) => r.status === 200).length, 5);
      assert.equal(responses.filter((r) => r.status === 429).length, 45);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

describe('floodgate serve on a Redis Cluster', () => {
  let cluster: RedisCluster;
  before(async () => {
    cluster = await RedisCluster.start(3);
  });
  after(async () => {
    await cluster.stop();
  });

  it('--redis redis-cluster://host:port,... shares one limit across processes', async () => {
    const url = `redis-cluster://${cluster.ports.map((p) => `127.0.0.1:${p}`).join(',')}`;
    const cwd = workdir();
    const a = await startServe(['--redis', url, '--limit', '3'], cwd);
    const b = await startServe(['--redis', url, '--limit', '3'], cwd);
    try {
      const statuses = [];
      for (let i = 0; i < 6; i++)
        statuses.push((await get([a, b][i % 2]!.url, { authorization: auth(USER) })).status);
      assert.deepEqual(statuses, [200, 200, 200, 429, 429, 429]);
      assert.ok(a.logs().some((l) => l.store === 'redis'));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

describe('floodgate serve with MariaDB/MySQL', () => {
  // The server to use: FLOODGATE_TEST_MYSQL_URL (without a database name), by default the local MariaDB.
  const base = process.env.FLOODGATE_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';
  const database = `floodgate_test_${process.pid}`;
  let admin: import('mysql2/promise').Connection;
  before(async () => {
    const mysql = await import('mysql2/promise');
    try {
      admin = await mysql.createConnection({ uri: base, connectTimeout: 5000 });
    } catch (error) {
      throw new Error(
        `these tests need a MySQL/MariaDB server at ${base} (set FLOODGATE_TEST_MYSQL_URL to use another): ${(error as Error).message}`,
      );
    }
    await admin.query(`CREATE DATABASE ${database}`);
  });
  /** Databases of one test each, which serve creates; dropped at the end. */
  const others = new Set<string>();
  const databaseFor = (name: string) => {
    others.add(`${database}_${name}`);
    return `${database}_${name}`;
  };
  after(async () => {
    for (const name of [database, ...others]) await admin?.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin?.end();
  });

  it('the database going away mid-run gives 503, not a crash, and it recovers when the database returns', async () => {
    // A TCP hop the test controls between the API and the real server: cutting it takes the database away.
    const target = new URL(base);
    const sockets = new Set<Socket>();
    let proxy: NetServer | undefined;
    const port = await freePort();
    const open = () =>
      new Promise<void>((r) => {
        proxy = createServer((client) => {
          const upstream = connect(Number(target.port || 3306), target.hostname);
          sockets.add(client).add(upstream);
          client.pipe(upstream).pipe(client);
          const drop = () => {
            client.destroy();
            upstream.destroy();
          };
          client.on('error', drop).on('close', drop);
          upstream.on('error', drop).on('close', drop);
        });
        proxy.listen(port, '127.0.0.1', r);
      });
    const cut = () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        sockets.clear();
        proxy!.close(() => r());
      });
    await open();
    const url = `mysql://${target.username || 'root'}${target.password ? `:${target.password}` : ''}@127.0.0.1:${port}/${database}`;
    // Straight to the server: run() blocks this process, and with it the hop.
    const added = run(['users', 'add', 'john_doe', '--db', `${base}/${database}`], {
      input: 'EXAMPLE_PASSWORD\n',
    });
    assert.equal(added.status, 0, added.stderr);
    const s = await startServe(['--db', url, '--limit', '100']);
    try {
      assert.equal((await get(s.url, { authorization: auth(USER) })).status, 200);
      await cut();
      const down = await get(s.url, { authorization: auth(USER) });
      assert.equal(down.status, 503);
      assert.equal(down.headers.get('retry-after'), '5');
      assert.match(JSON.parse(down.text).message, /database is unavailable/);
      assert.equal((await get(`${s.url}/health`)).status, 200, 'the process is alive');
      await open();
      let status = 0;
      for (let i = 0; i < 20 && status !== 200; i++)
        status = (await get(s.url, { authorization: auth(USER) })).status;
      assert.equal(status, 200, 'serves again once the database is back');
    } finally {
      await s.stop();
      await cut();
    }
  });

  it('creates the schema and the continents, no tutorial user; a user added serves the continents', async () => {
    const url = `${base}/${databaseFor('schema')}`;
    const s = await startServe(['--db', url]);
    try {
      assert.equal((await get(s.url, { authorization: auth(USER) })).status, 401, 'no john_doe');
      assert.ok(
        s.logs().some((l) => /no users yet.*floodgate users add NAME --db mysql:/.test(String(l.msg))),
      );
      assert.ok(!JSON.stringify(s.logs()).includes('EXAMPLE_PASSWORD'));
      const added = run(['users', 'add', 'dave', '--db', url], { input: 'dave-password\n' });
      assert.equal(added.stdout, 'added dave\n', added.stderr);
      const res = await get(s.url, { authorization: auth('dave:dave-password') });
      assert.equal(res.status, 200);
      assert.deepEqual(
        JSON.parse(res.text).map((c: { continent_name: string }) => c.continent_name),
        ['ASIA', 'AFRICA', 'NORTH AMERICA', 'SOUTH AMERICA', 'ANTARCTICA', 'EUROPE', 'AUSTRALIA'],
      );
    } finally {
      await s.stop();
    }
    const [rows] = await admin.query(`SELECT username FROM ${databaseFor('schema')}.users`);
    assert.deepEqual(rows, [{ username: 'dave' }]);
  });

  it('creates the database when it does not exist yet; a database name it cannot use is refused', async () => {
    const fresh = `${database}_fresh`;
    try {
      const s = await startServe(['--db', `${base}/${fresh}`]);
      try {
        assert.equal((await get(`${s.url}/health`)).status, 200);
      } finally {
        await s.stop();
      }
      const [rows] = await admin.query(`SELECT COUNT(*) AS n FROM ${fresh}.continents`);
      assert.deepEqual(rows, [{ n: 7 }]);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${fresh}`);
    }
    const odd = run(['serve', '--port', '0', '--db', `${base}/no-such;name`]);
    assert.equal(odd.status, 2);
    assert.match(odd.stderr, /--db must name the MySQL database/);
  });

  it("a password in --db appears in no log line (the first run's included)", async () => {
    const user = `fg_${process.pid}`;
    const password = `db-password-${process.pid}`;
    const own = `${database}_own`;
    await admin.query(`CREATE DATABASE ${own}`);
    await admin.query(`CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`);
    try {
      await admin.query(`GRANT ALL ON ${own}.* TO '${user}'@'%'`);
      const target = new URL(base);
      const url = `mysql://${user}:${password}@${target.hostname}:${target.port || 3306}/${own}`;
      const s = await startServe(['--db', url]);
      try {
        assert.equal((await get(s.url, { authorization: auth(USER) })).status, 401);
      } finally {
        await s.stop();
      }
      const logs = JSON.stringify(s.logs());
      assert.match(logs, /created the continents table/);
      assert.match(logs, new RegExp(`mysql://${user}:\\*\\*\\*@`));
      assert.ok(!logs.includes(password), logs);
    } finally {
      await admin.query(`DROP USER IF EXISTS '${user}'@'%'`);
      await admin.query(`DROP DATABASE IF EXISTS ${own}`);
    }
  });
});

describe('floodgate serve --on-store-error, when Redis dies', () => {
  const PASSWORD = 'serve-outage-secret';

  async function afterKill(
    args: string[],
    { authorization = auth(USER), requests = 5 } = {},
  ): Promise<{ statuses: number[]; retryAfter: (string | null)[] }> {
    const redis = await RedisServer.start();
    const admin = new Redis(redis.port, '127.0.0.1');
    await admin.config('SET', 'requirepass', PASSWORD);
    admin.disconnect();
    const s = await startServe([
      '--redis',
      `redis://:${PASSWORD}@127.0.0.1:${redis.port}`,
      '--limit',
      '3',
      ...args,
    ]);
    try {
      assert.equal((await get(s.url, { authorization: auth(USER) })).status, 200, 'Redis up');
      await redis.kill();
      const statuses: number[] = [];
      const retryAfter: (string | null)[] = [];
      for (let i = 0; i < requests; i++) {
        const r = await get(s.url, { authorization });
        statuses.push(r.status);
        retryAfter.push(r.headers.get('retry-after'));
      }
      while (!s.logs().some((l) => String(l.msg).startsWith('rate-limit store failed')))
        await once(s.child.stdout!, 'data');
      assert.ok(!JSON.stringify(s.logs()).includes(PASSWORD), 'never the password');
      return { statuses, retryAfter };
    } finally {
      await s.stop();
      await redis.stop();
    }
  }

  it('open: the per-user limit lets every request through', async () => {
    assert.deepEqual((await afterKill(['--on-store-error', 'open'])).statuses, [200, 200, 200, 200, 200]);
  });

  it('open does not switch off brute-force protection: failed logins are counted in memory meanwhile', async () => {
    const wrong = auth('john_doe:not-the-password');
    const { statuses } = await afterKill(['--on-store-error', 'open'], { authorization: wrong, requests: 8 });
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
  });

  it('closed: 503 with Retry-After, never a 429 (nobody is over a limit)', async () => {
    const { statuses, retryAfter } = await afterKill(['--on-store-error', 'closed']);
    assert.deepEqual(statuses, [503, 503, 503, 503, 503]);
    for (const value of retryAfter) assert.match(String(value), /^\d+$/);
  });

  it('fallback (the default): counted in memory, exactly the limit admitted', async () => {
    assert.deepEqual((await afterKill(['--on-store-error', 'fallback'])).statuses, [200, 200, 200, 429, 429]);
    assert.deepEqual((await afterKill([])).statuses, [200, 200, 200, 429, 429]);
  });

  it('refuses a bad value, and the setting without Redis, naming where it came from (exit 2)', () => {
    const bad = run(['serve', '--port', '0', '--redis', 'redis://127.0.0.1:1', '--on-store-error', 'maybe']);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /--on-store-error must be one of open, closed, fallback; got "maybe"/);
    const alone = run(['serve', '--port', '0', '--on-store-error', 'closed']);
    assert.equal(alone.status, 2, alone.stderr);
    assert.match(alone.stderr, /--on-store-error needs --redis/);
    const fromEnv = run(['serve', '--port', '0'], { env: { FLOODGATE_ON_STORE_ERROR: 'closed' } });
    assert.equal(fromEnv.status, 2, fromEnv.stderr);
    assert.match(fromEnv.stderr, /FLOODGATE_ON_STORE_ERROR needs --redis/);
  });
});

describe('floodgate serve: the tutorial user only on the embedded default, /metrics on the admin port', () => {
  it('the embedded default (no --db, loopback) seeds john_doe; /metrics is on the admin port only', async () => {
    const s = await startServe([]);
    try {
      assert.equal((await get(s.url, { authorization: auth(USER) })).status, 200);
      const admin = adminOf(s);
      assert.match(admin, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal((await get(`${s.url}/metrics`)).status, 404, 'not on the public port');
      assert.equal((await get(`${s.url}/health`)).status, 200, '/health stays on the API port');
      const metrics = await get(`${admin}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(metrics.text, /floodgate_decisions_total\{policy="per-user",outcome="allowed"\} 1/);
      assert.equal((await get(`${admin}/health`)).status, 200);
    } finally {
      await s.stop();
    }
  });

  it('a --db given (a SQLite file of its own) gets no tutorial user, and the log says how to add one', async () => {
    const cwd = workdir();
    const s = await startServe(['--db', 'sqlite:./own.db'], cwd);
    try {
      assert.equal((await get(s.url, { authorization: auth(USER) })).status, 401);
      assert.ok(!JSON.stringify(s.logs()).includes('EXAMPLE_PASSWORD'));
      assert.ok(
        s
          .logs()
          .some((l) => /no users yet.*floodgate users add NAME --db sqlite:\.\/own\.db/.test(String(l.msg))),
        JSON.stringify(s.logs()),
      );
    } finally {
      await s.stop();
    }
    assert.equal(run(['users', 'list', '--db', 'sqlite:./own.db'], { cwd }).stdout, '');
  });

  it('the default database on a non-loopback interface gets no tutorial user', async () => {
    const s = await startServe(['--host', '0.0.0.0']);
    try {
      const url = s.url.replace('0.0.0.0', '127.0.0.1');
      assert.equal((await get(url, { authorization: auth(USER) })).status, 401);
      assert.ok(s.logs().some((l) => /no users yet/.test(String(l.msg))));
      // The admin listener stays on loopback whatever --host says.
      assert.match(adminOf(s), /^http:\/\/127\.0\.0\.1:/);
    } finally {
      await s.stop();
    }
  });

  it('on a non-loopback interface, a tutorial user left with its public password is warned of', async () => {
    const cwd = workdir();
    const first = await startServe([], cwd);
    await first.stop();
    const s = await startServe(['--host', '0.0.0.0'], cwd);
    try {
      assert.ok(
        s.logs().some((l) => l.level === 40 && /public password/.test(String(l.msg))),
        JSON.stringify(s.logs()),
      );
    } finally {
      await s.stop();
    }
    const passwd = run(['users', 'passwd', 'john_doe'], { cwd, input: 'a private password\n' });
    assert.equal(passwd.status, 0, passwd.stderr);
    const again = await startServe(['--host', '0.0.0.0'], cwd);
    await again.stop();
    assert.ok(!again.logs().some((l) => /public password/.test(String(l.msg))));
  });

  it('users add on a fresh database adds that user alone', () => {
    const cwd = workdir();
    assert.equal(run(['users', 'add', 'erin'], { cwd, input: 'erin-password\n' }).stdout, 'added erin\n');
    assert.equal(run(['users', 'list'], { cwd }).stdout, 'erin\n');
  });

  it('--no-admin: no admin listener; bad admin flags are usage errors, an admin port in use exit 1', async () => {
    const s = await startServe(['--no-admin']);
    try {
      assert.ok(!s.logs().some((l) => l.admin !== undefined));
      assert.equal((await get(`${s.url}/metrics`)).status, 404);
    } finally {
      await s.stop();
    }
    const both = run(['serve', '--port', '0', '--no-admin', '--admin-port', '0']);
    assert.equal(both.status, 2);
    assert.match(both.stderr, /^floodgate: --admin-port cannot be combined with --no-admin/);
    const bad = run(['serve', '--port', '0', '--admin-port', 'x']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /^floodgate: --admin-port must be an integer from 0 to 65535; got "x"/);
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address() as { port: number };
    try {
      const busy = run(['serve', '--port', '0', '--admin-port', String(port)]);
      assert.equal(busy.status, 1);
      assert.match(
        busy.stderr,
        new RegExp(`port ${port} on 127.0.0.1 is already in use; choose another with --admin-port`),
      );
      assert.doesNotMatch(busy.stderr, /\n\s+at /);
    } finally {
      blocker.close();
    }
  });
});

describe('floodgate serve: one client per address as the library keys it (--trust-proxy, --ipv6-prefix)', () => {
  const wrong = (user: string, forwarded?: string) => ({
    authorization: auth(`${user}:wrong password`),
    ...(forwarded === undefined ? {} : { 'x-forwarded-for': forwarded }),
  });
  /** Statuses of `n` wrong guesses for `user`, the i-th sent with the forwarded address `from(i)`. */
  async function guesses(url: string, user: string, n: number, from: (i: number) => string | undefined) {
    const statuses: number[] = [];
    for (let i = 1; i <= n; i++) statuses.push((await get(url, wrong(user, from(i)))).status);
    return statuses;
  }
  /** Wrong guesses that reached the password check (401), and those refused before it (429). */
  const count = (statuses: number[]) => ({
    checked: statuses.filter((s) => s === 401).length,
    refused: statuses.filter((s) => s === 429).length,
  });

  /** The first log line that matches, once it has been written: a request's line follows its response. */
  async function logged(of: RunningCommand, match: (line: Record<string, unknown>) => boolean) {
    for (;;) {
      const line = of.logs().find(match);
      if (line !== undefined) return line;
      await once(of.child.stdout!, 'data');
    }
  }

  let s: RunningCommand;
  before(async () => {
    s = await startServe(['--trust-proxy', 'loopback']);
  });
  after(async () => {
    await s.stop();
  });

  it('20 wrong guesses from 20 addresses of one /64: 5 reach the password check', async () => {
    const statuses = await guesses(s.url, 'john_doe', 20, (i) => `2001:db8::${i.toString(16)}`);
    assert.deepEqual(count(statuses), { checked: 5, refused: 15 }, statuses.join(' '));
  });

  it('the log names the client as the limit keys it: the address and its /64', async () => {
    await get(s.url, wrong('log-user', '2001:db8:0:7::42'));
    const line = await logged(s, (l) => l.msg === 'request' && l.ip === '2001:db8:0:7::42');
    assert.equal(line.client, '2001:db8:0:7:0:0:0:0/64');
  });

  it('other /64s are other clients, each with its own budget', async () => {
    const statuses = await guesses(s.url, 'john_doe', 12, (i) => `2001:db8:1:${i}::1`);
    assert.deepEqual(count(statuses), { checked: 12, refused: 0 }, statuses.join(' '));
  });

  it('IPv4-mapped addresses are the IPv4 address: ::ffff:127.0.0.1 shares 127.0.0.1 budget', async () => {
    const forms = ['127.0.0.9', '::ffff:127.0.0.9', '127.0.0.9', '::ffff:127.0.0.9', '::FFFF:127.0.0.9'];
    const statuses = await guesses(s.url, 'mapped-user', 6, (i) => forms[(i - 1) % forms.length]);
    assert.deepEqual(count(statuses), { checked: 5, refused: 1 }, statuses.join(' '));
    await logged(s, (l) => l.msg === 'request' && l.client === '127.0.0.9');
    assert.ok(!s.logs().some((l) => String(l.ip).startsWith('::ffff:')));
  });

  it('::ffff:7f00:1 (the hex form) is 127.0.0.1 too', async () => {
    const forms = ['127.0.0.1', '::ffff:7f00:1'];
    const statuses = await guesses(s.url, 'hex-user', 6, (i) => forms[i % 2]);
    assert.deepEqual(count(statuses), { checked: 5, refused: 1 }, statuses.join(' '));
    await logged(s, (l) => l.msg === 'request' && l.ip === '127.0.0.1' && l.client === '127.0.0.1');
  });

  it('without --trust-proxy, a forged X-Forwarded-For is ignored: the peer is the client', async () => {
    const direct = await startServe([]);
    try {
      const statuses = await guesses(direct.url, 'john_doe', 10, (i) => `2001:db8:${i}::1, 198.51.100.${i}`);
      assert.deepEqual(count(statuses), { checked: 5, refused: 5 }, statuses.join(' '));
      const line = await logged(direct, (l) => l.msg === 'request');
      assert.equal(line.ip, '127.0.0.1');
    } finally {
      await direct.stop();
    }
  });

  it('--ipv6-prefix 48: addresses of one /48 are one client', async () => {
    const wide = await startServe(['--trust-proxy', '1', '--ipv6-prefix', '48']);
    try {
      const statuses = await guesses(wide.url, 'john_doe', 8, (i) => `2001:db8:5:${i}::1`);
      assert.deepEqual(count(statuses), { checked: 5, refused: 3 }, statuses.join(' '));
    } finally {
      await wide.stop();
    }
  });

  it('a dual-stack listener (--host ::) sees an IPv4 client as its IPv4 address', async () => {
    const cwd = workdir();
    const dual = await startServe(['--host', '::'], cwd);
    try {
      const port = new URL(dual.url).port;
      await get(`http://127.0.0.1:${port}/`, wrong('v4-user'));
      const line = await logged(dual, (l) => l.msg === 'request');
      assert.equal(line.ip, '127.0.0.1');
      assert.equal(line.client, '127.0.0.1');
    } finally {
      await dual.stop();
    }
  });

  it('bad --trust-proxy or --ipv6-prefix: exit 2 naming the flag', () => {
    const cases: [string[], RegExp][] = [
      [['--trust-proxy', 'nonsense'], /^floodgate: --trust-proxy\[0\] must be an IP address, a CIDR block/],
      [['--trust-proxy', '10.0.0.0/99'], /^floodgate: --trust-proxy\[0\] must be/],
      [['--ipv6-prefix', '0'], /^floodgate: --ipv6-prefix must be an integer from 1 to 128; got 0$/m],
      [['--ipv6-prefix', '129'], /^floodgate: --ipv6-prefix must be an integer from 1 to 128/],
    ];
    for (const [args, message] of cases) {
      const r = run(['serve', '--port', '0', '--no-admin', ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
  });
});

/** After john_doe is locked out by wrong guesses, spellings the database may take for it are refused unchecked. */
async function assertSpellingsLockedOut(url: string, password: string): Promise<void> {
  for (let i = 0; i < 5; i++)
    assert.equal((await get(url, { authorization: auth('john_doe:wrong') })).status, 401);
  for (const name of ['JOHN_DOE', 'John_Doe', 'john_doe ', 'ｊｏｈｎ_ｄｏｅ']) {
    for (const pw of ['another wrong', password]) {
      const res = await get(url, { authorization: auth(`${name}:${pw}`) });
      assert.equal(
        res.status,
        429,
        `${JSON.stringify(name)} with ${pw === password ? 'the' : 'a wrong'} password`,
      );
      assert.match(JSON.parse(res.text).message, /^Too many failed logins/);
    }
  }
}

/** A name that does not exist: its spellings share one budget, and it answers as a wrong password does. */
async function assertUnknownSpellingsShareABudget(url: string): Promise<void> {
  const known = await get(url, { authorization: auth('john_doe:wrong') });
  const unknown = await get(url, { authorization: auth('ghost_user:wrong') });
  assert.equal(unknown.status, known.status);
  assert.equal(unknown.text, known.text, 'the same body: whether the user exists is not told');
  for (const name of ['GHOST_USER', 'Ghost_User', 'ghost_user ']) {
    assert.equal((await get(url, { authorization: auth(`${name}:wrong`) })).status, 401, name);
  }
  assert.equal((await get(url, { authorization: auth('ghost_user:wrong') })).status, 401, 'the fifth');
  for (const name of ['ghost_user', 'GHOST_USER', 'gHoSt_UsEr  ']) {
    assert.equal((await get(url, { authorization: auth(`${name}:wrong`) })).status, 429, name);
  }
}

describe('floodgate serve: one login budget per user, however the name is spelt (SQLite)', () => {
  it('after john_doe is locked out, JOHN_DOE, John_Doe and "john_doe " are refused unchecked', async () => {
    const s = await startServe([]);
    try {
      await assertSpellingsLockedOut(s.url, 'EXAMPLE_PASSWORD');
    } finally {
      await s.stop();
    }
  });

  it('users add refuses a name another user has in another spelling', () => {
    const cwd = workdir();
    assert.equal(run(['users', 'add', 'Grace'], { cwd, input: 'grace-password\n' }).status, 0);
    const twin = run(['users', 'add', 'GRACE'], { cwd, input: 'grace-password\n' });
    assert.equal(twin.status, 2);
    assert.match(twin.stderr, /^floodgate: user "Grace" already exists/);
    assert.equal(run(['users', 'list'], { cwd }).stdout, 'Grace\n');
  });

  it('an unknown name: its spellings share one budget, and nothing tells it from a wrong password', async () => {
    const s = await startServe([]);
    try {
      await assertUnknownSpellingsShareABudget(s.url);
    } finally {
      await s.stop();
    }
  });
});

describe('floodgate serve: one budget per user row, however MariaDB compares names', () => {
  const base = process.env.FLOODGATE_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';
  const database = `floodgate_test_names_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const url = `${base}/${database}`;
  let admin: import('mysql2/promise').Connection;
  before(async () => {
    const mysql = await import('mysql2/promise');
    admin = await mysql.createConnection({ uri: base, connectTimeout: 5000 });
    const add = run(['users', 'add', 'john_doe', '--db', url], { input: 'EXAMPLE_PASSWORD\n' });
    assert.equal(add.status, 0, add.stderr);
    // The server's own comparison: the premise of these tests.
    const [rows] = await admin.query(`SELECT username FROM ${database}.users WHERE username = 'JOHN_DOE '`);
    assert.deepEqual(rows, [{ username: 'john_doe' }]);
  });
  after(async () => {
    await admin?.query(`DROP DATABASE IF EXISTS ${database}`);
    await admin?.end();
  });

  it('the per-user limit is the row\'s: JOHN_DOE, John_Doe and "john_doe " spend john_doe\'s requests', async () => {
    const s = await startServe(['--db', url, '--limit', '3']);
    try {
      const statuses = [];
      for (const name of ['john_doe', 'JOHN_DOE', 'John_Doe', 'john_doe ', 'JOHN_DOE'])
        statuses.push((await get(s.url, { authorization: auth(`${name}:EXAMPLE_PASSWORD`) })).status);
      assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    } finally {
      await s.stop();
    }
  });

  it('after john_doe is locked out, JOHN_DOE, John_Doe and "john_doe " are refused unchecked', async () => {
    const s = await startServe(['--db', url, '--limit', '100']);
    try {
      await assertSpellingsLockedOut(s.url, 'EXAMPLE_PASSWORD');
    } finally {
      await s.stop();
    }
  });

  it('an unknown name: its spellings share one budget, and nothing tells it from a wrong password', async () => {
    const s = await startServe(['--db', url]);
    try {
      await assertUnknownSpellingsShareABudget(s.url);
    } finally {
      await s.stop();
    }
  });
});

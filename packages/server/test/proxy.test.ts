import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { codeBlocks, docSection, RedisServer, type Reply, send } from '@floodgate/test-support';
import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { parse, stringify } from 'yaml';
import { loadProxyConfig, validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { configWarnings } from '../src/proxy/warnings.js';
import { CliError } from '../src/shared/errors.js';
import {
  type NodeUpstream,
  pattern,
  startDarkListener,
  startNodeUpstream,
  startPythonUpstream,
} from './helpers/upstreams.js';

// `floodgate proxy` in this process, in front of real upstreams, spoken to over real sockets.

// biome-ignore lint/suspicious/noExplicitAny: test bodies are read field by field
const json = (reply: Reply) => JSON.parse(reply.body) as Record<string, any>;

interface Started {
  proxy: RunningProxy;
  logs: Record<string, unknown>[];
}

const running: RunningProxy[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.all(running.map((p) => p.stop()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function capture() {
  const logs: Record<string, unknown>[] = [];
  const log = pino({ base: null }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  return { logs, log };
}

async function proxyFor(data: Record<string, unknown>, file?: string): Promise<Started> {
  const { logs, log } = capture();
  const config = validateProxyConfig({ listen: 0, admin: 0, ...data });
  const proxy = await startProxy(config, { log, ...(file === undefined ? {} : { file, watch: true }) });
  running.push(proxy);
  return { proxy, logs };
}

async function metric(proxy: RunningProxy, line: string): Promise<number> {
  const text = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? 0 : Number(found.split(' ').pop());
}

const limit = (n: number, window = '1m') => [{ limit: n, window, algorithm: 'fixed-window' }];

async function statuses(url: string, n: number, options: Parameters<typeof send>[1] = {}): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await send(url, options)).status);
  return out;
}

let up: NodeUpstream;
before(async () => {
  up = await startNodeUpstream();
});
after(() => up.close());

describe('proxy: configuration', () => {
  const bad = (data: unknown, expected: RegExp) =>
    assert.throws(
      () => validateProxyConfig(data, 'proxy.yaml'),
      (error: Error) => {
        assert.ok(error instanceof CliError && error.exitCode === 2, error.message);
        assert.match(error.message, expected);
        return true;
      },
    );

  it('names the path of every bad field', () => {
    bad({}, /^proxy\.yaml: upstream: must be a URL/);
    bad({ upstream: 'ftp://x' }, /upstream: must be a URL like "http:\/\/127\.0\.0\.1:8000"/);
    bad({ upstream: 'http://a', colour: 1 }, /\(top level\): unknown field "colour"/);
    bad({ upstream: 'http://a', listen: 'nowhere' }, /listen: must be "host:port"/);
    bad({ upstream: 'http://a', listen: 70000 }, /listen: must be a port from 0 to 65535/);
    bad(
      { upstream: 'http://a', store: 'mongodb://x' },
      /store: must be "memory", redis:\/\/host:port, rediss:\/\/host:port or redis-cluster:\/\/host:port,host:port; got "mongodb:\/\/x"/,
    );
    bad({ upstream: 'http://a', timeouts: { response: 'soon' } }, /timeouts\.response: must be a duration/);
    bad(
      {
        upstream: 'http://a',
        rules: [
          { name: 'a', policies: limit(1) },
          { name: 'b', policies: [{ limit: 0, window: '1s' }] },
        ],
      },
      /rules\[1\]\.policies\[0\]\.limit: must be a positive integer; got 0/,
    );
    bad({ upstream: 'http://a', rules: [{ name: 'a' }] }, /rules\[0\]\.policies: required/);
    bad(
      {
        upstream: 'http://a',
        rules: [
          { name: 'a', policies: limit(1) },
          { name: 'a', policies: limit(1) },
        ],
      },
      /rules\[1\]\.name: "a" is used by an earlier rule/,
    );
    bad(
      { upstream: 'http://a', rules: [{ name: 'a', key: 'cookie', policies: limit(1) }] },
      /rules\[0\]\.key: must be "ip", "basic-user"/,
    );
    bad(
      { upstream: 'http://a', rules: [{ name: 'a', key: { jwt: 'sub' }, policies: limit(1) }] },
      /rules\[0\]\.key\.jwt: needs a top-level "jwt" section/,
    );
    bad(
      { upstream: 'http://a', rules: [{ name: 'a', match: { path: 'api' }, policies: limit(1) }] },
      /rules\[0\]\.match\.path: must start with "\/"/,
    );
    bad(
      {
        upstream: 'http://a',
        rules: [{ name: 'a', match: { path: '/a', pattern: '/b' }, policies: limit(1) }],
      },
      /rules\[0\]\.match: give "path" \(a prefix\) or "pattern", not both/,
    );
    bad(
      { upstream: 'http://a', rules: [{ name: 'a', match: { method: 'GE T' }, policies: limit(1) }] },
      /rules\[0\]\.match\.method: "GE T" is not an HTTP method/,
    );
    bad(
      { upstream: 'http://a', rules: [{ name: 'a', match: { pattern: '/files/*' }, policies: limit(1) }] },
      /rules\[0\]\.match\.pattern: Missing parameter name at index 8: \/files\/\* \(name wildcards/,
    );
    bad({ upstream: 'http://a', jwt: { secret: 'short' } }, /jwt\.secret: must be at least 16 characters/);
    bad({ upstream: 'http://a', jwt: {} }, /jwt: give exactly one of secret/);
    bad({ upstream: 'http://a', deny: ['10.0.0.0/99x'] }, /deny\[0\]: "10\.0\.0\.0\/99x" is neither/);
  });

  it('reads YAML files, and says what is wrong with one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'floodgate-proxy-'));
    dirs.push(dir);
    const file = join(dir, 'proxy.yaml');
    writeFileSync(
      file,
      'upstream: http://127.0.0.1:9\nrules:\n  - name: all\n    policies: { limit: 5, window: 1m }\n',
    );
    const config = loadProxyConfig(file);
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8080 });
    assert.equal(config.rules[0]!.key, 'ip');
    writeFileSync(file, 'upstream: [http://a\n');
    assert.throws(() => loadProxyConfig(file), /proxy\.yaml: not valid YAML/);
    writeFileSync(file, '- a list\n');
    assert.throws(() => loadProxyConfig(file), /must be a mapping of settings/);
    assert.throws(() => loadProxyConfig(join(dir, 'missing.yaml')), /cannot read config file .*ENOENT/);
  });
});

describe('proxy: the example of docs/proxy.md', () => {
  it('validates, starts, and limits as it says', async () => {
    const block = codeBlocks(docSection('docs/proxy.md', '`floodgate proxy`'), 'yaml')[0];
    assert.ok(block !== undefined, 'docs/proxy.md has the proxy configuration example');
    const data = { ...parse(block), listen: 0, admin: 0, upstream: up.url };
    const { logs, log } = capture();
    const proxy = await startProxy(validateProxyConfig(data, 'docs/proxy.md'), {
      log,
      env: { JWT_SECRET: 'x'.repeat(32) },
    });
    running.push(proxy);
    assert.deepEqual(
      await statuses(`${proxy.url}/login`, 6, { method: 'POST' }),
      [200, 200, 200, 200, 200, 429],
    );
    const withoutToken = await send(`${proxy.url}/orgs/7/x`, { headers: { Host: 'eu.example.com' } });
    assert.equal(withoutToken.status, 400, 'per-org needs a verified token');
    assert.equal((await send(`${proxy.url}/anything`)).status, 200);
    assert.ok(logs.some((l) => String(l.msg).startsWith('proxying')));
  });
});

describe('proxy: rules', () => {
  it('applies the first rule whose method, host and path match; other requests pass unlimited', async () => {
    const { proxy } = await proxyFor({
      upstream: up.url,
      rules: [
        { name: 'login', match: { method: 'POST', path: '/login' }, policies: limit(1) },
        { name: 'admin-host', match: { host: '*.admin.test' }, policies: limit(2) },
        { name: 'user', match: { pattern: '/users/:id' }, policies: limit(3) },
        { name: 'api', match: { path: '/api/' }, policies: limit(4) },
      ],
    });
    assert.deepEqual(await statuses(`${proxy.url}/login`, 2, { method: 'POST' }), [200, 429]);
    assert.deepEqual(await statuses(`${proxy.url}/login`, 3), [200, 200, 200], 'GET /login matches no rule');
    const host = { headers: { Host: 'eu.admin.test:8080' } };
    assert.deepEqual(await statuses(`${proxy.url}/anything`, 3, host), [200, 200, 429]);
    assert.deepEqual(await statuses(`${proxy.url}/users/7`, 4), [200, 200, 200, 429]);
    assert.deepEqual(await statuses(`${proxy.url}/users/7/posts`, 2), [200, 200], 'the pattern is anchored');
    assert.deepEqual(await statuses(`${proxy.url}/api`, 2), [200, 200]);
    assert.deepEqual(await statuses(`${proxy.url}/api/x`, 3), [200, 200, 429]);
    assert.deepEqual(
      await statuses(`${proxy.url}/apiary`, 5),
      [200, 200, 200, 200, 200],
      'prefixes end at a "/"',
    );
    assert.equal(await metric(proxy, 'floodgate_proxy_requests_total{rule="login",decision="limited"}'), 1);
    assert.equal(await metric(proxy, 'floodgate_proxy_requests_total{rule="",decision="unmatched"}'), 10);
  });

  it('matches the path the upstream will serve: dot segments, doubled slashes and escapes cannot dodge a rule', async () => {
    const { proxy } = await proxyFor({
      upstream: up.url,
      rules: [{ name: 'login', match: { path: '/login' }, policies: limit(1) }],
    });
    const raw = (target: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
        let out = '';
        socket.on('data', (d) => (out += d));
        socket.on('end', () => resolve(out));
        socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      });
    assert.match(await raw('/login'), /^HTTP\/1\.1 200/);
    for (const target of ['/static/../login', '//login', '/log%69n', '/%2e%2e/login', '/./login?x=1']) {
      assert.match(await raw(target), /^HTTP\/1\.1 429/, target);
    }
    const forwarded = up.seen.filter((s) => s.url.includes('login')).map((s) => s.url);
    assert.deepEqual(forwarded.slice(-1), ['/login'], 'the upstream got the resolved path');
  });

  it('matches paths without regard to case by default, in prefixes and patterns; caseSensitive: true for upstreams that care', async () => {
    const rules = [
      { name: 'login', match: { path: '/login' }, policies: limit(1) },
      { name: 'user', match: { pattern: '/users/:id' }, policies: limit(1) },
    ];
    const { proxy } = await proxyFor({ upstream: up.url, rules });
    assert.deepEqual(await statuses(`${proxy.url}/login`, 1), [200]);
    for (const path of ['/LOGIN', '/Login/', '/lOgIn/x'])
      assert.deepEqual(await statuses(`${proxy.url}${path}`, 1), [429], path);
    assert.deepEqual(await statuses(`${proxy.url}/USERS/7`, 2), [200, 429]);
    const strict = (await proxyFor({ upstream: up.url, caseSensitive: true, rules })).proxy;
    assert.deepEqual(await statuses(`${strict.url}/login`, 2), [200, 429]);
    assert.deepEqual(
      await statuses(`${strict.url}/LOGIN`, 2),
      [200, 200],
      'another path to a case-sensitive upstream',
    );
    assert.deepEqual(await statuses(`${strict.url}/Users/7`, 2), [200, 200]);
  });

  it('keeps each rule in its own key space, and allows or denies listed clients and keys', async () => {
    const { proxy } = await proxyFor({
      upstream: up.url,
      deny: ['10.66.0.0/16'],
      trustProxy: ['loopback'],
      rules: [
        { name: 'a', match: { path: '/a' }, policies: limit(1) },
        { name: 'b', match: { path: '/b' }, policies: limit(1), allow: ['10.1.2.3'] },
      ],
    });
    assert.deepEqual(await statuses(`${proxy.url}/a`, 2), [200, 429]);
    assert.deepEqual(
      await statuses(`${proxy.url}/b`, 2),
      [200, 429],
      'same client, same policy, another rule',
    );
    const from = (ip: string) => ({ headers: { 'X-Forwarded-For': ip } });
    assert.deepEqual(await statuses(`${proxy.url}/b`, 3, from('10.1.2.3')), [200, 200, 200]);
    const denied = await send(`${proxy.url}/a`, from('10.66.9.9'));
    assert.equal(denied.status, 403);
    assert.equal(json(denied).title, 'Forbidden');
  });
});

describe('proxy: hosts', () => {
  /** Raw request bytes to the proxy; resolves with everything it answered once it closes. */
  const rawRequest = (proxy: RunningProxy, text: string) =>
    new Promise<string>((resolve) => {
      const socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
      let out = '';
      socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
      socket.on('close', () => resolve(out));
      socket.write(text);
    });
  const statusOf = (raw: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);

  it('one host however it is written: case, trailing dot, port; in rules and in keys alike', async () => {
    const { proxy } = await proxyFor({
      upstream: up.url,
      rules: [
        { name: 'api', match: { host: 'API.example.com.' }, policies: limit(1) },
        { name: 'wild', match: { host: '*.Admin.Test' }, policies: limit(1) },
        { name: 'v6', match: { host: '[::1]' }, policies: limit(1) },
        { name: 'by-host', match: { path: '/by-host' }, key: { header: 'Host' }, policies: limit(1) },
      ],
    });
    const as = (host: string) => ({ headers: { Host: host } });
    assert.equal((await send(`${proxy.url}/x`, as('api.example.com'))).status, 200);
    for (const host of [
      'api.example.com.',
      'API.EXAMPLE.COM.',
      'api.example.com.:8080',
      'Api.Example.Com:80',
    ]) {
      assert.equal((await send(`${proxy.url}/x`, as(host))).status, 429, host);
    }
    assert.deepEqual(
      [
        (await send(`${proxy.url}/x`, as('eu.admin.test'))).status,
        (await send(`${proxy.url}/x`, as('EU.admin.TEST.:1'))).status,
      ],
      [200, 429],
    );
    assert.deepEqual(
      [
        (await send(`${proxy.url}/x`, as('[::1]:8080'))).status,
        (await send(`${proxy.url}/x`, as('[::1].'))).status,
      ],
      [200, 400],
      'an IPv6 literal matches without brackets or port; a dot after one is not a host',
    );
    assert.equal((await send(`${proxy.url}/x`, as('[::1]'))).status, 429);
    assert.equal((await send(`${proxy.url}/by-host`, as('shop.example'))).status, 200);
    assert.equal(
      (await send(`${proxy.url}/by-host`, as('SHOP.example.:8080'))).status,
      429,
      'one key per host',
    );
    assert.equal((await send(`${proxy.url}/by-host`, as('other.example'))).status, 200);
  });

  it('refuses a rule host that is no host name, or has a port', () => {
    for (const host of ['api.example.com:8080', '[::1]:80', 'a b.test', 'x/y', '*.']) {
      assert.throws(
        () =>
          validateProxyConfig({
            upstream: 'http://a',
            rules: [{ name: 'r', match: { host }, policies: limit(1) }],
          }),
        /rules\[0\]\.match\.host: must be host names/,
        host,
      );
    }
    for (const host of ['API.example.com.', '*.example.com', '::1', '[::1]', '127.0.0.1', 'localhost']) {
      validateProxyConfig({
        upstream: 'http://a',
        rules: [{ name: 'r', match: { host }, policies: limit(1) }],
      });
    }
  });

  it('the authority of an absolute-form target wins over Host (RFC 9112), for the rule and for the upstream', async () => {
    const { proxy } = await proxyFor({
      upstream: up.url,
      rules: [{ name: 'api', match: { host: 'api.example.com' }, policies: limit(1) }],
    });
    const get = (target: string, host = 'elsewhere.test') =>
      rawRequest(proxy, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    assert.equal(statusOf(await get('http://api.example.com./echo?q=1')), 200);
    const seen = up.seen.at(-1)!;
    assert.equal(seen.url, '/echo?q=1', 'forwarded in origin form');
    assert.equal(seen.headers.host, 'api.example.com.', 'the authority replaces Host');
    assert.equal(seen.headers['x-forwarded-host'], 'api.example.com.');
    assert.equal(statusOf(await get('HTTP://API.example.com:8080/other')), 429);
    assert.equal(
      statusOf(await get('http://elsewhere.test/x', 'api.example.com')),
      200,
      'Host is ignored then',
    );
    for (const bad of ['http://user@api.example.com/', 'http:///x', 'ftp://api.example.com/', '*']) {
      assert.equal(statusOf(await get(bad)), 400, bad);
    }
  });

  it('a request with two Host fields, none (HTTP/1.1), or one that is no host name: 400, never forwarded', async () => {
    const { proxy } = await proxyFor({
      upstream: up.url,
      rules: [{ name: 'api', match: { host: 'api.example.com' }, policies: limit(100) }],
    });
    const before = up.seen.length;
    const get = (fields: string, version = '1.1') =>
      rawRequest(proxy, `GET /x HTTP/${version}\r\n${fields}Connection: close\r\n\r\n`);
    assert.equal(
      statusOf(await get('Host: other.test\r\nHost: api.example.com\r\n')),
      400,
      'two Host fields',
    );
    assert.equal(statusOf(await get('Host: api.example.com\r\nhost: other.test\r\n')), 400, 'in any case');
    assert.equal(statusOf(await get('')), 400, 'no Host in HTTP/1.1');
    for (const bad of [
      'api.example.com/x',
      'api example.com',
      '[::1',
      'api.example.com:80:80',
      'a.test:http',
      'x@api.example.com',
    ]) {
      assert.equal(statusOf(await get(`Host: ${bad}\r\n`)), 400, bad);
    }
    assert.equal(up.seen.length, before);
    // HTTP/1.0 may omit Host: then only rules without a host apply, and the upstream gets its own.
    assert.equal(statusOf(await get('', '1.0')), 200);
  });
});

describe('proxy: keys', () => {
  it('limits per header, API key, Basic user, and client IP with IPv6 prefix grouping', async () => {
    const { proxy } = await proxyFor({
      upstream: up.url,
      trustProxy: ['loopback'],
      rules: [
        {
          name: 'tenant',
          match: { path: '/tenant' },
          key: { header: 'X-Tenant' },
          onMissingKey: 'reject',
          policies: limit(1),
        },
        { name: 'keyed', match: { path: '/keyed' }, key: { apiKey: 'X-Key' }, policies: limit(1) },
        { name: 'basic', match: { path: '/basic' }, key: 'basic-user', policies: limit(1) },
        { name: 'ip', match: { path: '/ip' }, policies: limit(1) },
      ],
    });
    const h = (headers: Record<string, string>) => ({ headers });
    assert.equal((await send(`${proxy.url}/tenant`, h({ 'X-Tenant': 'acme' }))).status, 200);
    assert.equal((await send(`${proxy.url}/tenant`, h({ 'X-Tenant': 'acme' }))).status, 429);
    assert.equal((await send(`${proxy.url}/tenant`, h({ 'X-Tenant': 'globex' }))).status, 200);
    const missing = await send(`${proxy.url}/tenant`);
    assert.equal(missing.status, 400);
    assert.match(json(missing).detail, /carries no header x-tenant/);
    assert.deepEqual(await statuses(`${proxy.url}/keyed`, 2, h({ 'X-Key': 'k1' })), [200, 429]);
    assert.deepEqual(await statuses(`${proxy.url}/keyed`, 1, h({ Authorization: 'Bearer k2' })), [200]);
    const basic = (user: string) =>
      h({ Authorization: `Basic ${Buffer.from(`${user}:pw`).toString('base64')}` });
    assert.deepEqual(await statuses(`${proxy.url}/basic`, 2, basic('ann')), [200, 429]);
    assert.deepEqual(await statuses(`${proxy.url}/basic`, 1, basic('bob')), [200]);
    const v6 = (ip: string) => h({ 'X-Forwarded-For': ip });
    assert.equal((await send(`${proxy.url}/ip`, v6('2001:db8::1'))).status, 200);
    assert.equal((await send(`${proxy.url}/ip`, v6('2001:db8::2'))).status, 429, 'same /64');
    assert.equal((await send(`${proxy.url}/ip`, v6('2001:db8:0:1::1'))).status, 200, 'another /64');
  });

  it('keys by a claim of a verified JWT (HS256 secret), and never by an unverified one', async () => {
    const secret = 'a-test-secret-of-32-characters!!';
    const { proxy } = await proxyFor({
      upstream: up.url,
      jwt: { secret, issuer: 'floodgate-tests' },
      rules: [{ name: 'jwt', key: { jwt: 'org.id' }, onMissingKey: 'reject', policies: limit(1) }],
    });
    const token = (org: string, options: { key?: string; issuer?: string; exp?: string } = {}) =>
      new SignJWT({ org: { id: org } })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('someone')
        .setIssuer(options.issuer ?? 'floodgate-tests')
        .setExpirationTime(options.exp ?? '5m')
        .sign(new TextEncoder().encode(options.key ?? secret));
    const bearer = async (t: Promise<string>) => ({ headers: { Authorization: `Bearer ${await t}` } });
    assert.equal((await send(proxy.url, await bearer(token('acme')))).status, 200);
    assert.equal(
      (await send(proxy.url, await bearer(token('acme')))).status,
      429,
      'another token, same claim',
    );
    assert.equal((await send(proxy.url, await bearer(token('globex')))).status, 200);
    for (const forged of [
      token('globex2', { key: 'an-attackers-secret-of-32-chars!' }),
      token('globex3', { issuer: 'someone-else' }),
      token('globex4', { exp: '-1m' }),
    ]) {
      const reply = await send(proxy.url, await bearer(forged));
      assert.equal(reply.status, 400, 'a token that does not verify gives no key');
    }
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"org":{"id":"x"}}').toString('base64url')}.`;
    assert.equal((await send(proxy.url, { headers: { Authorization: `Bearer ${unsigned}` } })).status, 400);
  });

  it('refuses to start with a public key it cannot use', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'floodgate-proxy-'));
    dirs.push(dir);
    const start = (jwt: Record<string, unknown>) =>
      startProxy(validateProxyConfig({ upstream: up.url, listen: 0, admin: false, jwt }), {
        log: capture().log,
      });
    await assert.rejects(
      start({ publicKeyFile: join(dir, 'nope.pem') }),
      /jwt\.publicKeyFile: cannot read ".*nope\.pem": ENOENT/,
    );
    const garbled = '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n';
    await assert.rejects(start({ publicKey: garbled }), /jwt\.publicKey: not a usable public key/);
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    await assert.rejects(
      start({ publicKey: pem, algorithms: ['HS256'] }),
      /jwt\.algorithms: HS\* algorithms need a secret/,
    );
    writeFileSync(join(dir, 'ec.pem'), pem);
    const ok = await start({ publicKeyFile: join(dir, 'ec.pem') });
    await ok.stop();
  });

  it('verifies RS256 tokens with a configured public key', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const { proxy } = await proxyFor({
      upstream: up.url,
      jwt: { publicKey: publicKey.export({ type: 'spki', format: 'pem' }) as string },
      rules: [{ name: 'jwt', key: { jwt: 'sub' }, onMissingKey: 'reject', policies: limit(1) }],
    });
    const token = (sub: string) =>
      new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject(sub).sign(privateKey);
    const bearer = async (sub: string) => ({ headers: { Authorization: `Bearer ${await token(sub)}` } });
    assert.equal((await send(proxy.url, await bearer('u1'))).status, 200);
    assert.equal((await send(proxy.url, await bearer('u1'))).status, 429);
    assert.equal((await send(proxy.url, await bearer('u2'))).status, 200);
    const hs = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('u3')
      .sign(new TextEncoder().encode('x'.repeat(32)));
    assert.equal(
      (await send(proxy.url, { headers: { Authorization: `Bearer ${hs}` } })).status,
      400,
      'no algorithm confusion',
    );
  });
});

describe('proxy: logs', () => {
  it('logs the first refusal of a rule at once, then sums refusals up instead of a line per request', async () => {
    const { proxy, logs } = await proxyFor({
      upstream: up.url,
      rules: [{ name: 'tight', policies: limit(1) }],
    });
    assert.deepEqual(await statuses(`${proxy.url}/x`, 6), [200, 429, 429, 429, 429, 429]);
    const refused = () => logs.filter((l) => l.msg === 'refused');
    assert.equal(refused().length, 1);
    assert.equal(refused()[0]!.rule, 'tight');
    assert.equal(refused()[0]!.status, 429);
    await proxy.stop(); // flushes the summary
    assert.equal(refused().length, 2);
    assert.equal(refused()[1]!.refused, 4);
  });

  it('a refusal names the client the limit was keyed on, its policy and reason, not only the socket peer', async () => {
    const { proxy, logs } = await proxyFor({
      upstream: up.url,
      trustProxy: ['loopback'],
      rules: [{ name: 'tight', policies: [{ name: 'one', limit: 1, window: '1h' }] }],
    });
    const from = (ip: string) => send(`${proxy.url}/x`, { headers: { 'x-forwarded-for': ip } });
    for (let i = 0; i < 3; i++) await from('2001:db8:1:2::99');
    const refused = () => logs.filter((l) => l.msg === 'refused');
    assert.equal(refused()[0]!.client, '2001:db8:1:2:0:0:0:0/64');
    assert.equal(refused()[0]!.policy, 'one');
    assert.equal(refused()[0]!.reason, 'limit');
    assert.equal(refused()[0]!.peer, '127.0.0.1');
    await proxy.stop();
    assert.deepEqual(
      refused().map((l) => [l.decision, l.client, l.refused]),
      [
        ['limited', '2001:db8:1:2:0:0:0:0/64', 1],
        ['limited', '2001:db8:1:2:0:0:0:0/64', 1],
      ],
    );
  });
});

describe('proxy: shadow mode', () => {
  it('lets refused requests through, and logs and counts them', async () => {
    const { proxy, logs } = await proxyFor({
      upstream: up.url,
      rules: [{ name: 'trial', shadow: true, policies: limit(2) }],
    });
    assert.deepEqual(await statuses(`${proxy.url}/x`, 4), [200, 200, 200, 200]);
    const reply = await send(`${proxy.url}/x`);
    assert.equal(reply.headers.ratelimit, undefined, 'clients see nothing of a shadow rule');
    assert.equal(
      await metric(proxy, 'floodgate_proxy_requests_total{rule="trial",decision="shadow_limited"}'),
      3,
    );
    assert.equal(await metric(proxy, 'floodgate_proxy_requests_total{rule="trial",decision="allowed"}'), 2);
    // Logged as real refusals are: the first at once, then summed up, never a line per request.
    const shadowed = () => logs.filter((l) => l.shadow === true);
    assert.equal(shadowed().length, 1);
    assert.equal(shadowed()[0]!.rule, 'trial');
    assert.equal(shadowed()[0]!.status, 429);
    assert.equal(shadowed()[0]!.msg, 'would have refused (shadow mode)');
    await proxy.stop(); // flushes the summary
    assert.equal(shadowed().length, 2);
    assert.equal(shadowed()[1]!.refused, 2);
  });
});

describe('proxy: forwarding', () => {
  let proxy: RunningProxy;
  before(async () => {
    ({ proxy } = await proxyFor({ upstream: `${up.url}/`, rules: [{ name: 'all', policies: limit(1000) }] }));
  });

  it('forwards method, path, query, body and end-to-end headers, and answers with the upstream response and rate-limit fields', async () => {
    const reply = await send(`${proxy.url}/echo?x=1&y=%20`, {
      method: 'PUT',
      headers: { 'Content-Type': 'text/plain', 'X-Custom': 'yes', 'X-Forwarded-For': '203.0.113.9' },
      body: 'hello',
    });
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.headers['set-cookie'], ['a=1', 'b=2'], 'repeated fields kept');
    assert.match(String(reply.headers.ratelimit), /^"fixed-window-1000-per-1m";r=999;t=\d+$/);
    const seen = json(reply);
    assert.equal(seen.method, 'PUT');
    assert.equal(seen.url, '/echo?x=1&y=%20');
    assert.equal(seen.bytes, 5);
    assert.equal(seen.headers['x-custom'], 'yes');
    assert.equal(seen.headers.host, new URL(proxy.url).host, 'the client Host is kept');
    assert.equal(seen.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1', 'the peer is appended');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], new URL(proxy.url).host);
  });

  it('drops hop-by-hop fields both ways, including those the Connection field names', async () => {
    const reply = await send(`${proxy.url}/echo`, {
      headers: {
        Connection: 'keep-alive, X-Hop',
        'X-Hop': 'secret',
        'Keep-Alive': 'timeout=1',
        TE: 'trailers',
        'Proxy-Connection': 'x',
      },
    });
    const seen = json(reply).headers;
    for (const name of ['x-hop', 'keep-alive', 'te', 'proxy-connection'])
      assert.equal(seen[name], undefined, name);
    const back = await send(`${proxy.url}/hop`);
    assert.equal(back.headers['x-up-hop'], undefined);
    assert.equal(back.headers['keep-alive'], undefined);
    assert.equal(back.headers['x-end'], 'kept');
  });

  it('writes Forwarded instead when configured', async () => {
    const { proxy: p } = await proxyFor({ upstream: up.url, forwarded: 'forwarded', preserveHost: false });
    const seen = json(await send(`${p.url}/echo`, { headers: { Forwarded: 'for=198.51.100.7' } })).headers;
    assert.equal(seen.forwarded, `for=198.51.100.7, for=127.0.0.1;host="${new URL(p.url).host}";proto=http`);
    assert.equal(seen['x-forwarded-for'], undefined);
    assert.equal(seen.host, new URL(up.url).host, 'Host set to the upstream');
  });

  it('streams a large upload and a large download intact, without buffering them', async () => {
    const size = 48 * 1024 * 1024;
    const data = pattern(size);
    // The upload: the upstream must see the first chunk while the client still holds the rest back.
    let sendRest!: () => void;
    const rest = new Promise<void>((r) => (sendRest = r));
    const body = Readable.from(
      (async function* () {
        yield data.subarray(0, 65_536);
        await rest;
        for (let at = 65_536; at < size; at += 1 << 20)
          yield data.subarray(at, Math.min(size, at + (1 << 20)));
      })(),
    );
    const reply = send(`${proxy.url}/upload-gate`, {
      method: 'POST',
      body,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    await up.firstChunk;
    sendRest();
    up.release();
    const seen = json(await reply);
    assert.equal(seen.bytes, size);
    assert.equal(seen.sha256, createHash('sha256').update(data).digest('hex'));
    // The download: read back and hash.
    const hash = createHash('sha256');
    let bytes = 0;
    await new Promise<void>((resolve, reject) => {
      request(`${proxy.url}/download/${size}`, { agent: false }, (res) => {
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          hash.update(c);
        });
        res.on('end', resolve);
        res.on('error', reject);
      }).end();
    });
    assert.equal(bytes, size);
    assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
  });

  it('reuses upstream connections (keep-alive pool)', async () => {
    const { proxy: p } = await proxyFor({ upstream: up.url });
    const before = up.connections();
    for (let i = 0; i < 20; i++) assert.equal((await send(`${p.url}/echo`)).status, 200);
    assert.equal(up.connections() - before, 1, '20 sequential requests over one upstream connection');
  });
});

describe('proxy: malformed requests', () => {
  it('a malformed request pipelined behind a streaming response closes the connection after it, never a 400 inside it', async () => {
    const { proxy } = await proxyFor({ upstream: up.url });
    const socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    const closed = once(socket, 'close');
    socket.write('GET /download/300000 HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n');
    await closed;
    const raw = Buffer.concat(chunks).toString('latin1');
    assert.doesNotMatch(raw, /400 Bad Request/);
    assert.equal(raw.match(/HTTP\/1\.1 /g)?.length, 1, 'one response');
    assert.match(raw, /^HTTP\/1\.1 200 /);
    const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
    let decoded = 0;
    let at = 0;
    for (;;) {
      const end = body.indexOf('\r\n', at);
      const size = Number.parseInt(body.slice(at, end), 16);
      if (size === 0) break;
      decoded += size;
      at = end + 2 + size + 2;
    }
    assert.equal(decoded, 300_000, 'the chunked response is whole');
    // Alone on a connection, a malformed request still gets its 400.
    const lone = connect(Number(new URL(proxy.url).port), '127.0.0.1');
    let answer = '';
    lone.on('data', (d) => (answer += d));
    lone.write('NOT HTTP AT ALL\r\n\r\n');
    await once(lone, 'close');
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request/);
  });
});

// A time limit well under the idle timeout (60 s): a hang fails instead of being waited out.
describe('proxy: malformed request bodies', { timeout: 10_000 }, () => {
  /** A raw connection to the proxy: what it received, and a promise of its close. */
  function rawClient(proxy: RunningProxy) {
    const socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('error', () => {});
    const closed = once(socket, 'close');
    return { socket, closed, received: () => received };
  }

  const head = (path: string, fields: string) => `POST ${path} HTTP/1.1\r\nHost: x\r\n${fields}\r\n`;

  for (const [what, bad] of [
    ['a chunk size that is not hex', 'zz\r\nhello\r\n'],
    ['a chunk size that overflows', 'fffffffffffffffffffff\r\nhello\r\n'],
    ['a chunk-size line longer than any chunk extension allowed', `5;${'x'.repeat(20_000)}\r\nhello\r\n`],
  ] as const) {
    it(`${what}: 400 at once, the client connection closed, the upstream request aborted`, async () => {
      const { proxy } = await proxyFor({ upstream: up.url, rules: [{ name: 'all', policies: limit(100) }] });
      const client = rawClient(proxy);
      const arrived = up.nextRequest();
      const aborted = up.nextAbort();
      client.socket.write(`${head('/echo', 'Transfer-Encoding: chunked\r\n')}5\r\nfirst\r\n`);
      assert.equal(await arrived, '/echo');
      client.socket.write(bad);
      await client.closed;
      assert.match(client.received(), /^HTTP\/1\.1 400 /);
      assert.equal(client.received().match(/HTTP\/1\.1 /g)?.length, 1, 'one response');
      assert.match(client.received(), /The request body is malformed/);
      assert.equal(await aborted, '/echo');
      assert.equal((await send(`${proxy.url}/echo`)).status, 200, 'still serving');
      // The client's fault, not the upstream's.
      assert.equal(await metric(proxy, 'floodgate_proxy_upstream_errors_total{kind="reset"}'), 0);
    });
  }

  it('a malformed body that arrives while the rule is still being decided: 400, and nothing forwarded', async () => {
    // A JWT key is decided asynchronously: the body's bad chunk is parsed before the decision is made.
    const { proxy } = await proxyFor({
      upstream: up.url,
      jwt: { secret: 'a-test-secret-of-32-characters!!' },
      rules: [{ name: 'jwt', key: { jwt: 'sub' }, policies: limit(100) }],
    });
    const before = up.seen.length;
    const client = rawClient(proxy);
    client.socket.write(`${head('/echo', 'Transfer-Encoding: chunked\r\n')}5\r\nfirst\r\nzz\r\n`);
    await client.closed;
    assert.match(client.received(), /^HTTP\/1\.1 400 /);
    assert.equal((await send(`${proxy.url}/echo`)).status, 200, 'still serving');
    assert.equal(up.seen.length, before + 1, 'only the later request reached the upstream');
  });

  it('a malformed chunk after the upstream began answering: the connection is cut, no 400 inside the response', async () => {
    const { proxy } = await proxyFor({ upstream: up.url });
    const client = rawClient(proxy);
    const aborted = up.nextAbort();
    client.socket.write(`${head('/early', 'Transfer-Encoding: chunked\r\n')}5\r\nfirst\r\n`);
    await new Promise<void>((resolve) =>
      client.socket.on('data', () => client.received().includes('early') && resolve()),
    );
    client.socket.write('zz\r\n');
    await client.closed;
    assert.match(client.received(), /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(client.received(), /400 Bad Request/);
    assert.equal(await aborted, '/early');
  });

  it('a client that closes mid-body: the upstream request is aborted (chunked and with a length)', async () => {
    const { proxy } = await proxyFor({ upstream: up.url });
    for (const fields of ['Transfer-Encoding: chunked\r\n', 'Content-Length: 100\r\n']) {
      const client = rawClient(proxy);
      const arrived = up.nextRequest();
      const aborted = up.nextAbort();
      client.socket.write(`${head('/echo', fields)}${fields.startsWith('T') ? '5\r\nfirst\r\n' : 'first'}`);
      assert.equal(await arrived, '/echo');
      client.socket.destroy();
      assert.equal(await aborted, '/echo', fields);
    }
  });

  it('both Content-Length and Transfer-Encoding: 400, and the upstream never sees the request', async () => {
    const { proxy } = await proxyFor({ upstream: up.url });
    const before = up.seen.length;
    const client = rawClient(proxy);
    client.socket.write(
      `${head('/echo', 'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n')}0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    await client.closed;
    assert.match(client.received(), /^HTTP\/1\.1 400 /);
    assert.equal(up.seen.length, before);
  });
});

describe('proxy: upstream failures', () => {
  it('answers 502 when the upstream is down, and 504 when it does not answer in time', async () => {
    const { proxy } = await proxyFor({ upstream: 'http://127.0.0.1:9', timeouts: { response: '200ms' } });
    const down = await send(`${proxy.url}/x`);
    assert.equal(down.status, 502);
    assert.equal(down.headers['content-type'], 'application/problem+json');
    assert.match(json(down).detail, /ECONNREFUSED/);
    const { proxy: slow } = await proxyFor({ upstream: up.url, timeouts: { response: '200ms' } });
    const late = await send(`${slow.url}/hang`);
    assert.equal(late.status, 504);
    assert.match(json(late).detail, /no response from the upstream within 200 ms/);
    assert.equal(await metric(slow, 'floodgate_proxy_upstream_errors_total{kind="response-timeout"}'), 1);
    assert.equal(await metric(proxy, 'floodgate_proxy_upstream_errors_total{kind="connect"}'), 1);
  });

  it('lets an upload outlast the response timeout: the wait for the answer starts once the body is sent', async () => {
    const { proxy } = await proxyFor({ upstream: up.url, timeouts: { response: '150ms', idle: '5s' } });
    // A slow client: 8 chunks 50 ms apart, so the body takes over twice the response timeout to arrive.
    const body = Readable.from(
      (async function* () {
        for (let i = 0; i < 8; i++) {
          await new Promise((r) => setTimeout(r, 50));
          yield Buffer.alloc(1024, i);
        }
      })(),
    );
    const reply = await send(`${proxy.url}/echo`, { method: 'POST', body });
    assert.equal(reply.status, 200);
    assert.equal(json(reply).bytes, 8 * 1024);
  });

  it('cuts a response the upstream stalls in for longer than the idle timeout', async () => {
    const { proxy } = await proxyFor({ upstream: up.url, timeouts: { idle: '200ms' } });
    await assert.rejects(send(`${proxy.url}/stall`), /aborted|socket hang up|ECONNRESET/);
    assert.equal(await metric(proxy, 'floodgate_proxy_upstream_errors_total{kind="idle-timeout"}'), 1);
  });

  it('sends a GET again on a new connection when a reused one turns out closed, but never a POST', async () => {
    // One connection at a time, so each request goes on the one before's connection when it is still open.
    const { proxy } = await proxyFor({ upstream: up.url, maxSockets: 1 });
    const before = up.connections();
    assert.equal((await send(`${proxy.url}/drop-reused`)).status, 200);
    const again = await send(`${proxy.url}/drop-reused`);
    assert.equal(again.status, 200, 'retried once, on a fresh connection');
    assert.equal(again.body, 'fresh');
    assert.equal(up.connections() - before, 2);
    const post = await send(`${proxy.url}/drop-reused`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 502, 'a request with a body is not sent twice');
    assert.match(json(post).detail, /upstream failed: other side closed/);
    assert.equal(await metric(proxy, 'floodgate_proxy_upstream_errors_total{kind="reset"}'), 1);
  });

  it('cuts the client connection when the upstream dies mid-response, and keeps serving', async () => {
    const { proxy } = await proxyFor({ upstream: up.url });
    await assert.rejects(send(`${proxy.url}/reset`), /aborted|socket hang up|ECONNRESET/);
    assert.equal((await send(`${proxy.url}/echo`)).status, 200);
  });

  it('answers a malformed request with 400 and keeps serving', async () => {
    const { proxy } = await proxyFor({ upstream: up.url, rules: [{ name: 'all', policies: limit(100) }] });
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
        let out = '';
        socket.on('data', (d) => (out += d));
        socket.on('close', () => resolve(out));
        socket.write(text);
      });
    assert.match(await raw('GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/);
    assert.match(
      await raw('GET ftp://elsewhere.test/ HTTP/1.1\r\nHost: x\r\n\r\n'),
      /^HTTP\/1\.1 400[\s\S]*application\/problem\+json[\s\S]*The request target is not a path/,
    );
    assert.equal((await send(`${proxy.url}/echo`)).status, 200);
  });
});

describe('proxy: WebSocket', () => {
  it('passes upgrades through, both ways, and limits them like requests', async () => {
    const { proxy } = await proxyFor({ upstream: up.url, rules: [{ name: 'ws', policies: limit(1) }] });
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/socket`);
    const messages: string[] = [];
    ws.on('message', (m) => messages.push(m.toString()));
    await once(ws, 'open');
    ws.send('ping');
    ws.send(Buffer.alloc(200_000, 7));
    while (messages.length < 3) await once(ws, 'message');
    assert.equal(messages[0], 'hello 127.0.0.1');
    assert.equal(messages[1], 'ping');
    assert.equal(messages[2]!.length, 200_000);
    assert.equal(await metric(proxy, 'floodgate_proxy_upgraded_connections'), 1);
    const second = new WebSocket(`${proxy.url.replace('http', 'ws')}/socket`);
    const [, response] = await once(second, 'unexpected-response');
    assert.equal(response.statusCode, 429);
    ws.close();
    await once(ws, 'close');
  });

  it("an open WebSocket holds no shed slot: the slot is the handshake's", async () => {
    const { proxy } = await proxyFor({
      upstream: up.url,
      shed: { limit: { algorithm: 'aimd', initialLimit: 3 }, eventLoop: false },
      rules: [{ name: 'all', policies: limit(1000) }],
    });
    const sockets: WebSocket[] = [];
    for (let i = 0; i < 6; i++) {
      // One after another: each handshake takes a slot while it runs (two are open to default).
      const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/socket`);
      await once(ws, 'open');
      sockets.push(ws);
    }
    assert.equal(await metric(proxy, 'floodgate_proxy_shed_inflight'), 0);
    assert.equal((await send(`${proxy.url}/`)).status, 200, 'ordinary requests are not shed behind them');
    for (const ws of sockets) ws.close();
    await Promise.all(sockets.map((ws) => once(ws, 'close')));
  });

  it('relays an upstream that refuses an upgrade, as it answered', async () => {
    const { proxy } = await proxyFor({ upstream: up.url });
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/refuse-upgrade`);
    const [, response] = await once(ws, 'unexpected-response');
    assert.equal(response.statusCode, 401);
    const body: Buffer[] = [];
    for await (const chunk of response) body.push(chunk);
    assert.equal(Buffer.concat(body).toString(), 'Unauthorized');
    assert.equal((await send(`${proxy.url}/echo`)).status, 200, 'and keeps serving');
  });

  it('answers 504 when the connection to the upstream is not made in time', async () => {
    const dark = await startDarkListener();
    const unfill = await dark.fill();
    try {
      const { proxy } = await proxyFor({ upstream: dark.url, timeouts: { connect: '200ms' } });
      const reply = await send(`${proxy.url}/x`);
      assert.equal(reply.status, 504);
      assert.match(json(reply).detail, /no connection to the upstream within 200 ms/);
      assert.equal(await metric(proxy, 'floodgate_proxy_upstream_errors_total{kind="connect-timeout"}'), 1);
    } finally {
      unfill();
      await dark.close();
    }
  });
});

describe('proxy: credentials in URLs', () => {
  it('an upstream with a password is logged without it, and so is a rejected reload that echoes one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'floodgate-proxy-'));
    dirs.push(dir);
    const file = join(dir, 'proxy.yaml');
    const upstream = `http://svc:upstream-secret-1@${new URL(up.url).host}`;
    writeFileSync(file, stringify({ listen: 0, admin: 0, upstream }));
    const { logs, log } = capture();
    const proxy = await startProxy(loadProxyConfig(file), { file, watch: false, log });
    running.push(proxy);
    assert.equal((await send(`${proxy.url}/x`)).status, 200);
    writeFileSync(file, stringify({ listen: 0, admin: 0, upstream, store: 'mongodb://u:store-secret-2@h' }));
    assert.equal(proxy.reload(), false);
    const text = JSON.stringify(logs);
    assert.match(text, /http:\/\/svc:\*\*\*@127\.0\.0\.1/);
    assert.match(text, /mongodb:\/\/u:\*\*\*@h/);
    assert.doesNotMatch(text, /secret/);
  });
});

describe('proxy: live reload', () => {
  it('applies a valid new file, keeps the old one when the new is invalid, and never drops a request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'floodgate-proxy-'));
    dirs.push(dir);
    const file = join(dir, 'proxy.yaml');
    const write = (limitN: number, connect = '5s') =>
      writeFileSync(
        file,
        stringify({
          listen: 0,
          admin: 0,
          upstream: up.url,
          timeouts: { connect },
          rules: [{ name: 'r', policies: limit(limitN) }],
        }),
      );
    write(1);
    const { logs, log } = capture();
    const proxy = await startProxy(loadProxyConfig(file), { file, watch: true, log });
    running.push(proxy);
    // A slow request in flight across the reloads.
    const slow = send(`${proxy.url}/slow`);
    assert.deepEqual(await statuses(`${proxy.url}/x`, 1), [429], 'the in-flight request took the only token');
    const applied = async (n: number) => {
      while ((await metric(proxy, 'floodgate_proxy_config_reloads_total{result="applied"}')) < n)
        await new Promise((r) => setImmediate(r));
    };
    // On file change; a new connect timeout also makes new upstream pools, the old ones finishing their requests.
    write(3, '4s');
    await applied(1);
    assert.deepEqual(
      await statuses(`${proxy.url}/y`, 4),
      [200, 200, 200, 429],
      'new limit, new policy state',
    );
    writeFileSync(file, 'upstream: http://a\nrules: [{ name: r, policies: [{ limit: -1, window: 1m }] }]\n');
    assert.equal(proxy.reload(), false);
    assert.deepEqual(await statuses(`${proxy.url}/y`, 1), [429], 'the old configuration still serves');
    const rejected = logs.find((l) => l.msg === 'configuration rejected; still serving the previous one');
    assert.match(String(rejected?.reason), /rules\[0\]\.policies\[0\]\.limit: must be a positive integer/);
    writeFileSync(
      file,
      stringify({ listen: 1, admin: 0, upstream: up.url, rules: [{ name: 'r', policies: limit(5) }] }),
    );
    assert.equal(proxy.reload(), true);
    assert.ok(logs.some((l) => l.field === 'listen' && /next restart/.test(String(l.msg))));
    assert.equal((await send(`${proxy.url}/z`)).status, 200, 'still listening where it was');
    assert.equal((await slow).status, 200, 'the request in flight completed');
  });
});

describe('proxy: two proxies sharing Redis', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(() => redis.stop());

  it('enforce one limit between them, under concurrency', async () => {
    const config = { upstream: up.url, store: redis.url, rules: [{ name: 'shared', policies: limit(5) }] };
    const [{ proxy: a }, { proxy: b }] = await Promise.all([proxyFor(config), proxyFor(config)]);
    const replies = await Promise.all(
      Array.from({ length: 40 }, (_, i) => send(`${(i % 2 === 0 ? a : b).url}/echo`)),
    );
    const allowed = replies.filter((r) => r.status === 200).length;
    assert.equal(allowed, 5);
    assert.equal(replies.filter((r) => r.status === 429).length, 35);
  });

  it('with quota leases, still exactly the limit between them, most decisions made locally', async () => {
    const config = {
      upstream: up.url,
      store: redis.url,
      leases: true,
      rules: [{ name: 'leased', policies: limit(300) }],
    };
    const [{ proxy: a }, { proxy: b }] = await Promise.all([proxyFor(config), proxyFor(config)]);
    let allowed = 0;
    for (let wave = 0; wave < 10; wave++) {
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, i) => send(`${(i % 2 === 0 ? a : b).url}/echo`)),
      );
      allowed += replies.filter((r) => r.status === 200).length;
    }
    assert.equal(allowed, 300, 'exactly the limit across both proxies');
    const local =
      (await metric(a, 'floodgate_store_decisions_total{path="lease"}')) +
      (await metric(b, 'floodgate_store_decisions_total{path="lease"}'));
    assert.ok(local > 150, `${local} decisions made from leases`);
    assert.ok((await metric(a, 'floodgate_store_leases_total')) > 0);
    assert.ok((await metric(a, 'floodgate_store_script_calls_total')) > 0);
  });

  it('refuses leases without Redis, naming the field', () => {
    assert.throws(
      () => validateProxyConfig({ upstream: up.url, leases: true }, 'proxy.yaml'),
      /proxy\.yaml: leases: quota leases share a Redis store's quota; set "store" to a Redis URL$/,
    );
  });
});

describe('proxy: shedding load for the upstream', () => {
  it('past the adaptive limit, 503 temporary-reduced-capacity at once; counted by class; slots come back', async () => {
    const { proxy } = await proxyFor({
      upstream: up.url,
      // Three slots: two for default, and the last one kept for critical.
      shed: { limit: { algorithm: 'aimd', initialLimit: 3 }, eventLoop: false },
      rules: [{ name: 'all', policies: limit(1000), priority: 'default' }],
    });
    const replies = await Promise.all(Array.from({ length: 6 }, () => send(`${proxy.url}/slow`)));
    const codes = replies.map((r) => r.status).sort();
    assert.deepEqual(codes, [200, 200, 503, 503, 503, 503]);
    const shed = replies.find((r) => r.status === 503)!;
    assert.equal(shed.headers['retry-after'], '1');
    assert.equal(
      json(shed).type,
      'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
    );
    assert.equal(await metric(proxy, 'floodgate_proxy_shed_total{class="default"}'), 4);
    assert.equal(await metric(proxy, 'floodgate_proxy_requests_total{rule="all",decision="shed"}'), 4);
    assert.equal(await metric(proxy, 'floodgate_proxy_shed_inflight'), 0);
    assert.ok((await metric(proxy, 'floodgate_proxy_shed_limit')) >= 3);
  });

  it('a rule without policies only sheds: no store call, no rate-limit fields', async () => {
    const redis = await RedisServer.start();
    try {
      const { proxy } = await proxyFor({
        upstream: up.url,
        store: redis.url,
        shed: { limit: { algorithm: 'aimd', initialLimit: 3 }, eventLoop: false },
        rules: [
          { name: 'limited', match: { path: '/echo' }, policies: limit(1000) },
          { name: 'rest', priority: 'default' },
        ],
      });
      const replies = await Promise.all(Array.from({ length: 6 }, () => send(`${proxy.url}/slow`)));
      assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 503, 503, 503, 503]);
      const passed = await statuses(`${proxy.url}/`, 20);
      assert.deepEqual(passed, Array(20).fill(200));
      const plain = await send(`${proxy.url}/`);
      assert.equal(plain.headers.ratelimit, undefined);
      assert.equal(await metric(proxy, 'floodgate_proxy_requests_total{rule="rest",decision="shed"}'), 4);
      assert.equal(await metric(proxy, 'floodgate_store_script_calls_total'), 0, 'no store call');
      // The rule with policies next to it does ask the store.
      assert.equal((await send(`${proxy.url}/echo`)).status, 200);
      assert.ok((await metric(proxy, 'floodgate_store_script_calls_total')) > 0);
    } finally {
      await redis.stop();
    }
  });

  it('refuses a rule without policies unless there is a shedder', () => {
    assert.throws(
      () => validateProxyConfig({ upstream: up.url, rules: [{ name: 'r' }] }, 'proxy.yaml'),
      /proxy\.yaml: rules\[0\]\.policies: required, .*only with a top-level "shed" may a rule have none/,
    );
  });

  it('refuses a bad shed section with the path of the field', () => {
    const bad = (shed: unknown, expected: RegExp) =>
      assert.throws(() => validateProxyConfig({ upstream: up.url, shed }, 'proxy.yaml'), expected);
    bad(
      { limit: { algorithm: 'aimd', minLimit: 10, maxLimit: 5 } },
      /proxy\.yaml: shed\.limit\.minLimit: must be at most maxLimit \(5\); got 10/,
    );
    bad({ latencyObjective: 'soon' }, /proxy\.yaml: shed\.latencyObjective: must be a duration/);
    bad({ bogus: 1 }, /proxy\.yaml: shed: unknown field "bogus"/);
    bad(
      { shares: { default: 0.3, sheddable: 0.6 } },
      /shed\.shares\.sheddable: must be at most shares\.default/,
    );
  });
});

describe('proxy: in front of a Python service', () => {
  it('limits the continents API per Basic user, as the tutorial meant', async () => {
    const python = await startPythonUpstream();
    try {
      const { proxy } = await proxyFor({
        upstream: python.url,
        rules: [
          {
            name: 'continents',
            match: { path: '/continents' },
            key: 'basic-user',
            onMissingKey: 'reject',
            policies: limit(5, '60s'),
          },
        ],
      });
      const auth = { headers: { Authorization: `Basic ${Buffer.from('john_doe:pw').toString('base64')}` } };
      const codes = await statuses(`${proxy.url}/continents`, 6, auth);
      assert.deepEqual(codes, [200, 200, 200, 200, 200, 429]);
      const ok = json(
        await send(`${proxy.url}/continents`, {
          headers: { Authorization: `Basic ${Buffer.from('jane:pw').toString('base64')}` },
        }),
      );
      assert.equal(ok.continents.length, 7);
      assert.equal(ok.forwarded_for, '127.0.0.1');
      assert.equal((await send(`${proxy.url}/continents`)).status, 400, 'no header: a 400, not a crash');
      assert.equal((await send(`${proxy.url}/nothing`)).status, 404, 'the upstream answers the rest');
    } finally {
      await python.close();
    }
  });
});

describe('proxy: onStoreError, when Redis dies or stalls', () => {
  const PASSWORD = 'outage-secret-pw';
  const rules = [{ name: 'r', policies: limit(3) }];

  /** A proxy on a password-protected redis-server of its own, with one request counted there already. */
  async function onRedis(onStoreError: string | undefined) {
    const redis = await RedisServer.start();
    // Set once it runs: the helper's readiness check speaks without a password.
    const admin = new Redis(redis.port, '127.0.0.1');
    await admin.config('SET', 'requirepass', PASSWORD);
    admin.disconnect();
    const store = `redis://:${PASSWORD}@127.0.0.1:${redis.port}`;
    const started = await proxyFor({
      upstream: up.url,
      store,
      rules,
      ...(onStoreError ? { onStoreError } : {}),
    });
    assert.equal((await send(`${started.proxy.url}/x`)).status, 200, 'Redis up');
    return { redis, ...started };
  }

  const expected: Record<string, (replies: Reply[]) => void> = {
    open: (replies) =>
      assert.deepEqual(
        replies.map((r) => r.status),
        [200, 200, 200, 200, 200],
      ),
    closed: (replies) => {
      for (const r of replies) {
        assert.equal(r.status, 503);
        assert.equal(r.headers['content-type'], 'application/problem+json');
        assert.match(String(r.headers['retry-after']), /^\d+$/);
      }
    },
    // Counted afresh in memory: exactly the limit admitted.
    fallback: (replies) =>
      assert.deepEqual(
        replies.map((r) => r.status),
        [200, 200, 200, 429, 429],
      ),
  };

  for (const policy of ['open', 'closed', 'fallback'] as const) {
    it(`${policy}: a killed redis-server`, async () => {
      const { redis, proxy, logs } = await onRedis(policy);
      try {
        await redis.kill();
        const replies: Reply[] = [];
        for (let i = 0; i < 5; i++) replies.push(await send(`${proxy.url}/x`));
        expected[policy]!(replies);
        const failed = logs.filter((l) => l.msg?.toString().startsWith('rate-limit store failed'));
        assert.ok(failed.length > 0, 'the failure is logged');
        assert.equal(failed[0]!.onStoreError, policy);
        assert.ok(!JSON.stringify(logs).includes(PASSWORD), 'never the password');
      } finally {
        await redis.stop();
      }
    });
  }

  it('closed and fallback: a stalled redis-server (SIGSTOP), decided by the policy once the timeout passes', async () => {
    for (const policy of ['closed', 'fallback'] as const) {
      const { redis, proxy } = await onRedis(policy);
      try {
        redis.pause();
        const replies: Reply[] = [];
        for (let i = 0; i < 5; i++) replies.push(await send(`${proxy.url}/x`));
        expected[policy]!(replies);
      } finally {
        await redis.stop();
      }
    }
  });

  it('fallback by default, as the library; refused without Redis, and a bad value refused, naming the field', async () => {
    const { redis, proxy } = await onRedis(undefined);
    try {
      await redis.kill();
      const replies: Reply[] = [];
      for (let i = 0; i < 5; i++) replies.push(await send(`${proxy.url}/x`));
      expected.fallback!(replies);
    } finally {
      await redis.stop();
    }
    assert.throws(
      () => validateProxyConfig({ upstream: up.url, onStoreError: 'closed' }, 'proxy.yaml'),
      /^CliError: proxy\.yaml: onStoreError: the memory store never fails/,
    );
    assert.throws(
      () =>
        validateProxyConfig(
          { upstream: up.url, store: 'redis://127.0.0.1:1', onStoreError: 'sometimes' },
          'p.yaml',
        ),
      /p\.yaml: onStoreError: .*"open".*"closed".*"fallback"|p\.yaml: onStoreError/,
    );
  });
});

describe('proxy: configuration that limits nothing', () => {
  const warnings = (rules: unknown[], extra: Record<string, unknown> = {}) =>
    configWarnings(validateProxyConfig({ upstream: 'http://127.0.0.1:1', rules, ...extra }));
  const rule = (name: string, match?: unknown) => ({
    name,
    ...(match === undefined ? {} : { match }),
    policies: limit(1),
  });

  it('says when there are no rules, or a rule can never apply behind an earlier one', () => {
    assert.match(warnings([])[0]!, /^no rules/);
    assert.deepEqual(warnings([rule('login', { path: '/login' }), rule('all')]), []);
    assert.match(
      warnings([rule('all'), rule('login', { path: '/login' })])[0]!,
      /rules\[1\] \("login"\) never applies: rule "all"/,
    );
    assert.equal(warnings([rule('api', { path: '/api/' }), rule('users', { path: '/API/users' })]).length, 1);
    assert.deepEqual(
      warnings([rule('api', { path: '/api' }), rule('users', { path: '/API/users' })], {
        caseSensitive: true,
      }),
      [],
    );
    assert.deepEqual(warnings([rule('api', { path: '/api' }), rule('apiary', { path: '/apiary' })]), []);
    assert.equal(
      warnings([rule('get', { method: 'GET' }), rule('get-x', { method: ['get'], path: '/x' })]).length,
      1,
    );
    assert.deepEqual(warnings([rule('get', { method: 'GET' }), rule('any-x', { path: '/x' })]), []);
    assert.equal(
      warnings([rule('h', { host: 'API.example.com' }), rule('h2', { host: 'api.example.com.', path: '/x' })])
        .length,
      1,
    );
    assert.deepEqual(warnings([rule('h', { host: 'a.example.com' }), rule('any', {})]), []);
    assert.deepEqual(warnings([rule('p', { pattern: '/users/:id' }), rule('q', { path: '/users/1' })]), []);
    assert.equal(warnings([rule('root', { path: '/' }), rule('q', { pattern: '/users/:id' })]).length, 1);
  });
});

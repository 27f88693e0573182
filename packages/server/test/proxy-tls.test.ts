import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { pino } from 'pino';
import { Agent, fetch } from 'undici';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { selfSigned as selfSignedIn } from './helpers/certs.js';
import { bin } from './helpers/command.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// TLS both ways: the proxy's own listener (certificate files reloaded on change) and https:// upstreams
// trusted through upstreamCa; certificates made here, self-signed, by openssl.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-tls-'));
const running: RunningProxy[] = [];
let up: NodeUpstream;
before(async () => {
  up = await startNodeUpstream();
});
after(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await up.close();
  rmSync(dir, { recursive: true, force: true });
});

const selfSigned = (name: string, cn = name) => selfSignedIn(dir, name, cn);

async function proxyFor(data: Record<string, unknown>, logs?: string[]): Promise<RunningProxy> {
  const config = validateProxyConfig({ listen: 0, admin: false, upstream: up.url, ...data });
  const log =
    logs === undefined
      ? pino({ level: 'silent' })
      : pino({ base: null }, { write: (line: string) => void logs.push(JSON.parse(line).msg) });
  const proxy = await startProxy(config, { log });
  running.push(proxy);
  return proxy;
}

/** The certificate the listener presents, and the protocol ALPN chose when h2 was offered first. */
async function handshake(url: string, ca: string): Promise<{ cn: string; alpn: string | false }> {
  const { port } = new URL(url);
  const socket = connect({ host: '127.0.0.1', port: Number(port), ca, ALPNProtocols: ['h2', 'http/1.1'] });
  await once(socket, 'secureConnect');
  const result = { cn: String(socket.getPeerCertificate().subject.CN), alpn: socket.alpnProtocol ?? false };
  socket.destroy();
  return result;
}

describe('proxy TLS: the listener', () => {
  it('serves HTTPS over HTTP/1.1 (never h2), and tells the upstream the client came by https', async () => {
    const pair = selfSigned('listener');
    const proxy = await proxyFor({ tls: { cert: pair.cert, key: pair.key } });
    assert.match(proxy.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${proxy.url}/echo`, { dispatcher: new Agent({ connect: { ca: pair.pem } }) });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { headers: Record<string, string> };
    assert.equal(body.headers['x-forwarded-proto'], 'https');
    assert.deepEqual(await handshake(proxy.url, pair.pem), { cn: 'listener', alpn: 'http/1.1' });
  });

  it('reads the certificate again when its files change; a pair that does not load keeps the previous one', async () => {
    const pair = selfSigned('live', 'first');
    const logs: string[] = [];
    const proxy = await proxyFor({ tls: { cert: pair.cert, key: pair.key } }, logs);
    const next = selfSigned('next', 'second');
    const until = async (check: () => boolean | Promise<boolean>) => {
      while (!(await check())) await new Promise((r) => setTimeout(r, 20));
    };
    // Replaced as a certificate manager does: a new file renamed over the old. The key first, which does
    // not match the certificate yet: refused, and the first pair serves on.
    writeFileSync(`${pair.key}.new`, readFileSync(next.key));
    renameSync(`${pair.key}.new`, pair.key);
    await until(() => logs.includes('TLS certificate not reloaded; still serving the previous one'));
    assert.equal((await handshake(proxy.url, pair.pem)).cn, 'first');
    writeFileSync(`${pair.cert}.new`, readFileSync(next.cert));
    renameSync(`${pair.cert}.new`, pair.cert);
    const both = `${pair.pem}${next.pem}`;
    await until(async () => (await handshake(proxy.url, both)).cn === 'second');
    assert.ok(logs.includes('TLS certificate reloaded'));
    const res = await fetch(`${proxy.url}/echo`, { dispatcher: new Agent({ connect: { ca: next.pem } }) });
    assert.equal(res.status, 200);
  });

  it("refuses files it cannot read, or a key that is not the certificate's, at start", async () => {
    const a = selfSigned('a');
    const b = selfSigned('b');
    await assert.rejects(
      proxyFor({ tls: { cert: join(dir, 'none.crt'), key: a.key } }),
      /tls\.cert: cannot read .*ENOENT/,
    );
    await assert.rejects(
      proxyFor({ tls: { cert: a.cert, key: b.key } }),
      /tls: the certificate and key do not load together/,
    );
  });
});

describe('proxy TLS: https:// upstreams', () => {
  it('forwards to an https upstream trusted by upstreamCa, and answers 502 to one it cannot trust', async () => {
    const pair = selfSigned('upstream');
    const server = createServer(
      { cert: readFileSync(pair.cert), key: readFileSync(pair.key) },
      (req, res) => {
        res.end(`secure ${req.url} ${req.headers['x-forwarded-proto']}`);
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    after(() => server.close());
    const url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
    const trusted = await proxyFor({
      upstream: url,
      upstreamCa: pair.cert,
      failover: { healthCheck: { path: '/h', interval: '1h' } },
    });
    const res = await fetch(`${trusted.url}/x`);
    assert.equal(await res.text(), 'secure /x http');
    const untrusted = await proxyFor({ upstream: url });
    const refused = await fetch(`${untrusted.url}/x`);
    assert.equal(refused.status, 502);
    assert.match(await refused.text(), /SELF_SIGNED_CERT/);
  });

  it('refuses an upstreamCa it cannot read, or that holds no certificate, naming the field', async () => {
    await assert.rejects(
      proxyFor({ upstream: 'https://127.0.0.1:1', upstreamCa: join(dir, 'none.pem') }),
      /upstreamCa: cannot read .*ENOENT/,
    );
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    await assert.rejects(
      proxyFor({ upstream: 'https://127.0.0.1:1', upstreamCa: garbage }),
      /upstreamCa: .*garbage\.pem is not a PEM certificate file/,
    );
  });
});

describe('proxy TLS: --check reads the files a start would', () => {
  const check = (data: Record<string, unknown>) => {
    const file = join(dir, `check-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, JSON.stringify({ upstream: 'https://127.0.0.1:1', ...data }));
    return spawnSync(process.execPath, [bin, 'proxy', '--check', file], {
      encoding: 'utf8',
      timeout: 20_000,
    });
  };

  it('exit 1 naming the option and the file: unreadable, not PEM, or a key of another certificate', () => {
    const a = selfSigned('check-a');
    const b = selfSigned('check-b');
    const garbage = join(dir, 'check-garbage.pem');
    writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    const none = join(dir, 'check-none.pem');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ tls: { cert: none, key: a.key } }, /tls\.cert: cannot read .*check-none\.pem: ENOENT/],
      [{ tls: { cert: a.cert, key: none } }, /tls\.key: cannot read .*check-none\.pem: ENOENT/],
      [
        { tls: { cert: garbage, key: a.key } },
        /tls: the certificate and key do not load together \(.*check-garbage\.pem/,
      ],
      [
        { tls: { cert: a.cert, key: b.key } },
        /tls: the certificate and key do not load together \(.*check-a\.crt, .*check-b\.key\)/,
      ],
      [{ upstreamCa: none }, /upstreamCa: cannot read .*check-none\.pem: ENOENT/],
      [{ upstreamCa: garbage }, /upstreamCa: .*check-garbage\.pem is not a PEM certificate file/],
      [{ upstreamCa: a.key }, /upstreamCa: .*check-a\.key is not a PEM certificate file/],
    ];
    for (const [data, message] of cases) {
      const run = check(data);
      assert.equal(run.status, 1, `${JSON.stringify(data)}: ${run.stderr}`);
      assert.match(run.stderr, message);
      assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
    }
    const ok = check({ tls: { cert: a.cert, key: a.key }, upstreamCa: b.cert });
    assert.equal(ok.status, 0, ok.stderr);
  });
});

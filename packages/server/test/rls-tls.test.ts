import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { type ChannelCredentials, credentials, type ServiceError, status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { rateLimitService } from '../src/rls/protocol.js';
import { type RunningRls, startRls } from '../src/rls/rls.js';
import type { TlsFiles } from '../src/shared/tls.js';
import { issuedBy, type Pem, selfSigned } from './helpers/certs.js';
import { assertUsageErrors, bin, startCommand } from './helpers/command.js';
import type { Reply, RlsClient } from './helpers/rls.js';

// floodgate rls over TLS, spoken to by real grpc-js clients: the certificate served and read again when its
// files change, mutual TLS with a client CA, and what a start or --check says of bad files.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-tls-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const config = join(dir, 'limits.yaml');
writeFileSync(
  config,
  'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 1 }\n',
);
const REQUEST = { domain: 'd', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] };

async function rlsOver(tls: TlsFiles, logs?: string[]): Promise<RunningRls> {
  const log =
    logs === undefined
      ? pino({ level: 'silent' })
      : pino({ base: null }, { write: (line: string) => void logs.push(JSON.parse(line).msg) });
  return startRls(
    config,
    { listen: { host: '127.0.0.1', port: 0 }, admin: false, store: 'memory', tls },
    { log, watch: false },
  );
}

/** One call on a client of its own (a connection of its own: no subchannel shared with another client). */
async function call(address: string, channel: ChannelCredentials): Promise<Reply> {
  const Service = rateLimitService();
  const client = new Service(address, channel, {
    'grpc.use_local_subchannel_pool': 1,
  }) as unknown as RlsClient;
  try {
    return await new Promise((resolve, reject) =>
      client.ShouldRateLimit(REQUEST, (error, reply) => (error === null ? resolve(reply) : reject(error))),
    );
  } finally {
    client.close();
  }
}

const trusting = (...pems: Pem[]) => credentials.createSsl(Buffer.from(pems.map((p) => p.pem).join('')));

/** The CN of the certificate a new TLS connection is shown (offering h2, as gRPC does). */
async function servedCn(address: string, ca: string): Promise<string> {
  const port = Number(address.split(':').at(-1));
  const socket = connect({ host: '127.0.0.1', port, ca, ALPNProtocols: ['h2'] });
  await once(socket, 'secureConnect');
  const cn = String(socket.getPeerCertificate().subject.CN);
  socket.destroy();
  return cn;
}

const until = async (check: () => boolean | Promise<boolean>) => {
  while (!(await check())) await new Promise((r) => setTimeout(r, 20));
};

describe('floodgate rls over TLS', () => {
  it('answers a client that trusts its certificate; a plaintext client or one that does not trust it gets none', async () => {
    const pair = selfSigned(dir, 'served');
    const other = selfSigned(dir, 'other');
    const rls = await rlsOver({ cert: pair.cert, key: pair.key });
    try {
      assert.equal((await call(rls.address, trusting(pair))).overall_code, 'OK');
      assert.equal((await call(rls.address, trusting(pair))).overall_code, 'OVER_LIMIT');
      for (const channel of [credentials.createInsecure(), trusting(other)]) {
        await assert.rejects(call(rls.address, channel), (e: ServiceError) => e.code === status.UNAVAILABLE);
      }
    } finally {
      await rls.stop();
    }
  });

  it('reads the certificate again when its files change: new connections see the new one; a pair that does not load keeps the old', async () => {
    const live = selfSigned(dir, 'live', 'first');
    const next = selfSigned(dir, 'next', 'second');
    const logs: string[] = [];
    const rls = await rlsOver({ cert: live.cert, key: live.key }, logs);
    try {
      assert.equal(await servedCn(rls.address, live.pem), 'first');
      // Replaced as a certificate manager does, a new file renamed over the old; the key first, which does
      // not match the certificate yet: refused, and the first certificate serves on.
      writeFileSync(`${live.key}.new`, readFileSync(next.key));
      renameSync(`${live.key}.new`, live.key);
      await until(() => logs.includes('TLS certificate not reloaded; still serving the previous one'));
      assert.equal(await servedCn(rls.address, live.pem), 'first');
      assert.equal((await call(rls.address, trusting(live))).overall_code, 'OK');
      writeFileSync(`${live.cert}.new`, readFileSync(next.cert));
      renameSync(`${live.cert}.new`, live.cert);
      await until(() => logs.includes('TLS certificate reloaded'));
      assert.equal(await servedCn(rls.address, `${live.pem}${next.pem}`), 'second');
      // A gRPC client that trusts only the new certificate is answered; one that trusts only the old is not.
      assert.equal((await call(rls.address, trusting(next))).overall_code, 'OVER_LIMIT');
      await assert.rejects(
        call(rls.address, trusting(live)),
        (e: ServiceError) => e.code === status.UNAVAILABLE,
      );
    } finally {
      await rls.stop();
    }
  });

  it('with a client CA (mutual TLS): answers a client whose certificate the CA issued, and no other', async () => {
    const server = selfSigned(dir, 'mtls-server');
    const ca = selfSigned(dir, 'clients-ca', 'clients', true);
    const client = issuedBy(ca, dir, 'client');
    const stranger = selfSigned(dir, 'stranger');
    const rls = await rlsOver({ cert: server.cert, key: server.key, clientCa: ca.cert });
    const withCertificate = (pem: Pem) =>
      credentials.createSsl(Buffer.from(server.pem), readFileSync(pem.key), readFileSync(pem.cert));
    try {
      assert.equal((await call(rls.address, withCertificate(client))).overall_code, 'OK');
      for (const channel of [trusting(server), withCertificate(stranger)]) {
        await assert.rejects(call(rls.address, channel), (e: ServiceError) => e.code === status.UNAVAILABLE);
      }
    } finally {
      await rls.stop();
    }
  });

  it('refuses at start, naming the flag, a file it cannot read, a key not the certificate’s, a CA file without a certificate', async () => {
    const a = selfSigned(dir, 'a');
    const b = selfSigned(dir, 'b');
    const none = join(dir, 'none.pem');
    const notPem = join(dir, 'not.pem');
    writeFileSync(notPem, 'not a certificate\n');
    await assert.rejects(rlsOver({ cert: none, key: a.key }), /--tls-cert: cannot read .*none\.pem: ENOENT/);
    await assert.rejects(rlsOver({ cert: a.cert, key: none }), /--tls-key: cannot read .*none\.pem: ENOENT/);
    await assert.rejects(
      rlsOver({ cert: a.cert, key: b.key }),
      /--tls-cert\/--tls-key: the certificate and key do not load together/,
    );
    await assert.rejects(
      rlsOver({ cert: a.cert, key: a.key, clientCa: notPem }),
      /--tls-client-ca: .*not\.pem is not a PEM certificate file/,
    );
  });
});

describe('floodgate rls over TLS (the command)', () => {
  const floodgate = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [bin, 'rls', ...args], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, ...env },
    });

  it("takes envoyproxy/ratelimit's variables (GRPC_SERVER_USE_TLS=true, GRPC_SERVER_TLS_CERT/KEY)", async () => {
    const pair = selfSigned(dir, 'from-env');
    const rls = await startCommand(['rls', '--config', config, '--port', '0', '--no-admin'], {
      env: { GRPC_SERVER_USE_TLS: 'true', GRPC_SERVER_TLS_CERT: pair.cert, GRPC_SERVER_TLS_KEY: pair.key },
    });
    try {
      const address = rls.url.slice('grpc://'.length);
      assert.equal((await call(address, trusting(pair))).overall_code, 'OK');
      assert.equal(rls.logs().find((l) => l.url !== undefined)?.tls, 'server');
    } finally {
      assert.equal(await rls.stop(), 0);
    }
  });

  it('refuses half a pair, or a client CA without one (exit 2)', () => {
    const pair = selfSigned(dir, 'flags');
    assertUsageErrors(
      (...args) => floodgate(args),
      [
        [['--config', config, '--tls-cert', pair.cert], /--tls-cert needs --tls-key/],
        [['--config', config, '--tls-key', pair.key], /--tls-key needs --tls-cert/],
        [
          ['--config', config, '--tls-client-ca', pair.cert],
          /--tls-client-ca needs --tls-cert and --tls-key/,
        ],
      ],
    );
    const env = floodgate(['--config', config], {
      GRPC_SERVER_USE_TLS: 'true',
      GRPC_SERVER_TLS_CERT: pair.cert,
    });
    assert.equal(env.status, 2);
    assert.match(env.stderr, /--tls-cert needs --tls-key \(or GRPC_SERVER_TLS_KEY\)/);
  });

  it('--check reads the TLS files as a start would: exit 0 saying so, 1 naming the flag of a bad one', () => {
    const pair = selfSigned(dir, 'checked');
    const good = floodgate(['--check', config, '--tls-cert', pair.cert, '--tls-key', pair.key]);
    assert.equal(good.status, 0, good.stderr);
    assert.match(
      good.stdout,
      /valid: d \(1 descriptors\); TLS: .*checked\.crt and .*checked\.key load together/,
    );
    const missing = floodgate([
      '--check',
      config,
      '--tls-cert',
      pair.cert,
      '--tls-key',
      join(dir, 'gone.key'),
    ]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^floodgate: --tls-key: cannot read .*gone\.key: ENOENT/);
    const mismatched = floodgate([
      '--check',
      config,
      '--tls-cert',
      pair.cert,
      '--tls-key',
      selfSigned(dir, 'c').key,
    ]);
    assert.equal(mismatched.status, 1);
    assert.match(mismatched.stderr, /--tls-cert\/--tls-key: the certificate and key do not load together/);
  });
});

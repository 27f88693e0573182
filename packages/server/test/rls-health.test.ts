import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import {
  type Client,
  type ClientReadableStream,
  credentials,
  loadPackageDefinition,
  type ServiceClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { pino } from 'pino';
import { type RlsSettings, startRls } from '../src/rls/rls.js';
import { ask, clientOf } from './helpers/rls.js';

// grpc.health.v1.Health over a real gRPC client, as Envoy's and Kubernetes' probes ask it.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-health-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const config = join(dir, 'h.yaml');
writeFileSync(
  config,
  'domain: h\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 3 }\n',
);
const RLS = 'envoy.service.ratelimit.v3.RateLimitService';
const request = { domain: 'h', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] };

type HealthClient = Client & {
  Check(
    request: { service: string },
    callback: (error: ServiceError | null, reply: { status: string }) => void,
  ): void;
  Watch(request: { service: string }): ClientReadableStream<{ status: string }>;
};
const Health = (
  loadPackageDefinition(loadSync(protoPath, { keepCase: true, enums: String })) as unknown as {
    grpc: { health: { v1: { Health: ServiceClientConstructor } } };
  }
).grpc.health.v1.Health;

const check = (client: HealthClient, service: string) =>
  new Promise<string>((resolve, reject) =>
    client.Check({ service }, (error, reply) => (error === null ? resolve(reply.status) : reject(error))),
  );

async function started(settings: Partial<RlsSettings> = {}) {
  const rls = await startRls(
    config,
    { listen: { host: '127.0.0.1', port: 0 }, admin: false, store: 'memory', ...settings },
    { log: pino({ level: 'silent' }), watch: false },
  );
  const health = new Health(rls.address, credentials.createInsecure()) as unknown as HealthClient;
  return { rls, health };
}

describe('floodgate rls: grpc.health.v1.Health', () => {
  it('Check: SERVING for the server and the rate-limit service, NOT_FOUND for another name', async () => {
    const { rls, health } = await started();
    try {
      assert.equal(await check(health, ''), 'SERVING');
      assert.equal(await check(health, RLS), 'SERVING');
      await assert.rejects(check(health, 'other.Service'), (e: ServiceError) => e.code === status.NOT_FOUND);
    } finally {
      health.close();
      await rls.stop();
    }
  });

  it('Watch: SERVING, then NOT_SERVING when the server stops, and the stream ends so the stop does not wait for it', async () => {
    const { rls, health } = await started();
    const seen: string[] = [];
    const streams = [health.Watch({ service: '' }), health.Watch({ service: RLS })];
    const ended = streams.map(
      (stream) =>
        new Promise<void>((resolve) => {
          stream.on('data', (m: { status: string }) => seen.push(m.status));
          stream.on('error', () => resolve());
          stream.on('end', () => resolve());
        }),
    );
    try {
      // Both streams have said SERVING before the stop begins.
      while (seen.length < 2) await new Promise((r) => setImmediate(r));
      await rls.stop();
      await Promise.all(ended);
      assert.deepEqual(seen.sort(), ['NOT_SERVING', 'NOT_SERVING', 'SERVING', 'SERVING']);
    } finally {
      health.close();
    }
  });

  it('onStoreError closed: NOT_SERVING while Redis is down, SERVING once it is back; fallback stays SERVING', async () => {
    for (const policy of ['closed', 'fallback'] as const) {
      const redis = await RedisServer.start();
      const { rls, health } = await started({ store: redis.url, onStoreError: policy });
      const client = clientOf(rls.address);
      try {
        assert.equal((await ask(client, request)).overall_code, 'OK');
        await redis.kill();
        const down = await ask(client, request).then(
          () => 'answered',
          (e: ServiceError) => e.code,
        );
        assert.equal(down, policy === 'closed' ? status.UNAVAILABLE : 'answered');
        assert.equal(await check(health, RLS), policy === 'closed' ? 'NOT_SERVING' : 'SERVING', policy);
        await redis.restart();
        // Asked until the store answers again (ioredis reconnects on its own schedule).
        while ((await ask(client, request).catch(() => undefined)) === undefined)
          await new Promise((r) => setTimeout(r, 50));
        assert.equal(await check(health, RLS), 'SERVING', policy);
      } finally {
        client.close();
        health.close();
        await rls.stop();
        await redis.stop();
      }
    }
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { switched } from '../src/cli/rls.js';
import { ask, jsonOf, withRls } from './helpers/rls.js';

// Requests built to break `floodgate rls`, each kept once it did: real gRPC, the bytes as a client sends them.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-attack-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const CONFIG = join(dir, 'edge.yaml');
writeFileSync(
  CONFIG,
  `
domain: edge
descriptors:
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 3 }
`,
);

/** ShouldRateLimit called with raw bytes, as a client with other (or broken) protos would send them. */
function askRaw(address: string, bytes: Buffer): Promise<ServiceError | Buffer> {
  const client = new Client(address, credentials.createInsecure());
  const same = (b: Buffer) => b;
  return new Promise((resolve) =>
    client.makeUnaryRequest(
      '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
      same,
      same,
      bytes,
      (error, reply) => {
        client.close();
        resolve(error ?? (reply as Buffer));
      },
    ),
  );
}

const INVALID_ARGUMENT = 3;
// domain "edge", one descriptor with the entry user=a
const ENTRY = Buffer.from([0x0a, 4, ...Buffer.from('user'), 0x12, 1, 0x61]);
const DESCRIPTOR = Buffer.from([0x12, ENTRY.length + 2, 0x0a, ENTRY.length, ...ENTRY]);
const DOMAIN = Buffer.from([0x0a, 4, ...Buffer.from('edge')]);

describe('floodgate rls: bytes that are not a RateLimitRequest', () => {
  for (const [name, bytes] of [
    ['a varint that never ends', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])],
    [
      'hits_addend with the wire type of a string',
      Buffer.concat([DOMAIN, DESCRIPTOR, Buffer.from([0x1a, 1, 0x41])]),
    ],
    ['a field of wire type 7', Buffer.concat([DOMAIN, Buffer.from([0x0f])])],
  ] as const) {
    it(`${name}: INVALID_ARGUMENT (the client's fault), not INTERNAL`, async () => {
      await withRls(CONFIG, async (_client, rls) => {
        const answer = await askRaw(rls.address, bytes);
        assert.ok(answer instanceof Error, 'refused');
        assert.equal((answer as ServiceError).code, INVALID_ARGUMENT, (answer as ServiceError).details);
        assert.match((answer as ServiceError).details, /not a RateLimitRequest/);
        // The server still answers a well-formed request.
        assert.ok(Buffer.isBuffer(await askRaw(rls.address, Buffer.concat([DOMAIN, DESCRIPTOR]))));
      });
    });
  }
});

describe("floodgate rls: envoyproxy/ratelimit's boolean variables", () => {
  it('are read as Go reads them: SHADOW_MODE=1 or True is on, 0 or False off, anything else refused by name', () => {
    for (const value of ['1', 't', 'T', 'TRUE', 'true', 'True']) {
      assert.equal(switched(undefined, 'SHADOW_MODE', { SHADOW_MODE: value }), true, value);
    }
    for (const value of ['0', 'f', 'F', 'FALSE', 'false', 'False', '']) {
      assert.equal(switched(undefined, 'SHADOW_MODE', { SHADOW_MODE: value }), false, value);
      assert.equal(switched(true, 'SHADOW_MODE', { SHADOW_MODE: value }), true, `--shadow with ${value}`);
    }
    for (const value of ['yes', 'on', ' true', 'bogus']) {
      assert.throws(
        () => switched(undefined, 'QUOTA_MODE', { QUOTA_MODE: value }),
        /QUOTA_MODE must be true or false/,
      );
    }
  });
});

describe('floodgate rls: metadata fields named as Object.prototype names its own', () => {
  it('constructor, toString and hasOwnProperty reach dynamic_metadata, merged as any other field', async () => {
    const config = join(dir, 'names.yaml');
    writeFileSync(
      config,
      `
domain: edge
descriptors:
  - key: a
    rate_limit: { unit: minute, requests_per_unit: 3 }
    metadata: { constructor: { backend: a }, toString: first }
  - key: b
    rate_limit: { unit: minute, requests_per_unit: 3 }
    metadata: { constructor: { zone: b }, toString: second, hasOwnProperty: 1 }
`,
    );
    await withRls(
      config,
      async (client) => {
        const reply = await ask(client, {
          domain: 'edge',
          descriptors: [{ entries: [{ key: 'a', value: '1' }] }, { entries: [{ key: 'b', value: '1' }] }],
        });
        assert.equal(reply.overall_code, 'OK');
        assert.deepEqual(jsonOf(reply.dynamic_metadata!).metadata, {
          constructor: { backend: 'a', zone: 'b' },
          toString: 'first',
          hasOwnProperty: 1,
        });
      },
      'memory',
      {},
      { dynamicMetadata: true },
    );
  });
});

describe('floodgate rls: a limit named as upstream takes any name', () => {
  it('"Login limit" and a 100-character name load, answer by that name, and count on their own', async () => {
    const long = 'x'.repeat(100);
    const config = join(dir, 'named.yaml');
    writeFileSync(
      config,
      `
domain: edge
descriptors:
  - key: login
    rate_limit: { name: Login limit, unit: minute, requests_per_unit: 2 }
  - key: long
    rate_limit: { name: ${long}, unit: minute, requests_per_unit: 1 }
`,
    );
    await withRls(config, async (client) => {
      const codes: string[] = [];
      for (let i = 0; i < 3; i++) {
        const reply = await ask(client, {
          domain: 'edge',
          descriptors: [{ entries: [{ key: 'login', value: 'u' }] }],
        });
        assert.equal(reply.statuses[0]!.current_limit!.name, 'Login limit');
        codes.push(reply.overall_code);
      }
      assert.deepEqual(codes, ['OK', 'OK', 'OVER_LIMIT']);
      const first = await ask(client, {
        domain: 'edge',
        descriptors: [{ entries: [{ key: 'long', value: 'u' }] }],
      });
      const second = await ask(client, {
        domain: 'edge',
        descriptors: [{ entries: [{ key: 'long', value: 'u' }] }],
      });
      assert.equal(first.statuses[0]!.current_limit!.name, long);
      assert.deepEqual([first.overall_code, second.overall_code], ['OK', 'OVER_LIMIT']);
    });
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { type Client, credentials, type ServiceError, status } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadRlsConfig } from '../src/rls/config.js';
import { rateLimitService } from '../src/rls/protocol.js';
import { type RunningRls, startRls } from '../src/rls/rls.js';

// `floodgate rls` spoken to by a real gRPC client over Envoy's own protos.

const quiet = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// envoyproxy/ratelimit's own example, with a shadow-mode descriptor and an unlimited one.
const CONFIG = `
domain: edge
descriptors:
  - key: remote_address
    rate_limit:
      unit: minute
      requests_per_unit: 3
  - key: path
    value: /login
    rate_limit:
      name: login
      unit: hour
      requests_per_unit: 2
  - key: path
    value: /shadowed
    shadow_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 1
  - key: path
    value: /free
    rate_limit:
      unlimited: true
  - key: database
    value: users
    descriptors:
      - key: client
        detailed_metric: true
        rate_limit:
          unit: second
          requests_per_unit: 5
`;

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

type Entry = [key: string, value: string];
interface Status {
  code: string;
  current_limit: { name: string; requests_per_unit: number; unit: string } | null;
  limit_remaining: number;
  duration_until_reset: { seconds: number; nanos: number } | null;
}
interface Reply {
  overall_code: string;
  statuses: Status[];
  response_headers_to_add: { key: string; value: string }[];
}

type Call = (request: object, callback: (error: ServiceError | null, reply: Reply) => void) => void;

function clientOf(address: string): Client & { ShouldRateLimit: Call } {
  const Service = rateLimitService();
  return new Service(address, credentials.createInsecure()) as unknown as Client & { ShouldRateLimit: Call };
}

function ask(client: Client & { ShouldRateLimit: Call }, request: object): Promise<Reply> {
  return new Promise((resolve, reject) =>
    client.ShouldRateLimit(request, (error, reply) => (error === null ? resolve(reply) : reject(error))),
  );
}

const req = (descriptors: Entry[][], extra: object = {}) => ({
  domain: 'edge',
  descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })),
  ...extra,
});

async function withRls(
  config: string,
  run: (client: Client & { ShouldRateLimit: Call }, rls: RunningRls) => Promise<void>,
  store = 'memory',
): Promise<void> {
  const rls = await startRls(
    config,
    { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, store },
    { log: quiet, watch: false },
  );
  const client = clientOf(rls.address);
  try {
    await run(client, rls);
  } finally {
    client.close();
    await rls.stop();
  }
}

describe('floodgate rls', () => {
  it('answers per descriptor, with the limit, what remains, the reset, and the RateLimit header fields', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const reply = await ask(client, req([[['remote_address', '10.0.0.1']], [['path', '/other']]]));
      assert.equal(reply.overall_code, 'OK');
      const [ip, other] = reply.statuses;
      assert.equal(ip!.code, 'OK');
      assert.deepEqual(ip!.current_limit, { name: 'remote_address', requests_per_unit: 3, unit: 'MINUTE' });
      assert.equal(ip!.limit_remaining, 2);
      assert.ok(ip!.duration_until_reset!.seconds > 0 && ip!.duration_until_reset!.seconds <= 60);
      assert.equal(other!.code, 'OK');
      assert.equal(other!.current_limit, null);
      const headers = Object.fromEntries(reply.response_headers_to_add.map((h) => [h.key, h.value]));
      assert.equal(headers['RateLimit-Policy'], '"remote_address";q=3;w=60');
      assert.match(headers.RateLimit!, /^"remote_address";r=2;t=\d+$/);
    });
  });

  it('decides nested descriptors by the deepest node, each value its own counter (wildcard)', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client, rls) => {
      const nested = (c: string) =>
        req([
          [
            ['database', 'users'],
            ['client', c],
          ],
        ]);
      for (let i = 0; i < 5; i++) assert.equal((await ask(client, nested('a'))).overall_code, 'OK');
      const sixth = await ask(client, nested('a'));
      assert.equal(sixth.overall_code, 'OVER_LIMIT');
      assert.deepEqual(sixth.statuses[0]!.current_limit, {
        name: 'database_users.client',
        requests_per_unit: 5,
        unit: 'SECOND',
      });
      assert.ok(sixth.response_headers_to_add.some((h) => h.key === 'Retry-After' && h.value === '1'));
      assert.equal((await ask(client, nested('b'))).overall_code, 'OK');
      // A descriptor that stops short of a limited node is not limited: database=users alone.
      assert.equal((await ask(client, req([[['database', 'users']]]))).statuses[0]!.current_limit, null);
      // detailed_metric: the descriptor's values in the label, a wildcard value digested.
      const text = await (await fetch(`${rls.adminUrl}/metrics`)).text();
      assert.match(
        text,
        /floodgate_rls_descriptors_total\{domain="edge",descriptor="database_users\.client_#[\w-]{8}",code="OVER_LIMIT",shadow="false"\} 1/,
      );
      assert.doesNotMatch(text, /client_a"/);
    });
  });

  it('charges every descriptor of a request or none: 10 parallel requests, the tighter limit decides for both', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const both = () => ask(client, req([[['remote_address', '10.0.0.2']], [['path', '/login']]]));
      const replies = await Promise.all(Array.from({ length: 10 }, both));
      assert.equal(replies.filter((r) => r.overall_code === 'OK').length, 2);
      const refused = replies.find((r) => r.overall_code === 'OVER_LIMIT')!;
      assert.deepEqual(
        refused.statuses.map((s) => s.code),
        ['OK', 'OVER_LIMIT'],
      );
      // The address was charged for the 2 admitted requests only: one more gets through on its own.
      const alone = await ask(client, req([[['remote_address', '10.0.0.2']]]));
      assert.equal(alone.overall_code, 'OK');
      assert.equal(alone.statuses[0]!.limit_remaining, 0);
    });
  });

  it('takes hits_addend as the cost', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const reply = await ask(client, req([[['remote_address', '10.0.0.3']]], { hits_addend: 3 }));
      assert.equal(reply.statuses[0]!.limit_remaining, 0);
      assert.equal((await ask(client, req([[['remote_address', '10.0.0.3']]]))).overall_code, 'OVER_LIMIT');
    });
  });

  it('lets shadow-mode descriptors through, counting what they would have refused', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client, rls) => {
      const shadowed = () => ask(client, req([[['path', '/shadowed']]]));
      const replies = await Promise.all([shadowed(), shadowed(), shadowed()]);
      assert.deepEqual(
        replies.map((r) => r.overall_code),
        ['OK', 'OK', 'OK'],
      );
      const text = await (await fetch(`${rls.adminUrl}/metrics`)).text();
      assert.match(
        text,
        /floodgate_rls_descriptors_total\{domain="edge",descriptor="path_\/shadowed",code="OVER_LIMIT",shadow="true"\} 2/,
      );
      assert.equal((await ask(client, req([[['path', '/free']]]))).statuses[0]!.code, 'OK');
    });
  });

  it('answers OK for a domain it does not know, as envoyproxy/ratelimit does', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const reply = await ask(client, {
        domain: 'nobody',
        descriptors: [{ entries: [{ key: 'k', value: 'v' }] }],
      });
      assert.equal(reply.overall_code, 'OK');
    });
  });

  it('refuses malformed requests with INVALID_ARGUMENT, and keeps serving', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const bad: [object, RegExp][] = [
        [{ domain: '', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] }, /domain/],
        [{ domain: 'edge', descriptors: [] }, /descriptors must not be empty/],
        [{ domain: 'edge', descriptors: [{ entries: [] }] }, /entries must not be empty/],
        [{ domain: 'edge', descriptors: [{ entries: [{ key: '', value: 'v' }] }] }, /key must not be empty/],
        [
          { domain: 'edge', descriptors: [{ entries: [{ key: 'k', value: 'x'.repeat(5000) }] }] },
          /longer than 4096/,
        ],
        [
          {
            domain: 'edge',
            descriptors: [
              { entries: [{ key: 'k', value: 'v' }], limit: { requests_per_unit: 1, unit: 'UNKNOWN' } },
            ],
          },
          /unit/,
        ],
        [
          {
            domain: 'edge',
            descriptors: [
              { entries: [{ key: 'k', value: 'v' }], limit: { requests_per_unit: 0, unit: 'SECOND' } },
            ],
          },
          /descriptors\[0\]\.limit\.requests_per_unit must be/,
        ],
      ];
      for (const [request, message] of bad) {
        await assert.rejects(ask(client, request), (error: ServiceError) => {
          assert.equal(error.code, status.INVALID_ARGUMENT);
          assert.match(error.details, message);
          return true;
        });
      }
      assert.equal((await ask(client, req([[['remote_address', '10.0.0.9']]]))).overall_code, 'OK');
    });
  });

  it('applies a limit the proxy sends with a descriptor', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const request = {
        domain: 'edge',
        descriptors: [
          { entries: [{ key: 'tenant', value: 't1' }], limit: { requests_per_unit: 1, unit: 'HOUR' } },
        ],
      };
      assert.equal((await ask(client, request)).overall_code, 'OK');
      const second = await ask(client, request);
      assert.equal(second.overall_code, 'OVER_LIMIT');
      assert.deepEqual(second.statuses[0]!.current_limit, {
        name: 'override',
        requests_per_unit: 1,
        unit: 'HOUR',
      });
    });
  });

  it('reloads its configuration, keeping the counts of unchanged limits, and keeps the old one when the new is bad', async () => {
    const path = file('reload.yaml', CONFIG);
    await withRls(path, async (client, rls) => {
      const ip = () => ask(client, req([[['remote_address', '10.0.0.4']]]));
      await ip();
      writeFileSync(path, `${CONFIG}  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n`);
      assert.equal(rls.reload(), true);
      assert.equal((await ip()).statuses[0]!.limit_remaining, 1);
      assert.equal((await ask(client, req([[['user', 'u']]]))).statuses[0]!.current_limit?.name, 'user');
      writeFileSync(
        path,
        'domain: edge\ndescriptors:\n  - key: user\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n',
      );
      assert.equal(rls.reload(), false);
      assert.equal((await ask(client, req([[['user', 'u']]]))).overall_code, 'OVER_LIMIT');
      assert.match(
        await (await fetch(`${rls.adminUrl}/metrics`)).text(),
        /floodgate_rls_reloads_total\{result="rejected"\} 1/,
      );
      assert.deepEqual(await (await fetch(`${rls.adminUrl}/health`)).json(), {
        status: 'ok',
        domains: ['edge'],
      });
    });
  });

  it('reloads when its file changes on disk', async () => {
    const path = file('watched.yaml', CONFIG);
    const lines = new PassThrough();
    const log = pino(lines);
    const rls = await startRls(
      path,
      { listen: { host: '127.0.0.1', port: 0 }, admin: false, store: 'memory' },
      { log },
    );
    const client = clientOf(rls.address);
    try {
      const reloaded = new Promise<void>((resolve) => {
        lines.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('configuration reloaded')) resolve();
        });
      });
      writeFileSync(path, CONFIG.replace('requests_per_unit: 3', 'requests_per_unit: 7'));
      await reloaded;
      const reply = await ask(client, req([[['remote_address', '10.0.0.5']]]));
      assert.equal(reply.statuses[0]!.current_limit?.requests_per_unit, 7);
    } finally {
      client.close();
      await rls.stop();
    }
  });

  describe('with Redis', () => {
    let redis: RedisServer;
    before(async () => {
      redis = await RedisServer.start();
    });
    after(async () => {
      await redis.stop();
    });

    it('with quota leases, two servers on one Redis never admit more than the limit', async () => {
      const config = file(
        'leased.yaml',
        'domain: leased\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 120 }\n',
      );
      const start = () =>
        startRls(
          config,
          { listen: { host: '127.0.0.1', port: 0 }, admin: false, store: redis.url, leases: true },
          { log: quiet, watch: false },
        );
      const [a, b] = await Promise.all([start(), start()]);
      const clients = [clientOf(a.address), clientOf(b.address)];
      try {
        const request = { domain: 'leased', descriptors: [{ entries: [{ key: 'k', value: 'hot' }] }] };
        let admitted = 0;
        for (let round = 0; round < 4; round++) {
          const replies = await Promise.all(
            Array.from({ length: 100 }, (_, i) => ask(clients[i % 2]!, request)),
          );
          admitted += replies.filter((r) => r.overall_code === 'OK').length;
        }
        assert.ok(admitted <= 120, `${admitted} admitted of a limit of 120`);
        assert.ok(admitted >= 60, `${admitted} admitted: leases should not strand most of the quota`);
      } finally {
        for (const c of clients) c.close();
        await Promise.all([a.stop(), b.stop()]);
      }
    });

    it('two servers on one Redis admit exactly the limit of 200 parallel requests', async () => {
      const config = file(
        'shared.yaml',
        'domain: shared\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 37 }\n',
      );
      await withRls(
        config,
        async (a) => {
          await withRls(
            config,
            async (b) => {
              const request = { domain: 'shared', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] };
              const replies = await Promise.all(
                Array.from({ length: 200 }, (_, i) => ask(i % 2 === 0 ? a : b, request)),
              );
              assert.equal(replies.filter((r) => r.overall_code === 'OK').length, 37);
            },
            redis.url,
          );
        },
        redis.url,
      );
    });
  });
});

describe('floodgate rls configuration', () => {
  const bad = (text: string) => () => loadRlsConfig(file('bad.yaml', text));
  it('refuses unknown fields and bad values with the path of the field', () => {
    assert.throws(
      bad('domain: d\ndescriptors:\n  - key: k\n    rate_limits: { unit: second, requests_per_unit: 1 }\n'),
      /bad\.yaml: descriptors\[0\]: unknown field "rate_limits"/,
    );
    assert.throws(
      bad(
        'domain: d\ndescriptors:\n  - key: k\n    descriptors:\n      - key: j\n        rate_limit: { unit: fortnight, requests_per_unit: 1 }\n',
      ),
      /descriptors\[0\]\.descriptors\[0\]\.rate_limit\.unit: must be one of second/,
    );
    assert.throws(
      bad('domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second }\n'),
      /rate_limit\.requests_per_unit: is required/,
    );
    assert.throws(
      bad('domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 0 }\n'),
      /descriptors\[0\]\.rate_limit\.requests_per_unit: must be/,
    );
    assert.throws(bad('domain: d\ndescriptors:\n  - key: ""\n'), /descriptors\[0\]\.key: must not be empty/);
    assert.throws(
      bad('domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unlimited: true, unit: second }\n'),
      /descriptors\[0\]\.rate_limit: unlimited takes no unit or requests_per_unit/,
    );
    assert.throws(bad('descriptors: []\n'), /domain/);
    assert.throws(
      bad('domain: d\ndescriptors:\n  - key: k\n    value: v\n  - key: k\n    value: v\n'),
      /a second descriptor "k_v"/,
    );
    assert.throws(
      bad(
        'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, name: "has space" }\n',
      ),
      /rate_limit\.name/,
    );
  });

  it('reads a folder of files, one domain each, and refuses a domain twice', () => {
    const folder = mkdtempSync(join(dir, 'domains-'));
    writeFileSync(join(folder, 'a.yaml'), 'domain: a\n');
    writeFileSync(join(folder, 'b.yml'), 'domain: b\n');
    assert.deepEqual([...loadRlsConfig(folder).keys()], ['a', 'b']);
    writeFileSync(join(folder, 'c.yaml'), 'domain: a\n');
    assert.throws(() => loadRlsConfig(folder), /c\.yaml: domain "a" is also in/);
  });
});

describe('floodgate rls: onStoreError, when Redis dies', () => {
  const PASSWORD = 'rls-outage-secret';
  const config = file(
    'outage.yaml',
    'domain: outage\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 3 }\n',
  );
  const request = { domain: 'outage', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] };

  async function onKilledRedis(
    onStoreError: 'open' | 'closed' | 'fallback' | undefined,
    check: (client: Client & { ShouldRateLimit: Call }) => Promise<void>,
  ): Promise<string[]> {
    const redis = await RedisServer.start();
    const admin = new Redis(redis.port, '127.0.0.1');
    await admin.config('SET', 'requirepass', PASSWORD);
    admin.disconnect();
    const lines: string[] = [];
    const log = pino({ base: null }, { write: (line: string) => void lines.push(line) });
    const rls = await startRls(
      config,
      {
        listen: { host: '127.0.0.1', port: 0 },
        admin: false,
        store: `redis://:${PASSWORD}@127.0.0.1:${redis.port}`,
        ...(onStoreError === undefined ? {} : { onStoreError }),
      },
      { log, watch: false },
    );
    const client = clientOf(rls.address);
    try {
      assert.equal((await ask(client, request)).overall_code, 'OK', 'Redis up');
      await redis.kill();
      await check(client);
    } finally {
      client.close();
      await rls.stop();
      await redis.stop();
    }
    assert.ok(
      lines.some((l) => l.includes('rate-limit store failed')),
      'the failure is logged',
    );
    assert.ok(!lines.some((l) => l.includes(PASSWORD)), 'never the password');
    return lines;
  }

  const codes = async (client: Client & { ShouldRateLimit: Call }, n: number) => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push((await ask(client, request)).overall_code);
    return out;
  };

  it('open: OK', async () => {
    await onKilledRedis('open', async (client) =>
      assert.deepEqual(await codes(client, 5), Array(5).fill('OK')),
    );
  });

  it("closed: UNAVAILABLE, as envoyproxy/ratelimit answers a Redis error (Envoy's failure_mode_deny decides), never OVER_LIMIT", async () => {
    await onKilledRedis('closed', async (client) => {
      for (let i = 0; i < 3; i++) {
        await assert.rejects(ask(client, request), (error: ServiceError) => {
          assert.equal(error.code, status.UNAVAILABLE);
          assert.match(error.details, /store is unavailable/);
          return true;
        });
      }
    });
  });

  it('fallback, and by default: counted in memory, exactly the limit admitted', async () => {
    for (const policy of ['fallback', undefined] as const) {
      await onKilledRedis(policy, async (client) =>
        assert.deepEqual(await codes(client, 5), ['OK', 'OK', 'OK', 'OVER_LIMIT', 'OVER_LIMIT']),
      );
    }
  });
});

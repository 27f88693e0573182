import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { type ServiceError, status } from '@grpc/grpc-js';
import { MemoryStore } from 'floodgate';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadRlsConfig } from '../src/rls/config.js';
import { DETAILED_METRIC_VALUES } from '../src/rls/metrics.js';
import { fromWire, rateLimitService, type WireRequest } from '../src/rls/protocol.js';
import { startRls } from '../src/rls/rls.js';
import { InvalidRequest, MAX_COST, RateLimitService } from '../src/rls/service.js';

import {
  ask,
  clientOf,
  type Entry,
  type Reply,
  type RlsClient,
  withRls as withRlsAt,
} from './helpers/rls.js';

// Windows are aligned to their unit, so a wall clock crossing a second (or a minute) between two calls of
// a test would start a new one: the service's time is held in the middle of an hour.
const HELD = Math.floor(Date.now() / 3_600_000) * 3_600_000 + 1_800_500;
const withRls: typeof withRlsAt = (config, run, store = 'memory', options = {}) =>
  withRlsAt(config, run, store, { now: () => HELD, ...options });

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

const req = (descriptors: Entry[][], extra: object = {}) => ({
  domain: 'edge',
  descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })),
  ...extra,
});

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

  it("the admin API shows each limit's busiest descriptors, and an unblocked one is allowed again", async () => {
    const token = 'rls-admin-token-0123456789';
    process.env.FLOODGATE_ADMIN_TOKEN = token;
    try {
      await withRls(file('admin.yaml', CONFIG), async (client, rls) => {
        for (let i = 0; i < 5; i++) await ask(client, req([[['remote_address', '10.0.0.9']]]));
        await ask(client, req([[['remote_address', '10.0.0.1']]]));
        const list = (await (await fetch(`${rls.adminUrl}/api`)).json()) as { limiters: { name: string }[] };
        const name = 'remote_address: 3 per minute';
        assert.ok(
          list.limiters.some((l: { name: string }) => l.name === name),
          JSON.stringify(list),
        );
        const api = `${rls.adminUrl}/api/limiters/${encodeURIComponent(name)}`;
        const top = (await (await fetch(`${api}/top`)).json()) as {
          requests: { clients: { count: number }[] };
          refusals: { clients: { count: number; key: string }[] };
        };
        assert.equal(top.requests.clients[0]!.count, 5);
        assert.equal(top.refusals.clients[0]!.count, 2);
        const key = encodeURIComponent(top.refusals.clients[0]!.key);
        assert.equal((await fetch(`${api}/clients/${key}/reset`, { method: 'POST' })).status, 401);
        const reset = await fetch(`${api}/clients/${key}/reset`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(reset.status, 200);
        assert.equal((await ask(client, req([[['remote_address', '10.0.0.9']]]))).overall_code, 'OK');
        // No override brings in what the configuration refuses: a request's descriptors are decided together.
        const slot = await fetch(`${api}/overrides/${key}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: '{"algorithm":"concurrency","limit":1,"leaseTimeout":"1m"}',
        });
        assert.equal(slot.status, 400);
        assert.match(
          ((await slot.json()) as { detail: string }).detail,
          /\.algorithm" must be another algorithm than "concurrency"/,
        );
      });
    } finally {
      delete process.env.FLOODGATE_ADMIN_TOKEN;
    }
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
      /descriptors\[0\]\.descriptors\[0\]\.rate_limit\.unit: must be one of second, .*, year; got "fortnight"$/,
    );
    // As written: the case is folded only to compare.
    assert.throws(
      bad('domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: Fortnight, requests_per_unit: 1 }\n'),
      /rate_limit\.unit: must be one of .*; got "Fortnight"$/,
    );
    assert.throws(
      bad('domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: 5, requests_per_unit: 1 }\n'),
      /rate_limit\.unit: must be one of .*; got 5$/,
    );
    assert.throws(
      bad('domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second }\n'),
      /rate_limit\.requests_per_unit: is required/,
    );
    for (const [value, got] of [
      ['-1', '-1'],
      ['1.5', '1.5'],
      ['"10"', '"10"'],
      ['4294967296', '4294967296'],
    ] as const)
      assert.throws(
        bad(
          `domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: ${value} }\n`,
        ),
        new RegExp(
          `descriptors\\[0\\]\\.rate_limit\\.requests_per_unit: must be an integer from 0 to 4294967295; got ${got.replace('.', '\\.')}$`,
        ),
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
        'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, name: "" }\n',
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

describe('floodgate rls: values from requests', () => {
  const CRAFTED = `
domain: inj
descriptors:
  - key: user
    rate_limit: { name: per_user, unit: hour, requests_per_unit: 1 }
    descriptors:
      - key: route
        rate_limit: { name: per_user, unit: hour, requests_per_unit: 1 }
  - key: client
    detailed_metric: true
    rate_limit: { unit: hour, requests_per_unit: 5 }
`;
  const once = { requests_per_unit: 1, unit: 'HOUR' };
  const sent = (domain: string, entries: Entry[], limit?: object) => ({
    domain,
    descriptors: [{ entries: entries.map(([key, value]) => ({ key, value })), ...(limit ? { limit } : {}) }],
  });

  it('a value carrying the old separator never drains another descriptor: user="v\\nroute\\nw" against user=v, route=w', async () => {
    await withRls(file('inj.yaml', CRAFTED), async (client) => {
      const crafted = await ask(client, sent('inj', [['user', 'v\nroute\nw']]));
      assert.equal(crafted.overall_code, 'OK');
      const victim = await ask(
        client,
        sent('inj', [
          ['user', 'v'],
          ['route', 'w'],
        ]),
      );
      assert.equal(victim.overall_code, 'OK');
      assert.equal(victim.statuses[0]!.limit_remaining, 0);
      // Each still has its own counter, charged once.
      assert.equal((await ask(client, sent('inj', [['user', 'v\nroute\nw']]))).overall_code, 'OVER_LIMIT');
    });
  });

  it('entries that differ only in separators, in where the domain ends, or in unicode normalisation have their own counters', async () => {
    await withRls(file('inj.yaml', CRAFTED), async (client) => {
      // Pairs that a join of the parts with \n, =, `,`, \0 or nothing at all would make one counter; every
      // request sends a limit of 1 per hour for a descriptor the configuration lacks, so a shared counter
      // would refuse the second of a pair.
      const requests: [string, Entry[]][] = [
        ['inj', [['a', 'b\nc\nd']]],
        [
          'inj',
          [
            ['a', 'b'],
            ['c', 'd'],
          ],
        ],
        ['inj', [['a\nb', 'c']]],
        ['inj', [['a', 'b\nc']]],
        ['inj', [['a', 'b=c']]],
        ['inj', [['a=b', 'c']]],
        ['inj', [['a', 'b,c=d']]],
        ['inj', [['a,b', 'c=d']]],
        ['inj', [['a', 'x\u0000y']]],
        ['inj', [['a\u0000x', 'y']]],
        ['inj', [['a', 'bc']]],
        ['inj', [['ab', 'c']]],
        ['inj', [['k', '']]],
        [
          'inj',
          [
            ['k', ''],
            ['k', ''],
          ],
        ],
        ['inj', [['k', '\n']]],
        [
          'inj',
          [
            ['tenant', 't'],
            ['id', '1'],
          ],
        ],
        ['inj\ntenant\nt', [['id', '1']]],
        ['inj\ntenant', [['t', '1']]],
        // Values are compared as sent, as in the tree's exact matches: é composed and decomposed are two.
        ['inj', [['u', '\u00e9']]],
        ['inj', [['u', 'e\u0301']]],
      ];
      for (const [domain, entries] of requests) {
        const reply = await ask(client, sent(domain, entries, once));
        assert.equal(reply.overall_code, 'OK', `${JSON.stringify([domain, entries])} found its counter used`);
      }
      // And each counter is kept: the first again is refused.
      const [domain, entries] = requests[0]!;
      assert.equal((await ask(client, sent(domain, entries, once))).overall_code, 'OVER_LIMIT');
    });
  });

  it('on Redis: crafted values keep to their own counters, and no value reaches a key', async () => {
    const redis = await RedisServer.start();
    const keys = new Redis(redis.port, '127.0.0.1');
    try {
      await withRls(
        file('inj.yaml', CRAFTED),
        async (client) => {
          const secret = 'token-3f9a';
          assert.equal(
            (await ask(client, sent('inj', [['user', `${secret}\nroute\nw`]]))).overall_code,
            'OK',
          );
          const victim = sent('inj', [
            ['user', secret],
            ['route', 'w'],
          ]);
          assert.equal((await ask(client, victim)).overall_code, 'OK');
          assert.equal((await ask(client, victim)).overall_code, 'OVER_LIMIT');
          const stored = await keys.keys('*');
          assert.ok(stored.length >= 2, `keys: ${stored.join(' ')}`);
          for (const key of stored) assert.ok(!key.includes(secret) && !key.includes('route'), key);
        },
        redis.url,
      );
    } finally {
      keys.disconnect();
      await redis.stop();
    }
  });

  it(`detailed_metric keeps at most ${DETAILED_METRIC_VALUES} series per descriptor, the rest counted as "other": 500 values, every decision counted`, async () => {
    await withRls(file('inj.yaml', CRAFTED), async (client, rls) => {
      const values = Array.from({ length: 500 }, (_, i) => `client-${i}`);
      for (let at = 0; at < values.length; at += 50) {
        const reply = await ask(client, {
          domain: 'inj',
          descriptors: values.slice(at, at + 50).map((v) => ({ entries: [{ key: 'client', value: v }] })),
        });
        assert.equal(reply.overall_code, 'OK');
      }
      const text = await (await fetch(`${rls.adminUrl}/metrics`)).text();
      const series = [
        ...text.matchAll(
          /^floodgate_rls_descriptors_total\{domain="inj",descriptor="(client[^"]*)",[^}]*\} (\d+)$/gm,
        ),
      ];
      assert.ok(series.length <= DETAILED_METRIC_VALUES + 1, `${series.length} series`);
      assert.ok(series.length > DETAILED_METRIC_VALUES, 'the first values keep their own series');
      assert.equal(
        series.reduce((sum, [, , n]) => sum + Number(n), 0),
        500,
      );
      assert.ok(series.some(([, label]) => label === 'client#other'));
    });
  });

  it('a hits_addend past every limit is over the limit, never an error: uint32 max, and a 64-bit varint on the wire', async () => {
    await withRls(file('inj.yaml', CRAFTED), async (client) => {
      const max = await ask(client, { ...sent('inj', [['user', 'big']]), hits_addend: 2 ** 32 - 1 });
      assert.equal(max.overall_code, 'OVER_LIMIT');
      // A client that writes the field as a uint64 (10 bytes of varint, 2^64 - 1), bypassing protobufjs.
      const text = (s: string) => [s.length, ...Buffer.from(s)];
      const entry = [0x0a, ...text('user'), 0x12, ...text('wide')];
      const descriptor = [0x0a, entry.length, ...entry];
      const bytes = Buffer.from([
        0x0a,
        ...text('inj'),
        0x12,
        descriptor.length,
        ...descriptor,
        0x18,
        ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
      ]);
      const decode = rateLimitService().service.ShouldRateLimit!.responseDeserialize as (b: Buffer) => Reply;
      const reply = await new Promise<Reply>((resolve, reject) =>
        client.makeUnaryRequest(
          '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
          (b: Buffer) => b,
          decode,
          bytes,
          (error, value) => (error ? reject(error) : resolve(value!)),
        ),
      );
      assert.equal(reply.overall_code, 'OVER_LIMIT');
      assert.equal((await ask(client, sent('inj', [['user', 'wide']]))).overall_code, 'OK');
    });
  });

  it('the service takes a hits_addend past 2^53 as over every limit, and refuses one that is not a whole number', async () => {
    const service = new RateLimitService(loadRlsConfig(file('inj.yaml', CRAFTED)), new MemoryStore());
    const request = (hitsAddend: number) => ({
      domain: 'inj',
      hitsAddend,
      descriptors: [
        { entries: [{ key: 'user', value: 'huge' }] },
        { entries: [{ key: 'other', value: 'x' }] },
      ],
    });
    for (const huge of [2 ** 53 + 2, 2 ** 64, 1e300]) {
      const reply = await service.decide(request(huge));
      assert.equal(reply.overallCode, 'OVER_LIMIT');
      assert.deepEqual(
        reply.statuses.map((s) => s.code),
        ['OVER_LIMIT', 'OK'],
      );
    }
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => service.decide(request(bad)), InvalidRequest);
    }
    assert.equal((await service.decide(request(0))).overallCode, 'OK');
  });

  it('reads a uint64 hits_addend given as a string, a bigint or a Long, and refuses one that is not a whole number', () => {
    const wire = (hits_addend: unknown) =>
      fromWire({ domain: 'd', descriptors: [], hits_addend } as unknown as WireRequest).hitsAddend;
    assert.equal(wire('18446744073709551615'), MAX_COST);
    assert.equal(wire(18446744073709551615n), MAX_COST);
    assert.equal(
      wire({ low: -1, high: -1, unsigned: true, toString: () => '18446744073709551615' }),
      MAX_COST,
    );
    assert.equal(wire('7'), 7);
    assert.equal(wire(undefined), 0);
    for (const bad of ['-1', '1.5', '', '0x10', {}]) assert.throws(() => wire(bad), InvalidRequest);
  });

  it('refuses a 1 MB value, key or domain with INVALID_ARGUMENT, and keeps serving', async () => {
    await withRls(file('inj.yaml', CRAFTED), async (client) => {
      const mb = 'x'.repeat(1 << 20);
      const cases: [object, RegExp][] = [
        [sent('inj', [['user', mb]]), /descriptors\[0\]\.entries\[0\]\.value is longer than 4096/],
        [sent('inj', [[mb, 'v']]), /descriptors\[0\]\.entries\[0\]\.key is longer than 256/],
        [sent(mb, [['user', 'v']], once), /domain is longer than 256/],
      ];
      for (const [request, message] of cases) {
        await assert.rejects(ask(client, request), (error: ServiceError) => {
          assert.equal(error.code, status.INVALID_ARGUMENT);
          assert.match(error.details, message);
          return true;
        });
      }
      assert.equal((await ask(client, sent('inj', [['user', 'after']]))).overall_code, 'OK');
    });
  });

  it('values that are not well-formed UTF-16 keep their own counters (a lone surrogate is not U+FFFD)', async () => {
    const service = new RateLimitService(loadRlsConfig(file('inj.yaml', CRAFTED)), new MemoryStore());
    const ask1 = (value: string) =>
      service.decide({ domain: 'inj', hitsAddend: 0, descriptors: [{ entries: [{ key: 'user', value }] }] });
    assert.equal((await ask1('\ud800')).overallCode, 'OK');
    assert.equal((await ask1('\ufffd')).overallCode, 'OK');
    assert.equal((await ask1('\ud800')).overallCode, 'OVER_LIMIT');
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
    check: (client: RlsClient) => Promise<void>,
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

  const codes = async (client: RlsClient, n: number) => {
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

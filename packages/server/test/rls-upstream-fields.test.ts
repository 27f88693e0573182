import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { rlsSettingsFromFlags } from '../src/cli/rls.js';
import { loadRlsConfig } from '../src/rls/config.js';
import { ask, type Entry, jsonOf, type Reply, withRls } from './helpers/rls.js';

// envoyproxy/ratelimit's fields beyond the basic tree, asked over gRPC: replaces, quota_mode with the
// response's dynamic_metadata, share_threshold, value_to_metric, merged domains, QUOTA_MODE.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-upstream-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const CONFIG = file(
  'edge.yaml',
  `
domain: edge
descriptors:
  - key: category
    value: read
    rate_limit: { name: reads, unit: minute, requests_per_unit: 2 }
  - key: endpoint
    value: /search
    rate_limit:
      unit: minute
      requests_per_unit: 3
      replaces: [{ name: reads }]
  - key: backend
    value: primary
    quota_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
    metadata: { route: { to: primary, tier: 1 }, tags: [a, 1, true, null] }
  - key: backend
    value: spare
    quota_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
    metadata: { route: { to: spare, zone: b } }
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: blocked
    rate_limit: { unit: minute, requests_per_unit: 0 }
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: { unit: minute, requests_per_unit: 4 }
  - key: own
    value: own/*
    rate_limit: { unit: minute, requests_per_unit: 4 }
  - key: route
    value_to_metric: true
    descriptors:
      - key: method
        value: GET
        descriptors:
          - key: subject
            rate_limit: { unit: minute, requests_per_unit: 60 }
`,
);

const req = (descriptors: Entry[][], extra: object = {}) => ({
  domain: 'edge',
  descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })),
  ...extra,
});
const statuses = (reply: Reply) =>
  reply.statuses.map((s) => [s.code, s.current_limit?.requests_per_unit ?? null, s.limit_remaining]);

let redis: RedisServer;
before(async () => {
  redis = await RedisServer.start();
});
after(() => redis.stop());

for (const store of ['memory', 'redis'] as const) {
  const url = () => (store === 'memory' ? 'memory' : `redis://127.0.0.1:${redis.port}`);
  // Values of their own per store, so that the Redis run starts afresh.
  const own = (value: string) => `${value}-${store}`;
  // Each test in a minute of its own (windows are aligned to it), so that none sees another's counts in Redis.
  let minutes = 0;
  const held = () => {
    const at = Date.UTC(2030, 0, 1) + minutes++ * 60_000 + 30_000;
    return { now: () => at };
  };

  describe(`floodgate rls, ${store} store: replaces`, () => {
    it('a limit named in the replaces of a matched descriptor neither decides nor is charged; alone, it counts again', async () => {
      await withRls(
        CONFIG,
        async (client) => {
          const both = req([[['category', 'read']], [['endpoint', '/search']], [['user', own('ann')]]]);
          const got: unknown[] = [];
          for (let i = 0; i < 4; i++) got.push(statuses(await ask(client, both)));
          assert.deepEqual(got, [
            [
              ['OK', null, 0],
              ['OK', 3, 2],
              ['OK', 5, 4],
            ],
            [
              ['OK', null, 0],
              ['OK', 3, 1],
              ['OK', 5, 3],
            ],
            [
              ['OK', null, 0],
              ['OK', 3, 0],
              ['OK', 5, 2],
            ],
            [
              ['OK', null, 0],
              ['OVER_LIMIT', 3, 0],
              ['OK', 5, 2],
            ],
          ]);
          // `reads` was never charged while replaced: alone, its 2 are whole.
          const alone = await ask(client, req([[['category', 'read']], [['user', own('bob')]]]));
          assert.deepEqual(statuses(alone), [
            ['OK', 2, 1],
            ['OK', 5, 4],
          ]);
        },
        url(),
        held(),
      );
    });
  });

  describe(`floodgate rls, ${store} store: quota_mode and dynamic_metadata`, () => {
    it('over a quota, the descriptor says OVER_LIMIT, the request is OK with the passing metadata; all over refuses', async () => {
      await withRls(
        CONFIG,
        async (client) => {
          const call = req([[['backend', 'primary']], [['backend', 'spare']], [['user', own('cy')]]], {
            hits_addend: 1,
          });
          const first = await ask(client, call);
          assert.equal(first.overall_code, 'OK');
          // The whole shape, as upstream builds it: the request, then the metadata of those within their limit
          // (a field already there stays the first descriptor's; mappings are merged).
          assert.deepEqual(jsonOf(first.dynamic_metadata!), {
            domain: 'edge',
            descriptors: [
              { entries: ['backend=primary'] },
              { entries: ['backend=spare'] },
              { entries: [`user=${own('cy')}`] },
            ],
            hitsAddend: 1,
            metadata: { route: { to: 'primary', tier: 1, zone: 'b' }, tags: ['a', 1, true, null] },
          });
          const second = await ask(client, req([[['backend', 'primary']], [['backend', 'spare']]]));
          assert.equal(second.overall_code, 'OVER_LIMIT');
          assert.deepEqual(statuses(second), [
            ['OVER_LIMIT', 1, 0],
            ['OVER_LIMIT', 1, 0],
          ]);
          assert.deepEqual(jsonOf(second.dynamic_metadata!).metadata, undefined);
          // One quota left of two: the request is OK, the spent one says OVER_LIMIT, no Retry-After.
          const third = await ask(
            client,
            req([[['backend', 'primary']], [['user', own('cy')]]], { hits_addend: 0 }),
          );
          assert.equal(third.overall_code, 'OVER_LIMIT');
          const mixed = await ask(client, req([[['backend', 'primary']], [['backend', own('none')]]]));
          assert.equal(mixed.overall_code, 'OVER_LIMIT', 'the only quota descriptor with a limit is over');
        },
        url(),
        held(),
        { dynamicMetadata: true },
      );
    });

    it('one quota over and another within: OK, the spent one OVER_LIMIT in its status, the other charged', async () => {
      await withRls(
        CONFIG,
        async (client) => {
          await ask(client, req([[['backend', 'primary']]]));
          const reply = await ask(client, req([[['backend', 'primary']], [['backend', 'spare']]]));
          assert.equal(reply.overall_code, 'OK');
          assert.deepEqual(statuses(reply), [
            ['OVER_LIMIT', 1, 0],
            ['OK', 1, 0],
          ]);
          assert.equal(
            reply.response_headers_to_add.some((h) => h.key === 'Retry-After'),
            false,
            'an OK answer has no Retry-After',
          );
          assert.deepEqual(jsonOf(reply.dynamic_metadata!).metadata, { route: { to: 'spare', zone: 'b' } });
        },
        url(),
        held(),
        { dynamicMetadata: true },
      );
    });

    it('a request that a limit of 0 refuses charges no quota', async () => {
      await withRls(
        CONFIG,
        async (client) => {
          const refused = await ask(client, req([[['blocked', 'x']], [['backend', 'primary']]]));
          assert.equal(refused.overall_code, 'OVER_LIMIT');
          assert.deepEqual(statuses(await ask(client, req([[['backend', 'primary']]]))), [['OK', 1, 0]]);
        },
        url(),
        held(),
      );
    });

    it('without --dynamic-metadata, answers carry none (as upstream by default)', async () => {
      await withRls(
        CONFIG,
        async (client) => {
          const reply = await ask(client, req([[['backend', 'primary']]]));
          assert.equal(reply.dynamic_metadata, null);
        },
        url(),
        held(),
      );
    });

    it('--quota-mode (QUOTA_MODE) puts every descriptor in quota mode, sent limits included', async () => {
      await withRls(
        CONFIG,
        async (client) => {
          const call = req([[['user', own('dee')]], [['category', 'read']]], { hits_addend: 2 });
          assert.equal((await ask(client, call)).overall_code, 'OK');
          const reply = await ask(client, call);
          // category's 2 are spent, user's 5 are not: one quota within, so OK.
          assert.equal(reply.overall_code, 'OK');
          assert.deepEqual(statuses(reply), [
            ['OK', 5, 1],
            ['OVER_LIMIT', 2, 0],
          ]);
        },
        url(),
        held(),
        { quota: true },
      );
    });
  });

  describe(`floodgate rls, ${store} store: share_threshold`, () => {
    it('the values of a sharing wildcard count against one counter, in parallel exactly its limit; others each their own', async () => {
      await withRls(
        CONFIG,
        async (client) => {
          const shared = await Promise.all(
            Array.from({ length: 10 }, (_, i) => ask(client, req([[['files', `files/${store}-${i}`]]]))),
          );
          assert.equal(shared.filter((r) => r.overall_code === 'OK').length, 4);
          // A value sent as the pattern itself is a value like any other, sharing the same counter.
          assert.equal((await ask(client, req([[['files', 'files/*']]]))).overall_code, 'OVER_LIMIT');
          const apart = await Promise.all(
            Array.from({ length: 10 }, (_, i) => ask(client, req([[['own', `own/${store}-${i}`]]]))),
          );
          assert.equal(apart.filter((r) => r.overall_code === 'OK').length, 10);
        },
        url(),
        held(),
      );
    });
  });
}

describe('floodgate rls: value_to_metric', () => {
  it('the value sent at such a level shows in the stats label (as a digest), a configured one as itself', async () => {
    await withRls(CONFIG, async (client, rls) => {
      await ask(
        client,
        req([
          [
            ['route', 'api'],
            ['method', 'GET'],
            ['subject', '123'],
          ],
        ]),
      );
      await ask(
        client,
        req([
          [
            ['route', 'web'],
            ['method', 'GET'],
            ['subject', '456'],
          ],
        ]),
      );
      const text = await (await fetch(`${rls.adminUrl}/metrics`)).text();
      const labels = [
        ...text.matchAll(/ratelimit_service_rate_limit_total_hits\{domain="edge",descriptor="([^"]+)"\}/g),
      ].map((m) => m[1]!);
      assert.equal(labels.length, 2, text);
      for (const label of labels) assert.match(label, /^route_#[\w-]{8}\.method_GET\.subject$/);
      assert.notEqual(labels[0], labels[1]);
      assert.doesNotMatch(text, /route_(api|web)/);
    });
  });
});

describe('floodgate rls --merge-domains (MERGE_DOMAIN_CONFIG)', () => {
  const folder = join(dir, 'merged');
  mkdirSync(folder);
  writeFileSync(
    join(folder, 'a.yaml'),
    'domain: d\ndescriptors:\n  - key: k\n    value: a\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n',
  );
  writeFileSync(
    join(folder, 'b.yaml'),
    'domain: d\ndescriptors:\n  - key: k\n    value: b\n    rate_limit: { unit: minute, requests_per_unit: 2 }\n',
  );

  it('off by default: a second file of a domain is refused; on (flag or variable), their descriptors are one domain', async () => {
    assert.throws(() => loadRlsConfig(folder), /b\.yaml: domain "d" is also in .*a\.yaml/);
    const flag = rlsSettingsFromFlags({ config: folder, mergeDomains: true }).settings;
    assert.equal(flag.mergeDomains, true);
    process.env.MERGE_DOMAIN_CONFIG = 'true';
    try {
      assert.equal(rlsSettingsFromFlags({ config: folder }).settings.mergeDomains, true);
    } finally {
      delete process.env.MERGE_DOMAIN_CONFIG;
    }
    assert.equal(rlsSettingsFromFlags({ config: folder }).settings.mergeDomains, false);
    await withRls(
      folder,
      async (client) => {
        const reply = await ask(client, {
          domain: 'd',
          descriptors: [{ entries: [{ key: 'k', value: 'a' }] }, { entries: [{ key: 'k', value: 'b' }] }],
        });
        assert.deepEqual(statuses(reply), [
          ['OK', 1, 0],
          ['OK', 2, 1],
        ]);
      },
      'memory',
      {},
      { mergeDomains: true },
    );
  });
});

describe('floodgate rls: the upstream fields, refused when they cannot mean anything', () => {
  const bad = (text: string) => () => loadRlsConfig(file('bad.yaml', `domain: d\ndescriptors:\n${text}`));
  it('share_threshold without a *, replaces of its own name or empty, metadata that no Struct can carry: each names the file and field', () => {
    assert.throws(
      bad('  - key: k\n    value: plain\n    share_threshold: true\n'),
      /bad\.yaml: descriptors\[0\]\.share_threshold: needs a value with "\*"; "k_plain" has none/,
    );
    assert.throws(
      bad(
        '  - key: k\n    rate_limit: { name: a, unit: second, requests_per_unit: 1, replaces: [{ name: b }, { name: a }] }\n',
      ),
      /bad\.yaml: descriptors\[0\]\.rate_limit\.replaces\[1\]\.name: must not be this limit's own name \("a"\)/,
    );
    assert.throws(
      bad('  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, replaces: [{ name: "" }] }\n'),
      /bad\.yaml: descriptors\[0\]\.rate_limit\.replaces\[0\]\.name: must not be empty/,
    );
    assert.throws(
      bad('  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, replaces: [{ nme: x }] }\n'),
      /bad\.yaml: descriptors\[0\]\.rate_limit\.replaces\[0\]: unknown field "nme"/,
    );
    assert.throws(
      bad('  - key: k\n    metadata: [a, b]\n'),
      /bad\.yaml: descriptors\[0\]\.metadata: must be a mapping/,
    );
    assert.throws(
      bad('  - key: k\n    metadata: { x: .nan }\n'),
      /bad\.yaml: descriptors\[0\]\.metadata\.x: must be a string, a finite number/,
    );
    // A limit without a name replacing others is fine, as upstream.
    assert.ok(
      loadRlsConfig(
        file(
          'ok.yaml',
          'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, replaces: [{ name: a }] }\n',
        ),
      ),
    );
  });

  it('--quota-mode and --dynamic-metadata, or QUOTA_MODE and RESPONSE_DYNAMIC_METADATA, off by default', () => {
    const off = rlsSettingsFromFlags({ config: CONFIG }).settings;
    assert.deepEqual([off.quota, off.dynamicMetadata], [false, false]);
    const on = rlsSettingsFromFlags({ config: CONFIG, quotaMode: true, dynamicMetadata: true }).settings;
    assert.deepEqual([on.quota, on.dynamicMetadata], [true, true]);
    process.env.QUOTA_MODE = 'true';
    process.env.RESPONSE_DYNAMIC_METADATA = 'true';
    try {
      const env = rlsSettingsFromFlags({ config: CONFIG }).settings;
      assert.deepEqual([env.quota, env.dynamicMetadata], [true, true]);
    } finally {
      delete process.env.QUOTA_MODE;
      delete process.env.RESPONSE_DYNAMIC_METADATA;
    }
  });
});

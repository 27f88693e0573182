import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { codeBlocks, RedisServer, readDoc } from '@floodgate/test-support';
import { type ServiceError, status } from '@grpc/grpc-js';
import { loadRlsConfig } from '../src/rls/config.js';
import { fromWire, type WireRequest } from '../src/rls/protocol.js';
import { InvalidRequest, MAX_COST } from '../src/rls/request.js';
import { ask, type Entry, headersOf, withRls } from './helpers/rls.js';

// What Envoy users' configurations and requests carry, answered as envoyproxy/ratelimit answers them:
// one Retry-After, shadow mode unseen by clients, per-descriptor hits_addend, limits of 0, large quotas,
// weeks, a domain without descriptors.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-limits-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const CONFIG = `
domain: edge
descriptors:
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: path
    value: /login
    rate_limit: { name: login, unit: hour, requests_per_unit: 1 }
  - key: path
    value: /shadowed
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: tokens
    rate_limit: { unit: minute, requests_per_unit: 10 }
`;

// What the configuration above could not load before: a limit of 0, large quotas, a week.
const UPSTREAM_ONLY = `${CONFIG}
  - key: path
    value: /blocked
    rate_limit: { unit: second, requests_per_unit: 0 }
  - key: monthly
    rate_limit: { unit: month, requests_per_unit: 1000000 }
  - key: yearly
    rate_limit: { unit: year, requests_per_unit: 100000 }
  - key: daily
    rate_limit: { unit: day, requests_per_unit: 100000000 }
  - key: weekly
    rate_limit: { unit: week, requests_per_unit: 2 }
`;

const req = (descriptors: Entry[][], extra: object = {}) => ({
  domain: 'edge',
  descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })),
  ...extra,
});

describe('floodgate rls: Retry-After and shadow mode', () => {
  it('one Retry-After, the longest wait of the refusing descriptors, as whole seconds', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const both = req([[['remote_address', '10.1.0.1']], [['path', '/login']]]);
      // Windows are aligned to the unit: the hour's wait is what is left of this hour.
      const hourLeft = () => Math.ceil((3_600_000 - (Date.now() % 3_600_000)) / 1000);
      const before = hourLeft();
      assert.equal((await ask(client, both)).overall_code, 'OK');
      const refused = await ask(client, both);
      assert.equal(refused.overall_code, 'OVER_LIMIT');
      const retry = headersOf(refused).get('Retry-After');
      assert.equal(retry?.length, 1, `one Retry-After, got ${JSON.stringify(retry)}`);
      assert.match(retry[0]!, /^\d+$/);
      // The hour's wait, not the minute's: retrying after the minute would be refused again.
      const seconds = Number(retry[0]);
      const later = hourLeft();
      assert.ok(seconds <= before && seconds >= later, `${seconds} between ${later} and ${before}`);
      // One refusing descriptor: its own wait.
      const alone = await ask(client, req([[['remote_address', '10.1.0.1']]]));
      const wait = Number(headersOf(alone).get('Retry-After')![0]);
      assert.ok(wait > 0 && wait <= 60, `${wait}`);
    });
  });

  it('a shadow-mode descriptor over its limit is invisible to clients: no Retry-After, no RateLimit item', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const shadowed = req([[['path', '/shadowed']]]);
      await ask(client, shadowed);
      const over = await ask(client, shadowed);
      assert.equal(over.overall_code, 'OK');
      assert.equal(over.statuses[0]!.code, 'OK');
      assert.deepEqual(over.response_headers_to_add, []);
      // Beside an enforced descriptor, only that one is named.
      const mixed = await ask(client, req([[['path', '/shadowed']], [['remote_address', '10.1.0.2']]]));
      assert.equal(mixed.overall_code, 'OK');
      const fields = headersOf(mixed);
      assert.deepEqual([...fields.keys()].sort(), ['RateLimit', 'RateLimit-Policy']);
      assert.match(fields.get('RateLimit')![0]!, /^"remote_address";r=0;t=\d+$/);
      assert.equal(fields.get('RateLimit-Policy')![0], '"remote_address";q=1;w=60');
    });
  });
});

describe('floodgate rls: limits sent with a request', () => {
  it('for a domain the configuration lacks, a sent limit is not enforced: OK', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const request = {
        domain: 'nobody',
        descriptors: [{ entries: [{ key: 'k', value: 'v' }], limit: { requests_per_unit: 1, unit: 'HOUR' } }],
      };
      const replies = await Promise.all([1, 2, 3].map(() => ask(client, request)));
      assert.deepEqual(
        replies.map((r) => r.overall_code),
        ['OK', 'OK', 'OK'],
      );
      assert.equal(replies[2]!.statuses[0]!.current_limit, null);
    });
  });

  it('a limit sent for a shadow-mode node is enforced, as upstream enforces it', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const sent = {
        domain: 'edge',
        descriptors: [
          { entries: [{ key: 'path', value: '/shadowed' }], limit: { requests_per_unit: 1, unit: 'HOUR' } },
        ],
      };
      assert.equal((await ask(client, sent)).overall_code, 'OK');
      const over = await ask(client, sent);
      assert.equal(over.overall_code, 'OVER_LIMIT');
      assert.equal(headersOf(over).get('Retry-After')?.length, 1);
    });
  });

  it('a sent limit of 0 refuses every request, and charges no other descriptor', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const zero = {
        domain: 'edge',
        descriptors: [
          { entries: [{ key: 'tenant', value: 't0' }], limit: { requests_per_unit: 0, unit: 'MINUTE' } },
          { entries: [{ key: 'remote_address', value: '10.1.0.3' }] },
        ],
      };
      const refused = await ask(client, zero);
      assert.equal(refused.overall_code, 'OVER_LIMIT');
      assert.deepEqual(
        refused.statuses.map((s) => s.code),
        ['OVER_LIMIT', 'OK'],
      );
      assert.deepEqual(refused.statuses[0]!.current_limit, {
        name: 'override',
        requests_per_unit: 0,
        unit: 'MINUTE',
      });
      // No wait would help: no Retry-After.
      assert.equal(headersOf(refused).get('Retry-After'), undefined);
      // The address's one request a minute is still whole.
      assert.equal((await ask(client, req([[['remote_address', '10.1.0.3']]]))).overall_code, 'OK');
    });
  });
});

describe('floodgate rls: per-descriptor hits_addend', () => {
  const tokens = (value: string, hits?: number) => ({
    entries: [{ key: 'tokens', value }],
    ...(hits === undefined ? {} : { hits_addend: { value: hits } }),
  });

  it("replaces the request's for its descriptor; the others keep the request's", async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const reply = await ask(client, {
        domain: 'edge',
        hits_addend: 2,
        descriptors: [tokens('a', 7), tokens('b')],
      });
      assert.deepEqual(
        reply.statuses.map((s) => s.limit_remaining),
        [3, 8],
      );
      // 7 + 4 is past 10: refused, and neither charged.
      const over = await ask(client, { domain: 'edge', descriptors: [tokens('a', 4), tokens('b')] });
      assert.equal(over.overall_code, 'OVER_LIMIT');
      assert.deepEqual(
        over.statuses.map((s) => s.code),
        ['OVER_LIMIT', 'OK'],
      );
      assert.equal(
        (await ask(client, { domain: 'edge', descriptors: [tokens('b')] })).statuses[0]!.limit_remaining,
        7,
      );
    });
  });

  it('0 charges nothing: a check, OK while there is room', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      for (let i = 0; i < 5; i++) {
        const check = await ask(client, { domain: 'edge', hits_addend: 3, descriptors: [tokens('c', 0)] });
        assert.equal(check.overall_code, 'OK');
        assert.equal(check.statuses[0]!.limit_remaining, 10);
      }
      // The request's own 0 still means 1, as in Envoy.
      const one = await ask(client, { domain: 'edge', hits_addend: 0, descriptors: [tokens('c')] });
      assert.equal(one.statuses[0]!.limit_remaining, 9);
    });
  });

  it('20 parallel requests costing 3 each against 10: exactly 3 admitted', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const replies = await Promise.all(
        Array.from({ length: 20 }, () => ask(client, { domain: 'edge', descriptors: [tokens('p', 3)] })),
      );
      assert.equal(replies.filter((r) => r.overall_code === 'OK').length, 3);
    });
  });
});

describe('floodgate rls: limits of 0', () => {
  it('requests_per_unit: 0 loads and refuses every request, over the wire and in parallel', async () => {
    await withRls(file('edge.yaml', UPSTREAM_ONLY), async (client) => {
      const replies = await Promise.all(
        Array.from({ length: 10 }, () => ask(client, req([[['path', '/blocked']]]))),
      );
      assert.ok(replies.every((r) => r.overall_code === 'OVER_LIMIT'));
      assert.deepEqual(replies[0]!.statuses[0]!.current_limit, {
        name: 'path__blocked',
        requests_per_unit: 0,
        unit: 'SECOND',
      });
      assert.equal(replies[0]!.statuses[0]!.limit_remaining, 0);
    });
  });
});

const stores: [string, () => string][] = [['memory', () => 'memory']];
let redis: RedisServer;
before(async () => {
  redis = await RedisServer.start();
});
after(() => redis.stop());
stores.push(['redis', () => `redis://127.0.0.1:${redis.port}`]);

for (const [kind, store] of stores) {
  describe(`floodgate rls: large quotas and weeks, ${kind} store`, () => {
    it('1,000,000 a month, 100,000 a year and 100,000,000 a day load and count exactly', async () => {
      await withRls(
        file(`big-${kind}.yaml`, UPSTREAM_ONLY),
        async (client) => {
          const cases: [string, number, string][] = [
            ['monthly', 1_000_000, 'MONTH'],
            ['yearly', 100_000, 'YEAR'],
            ['daily', 100_000_000, 'DAY'],
          ];
          for (const [key, limit, unit] of cases) {
            const one = req([[[key, kind]]]);
            const first = await ask(client, { ...one, hits_addend: limit - 1 });
            assert.equal(first.overall_code, 'OK');
            assert.deepEqual(first.statuses[0]!.current_limit, { name: key, requests_per_unit: limit, unit });
            assert.equal(first.statuses[0]!.limit_remaining, 1);
            const last = await ask(client, one);
            assert.deepEqual([last.overall_code, last.statuses[0]!.limit_remaining], ['OK', 0]);
            assert.equal((await ask(client, one)).overall_code, 'OVER_LIMIT');
          }
        },
        store(),
      );
    });

    it('150 parallel calls of hits_addend 1,000,000 against 100,000,000 a day: exactly 100 admitted', async () => {
      await withRls(
        file(`par-${kind}.yaml`, UPSTREAM_ONLY),
        async (client) => {
          const call = { ...req([[['daily', `par-${kind}`]]]), hits_addend: 1_000_000 };
          const replies = await Promise.all(Array.from({ length: 150 }, () => ask(client, call)));
          assert.equal(replies.filter((r) => r.overall_code === 'OK').length, 100);
        },
        store(),
      );
    });

    it('unit: week, reported as WEEK', async () => {
      await withRls(
        file(`week-${kind}.yaml`, UPSTREAM_ONLY),
        async (client) => {
          const weekly = req([[['weekly', kind]]]);
          const WEEK = 7 * 86_400_000;
          const weekLeft = () => Math.floor((WEEK - (Date.now() % WEEK)) / 1000);
          const before = weekLeft();
          const first = await ask(client, weekly);
          const later = weekLeft();
          assert.deepEqual(first.statuses[0]!.current_limit, {
            name: 'weekly',
            requests_per_unit: 2,
            unit: 'WEEK',
          });
          // What is left of the week (aligned to the epoch's, as upstream divides time).
          const left = first.statuses[0]!.duration_until_reset!.seconds;
          assert.ok(left <= before && left >= later, `${left} between ${later} and ${before}`);
          await ask(client, weekly);
          const over = await ask(client, weekly);
          assert.equal(over.overall_code, 'OVER_LIMIT');
          assert.equal(headersOf(over).get('RateLimit-Policy')![0], `"weekly";q=2;w=${7 * 86_400}`);
        },
        store(),
      );
    });
  });
}

describe('floodgate rls: configurations upstream loads', () => {
  it('an empty descriptors: loads, and answers OK', async () => {
    const path = file('empty.yaml', 'domain: empty\ndescriptors:\n');
    assert.deepEqual([...loadRlsConfig(path).keys()], ['empty']);
    await withRls(path, async (client) => {
      const reply = await ask(client, {
        domain: 'empty',
        descriptors: [{ entries: [{ key: 'k', value: 'v' }] }],
      });
      assert.equal(reply.overall_code, 'OK');
    });
  });

  it('an empty nested descriptors: loads too', () => {
    const path = file('nested.yaml', 'domain: d\ndescriptors:\n  - key: k\n    descriptors:\n');
    assert.equal(loadRlsConfig(path).get('d')!.root.get('k')!.any!.children.size, 0);
  });

  it('a token bucket of 100,000,000 a day is refused with the field and the bound', () => {
    const path = file(
      'tb.yaml',
      'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: day, requests_per_unit: 100000000, algorithm: token-bucket }\n',
    );
    assert.throws(
      () => loadRlsConfig(path),
      /tb\.yaml: descriptors\[0\]\.rate_limit\.requests_per_unit: must be small enough that limit × window in ms .* stays below 2\^51/,
    );
  });
});

describe('floodgate rls: docs/rls.md', () => {
  it("the page's configuration loads and answers as its comments say", async () => {
    const yaml = codeBlocks(readDoc('docs/rls.md'), 'yaml').find((block) =>
      block.startsWith('# ratelimit.yaml'),
    );
    assert.ok(yaml !== undefined, 'docs/rls.md has the ratelimit.yaml example');
    await withRls(file('readme.yaml', yaml), async (client) => {
      const edge = (entries: Entry[][]) => ({ ...req(entries), domain: 'edge' });
      const login = await ask(client, edge([[['path', '/login']]]));
      assert.deepEqual(login.statuses[0]!.current_limit, {
        name: 'login',
        requests_per_unit: 20,
        unit: 'HOUR',
      });
      const health = await ask(client, edge([[['path', '/health']]]));
      assert.equal(health.statuses[0]!.limit_remaining, 2 ** 32 - 1);
      for (let i = 0; i < 10; i++) await ask(client, edge([[['path', '/beta']]]));
      const beta = await ask(client, edge([[['path', '/beta']]]));
      assert.deepEqual([beta.overall_code, beta.response_headers_to_add], ['OK', []]);
      const nested = await ask(
        client,
        edge([
          [
            ['database', 'users'],
            ['client', 'c1'],
          ],
        ]),
      );
      assert.equal(nested.statuses[0]!.current_limit!.requests_per_unit, 500);
      const address = await ask(client, edge([[['remote_address', '10.9.0.1']]]));
      assert.equal(address.statuses[0]!.limit_remaining, 59);
    });
  });
});

describe('floodgate rls: a sent limit its node cannot count', () => {
  it('is INVALID_ARGUMENT naming the field and the algorithm, and the server keeps serving', async () => {
    const path = file(
      'tb-node.yaml',
      'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 5, algorithm: token-bucket }\n',
    );
    await withRls(path, async (client) => {
      const sent = {
        domain: 'd',
        descriptors: [
          { entries: [{ key: 'k', value: 'v' }], limit: { requests_per_unit: 4_000_000_000, unit: 'YEAR' } },
        ],
      };
      await assert.rejects(ask(client, sent), (error: ServiceError) => {
        assert.equal(error.code, status.INVALID_ARGUMENT);
        assert.match(error.details, /descriptors\[0\]\.limit\.requests_per_unit must be .* "token-bucket"/);
        return true;
      });
      const fine = { domain: 'd', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] };
      assert.equal((await ask(client, fine)).overall_code, 'OK');
    });
  });
});

describe('floodgate rls: per-descriptor hits_addend values', () => {
  const wire = (value: unknown) =>
    fromWire({
      domain: 'd',
      descriptors: [{ entries: [{ key: 'k', value: 'v' }], hits_addend: { value } }],
    } as unknown as WireRequest).descriptors[0]!.hitsAddend;

  it('reads a uint64 as loaded, as a string, a bigint; one past 2^32 is over every limit', () => {
    assert.equal(wire(0), 0);
    assert.equal(wire(7), 7);
    assert.equal(wire('18446744073709551615'), MAX_COST);
    assert.equal(wire(2n ** 64n - 1n), MAX_COST);
    const unset = fromWire({ domain: 'd', descriptors: [{ entries: [], hits_addend: null }] });
    assert.equal(unset.descriptors[0]!.hitsAddend, undefined);
  });

  it('refuses one that is not a whole number, naming the descriptor', () => {
    for (const bad of ['-1', '1.5', 'x']) {
      assert.throws(
        () => wire(bad),
        (error: Error) => {
          assert.ok(error instanceof InvalidRequest);
          assert.match(error.message, /^descriptors\[0\]\.hits_addend must be a non-negative integer/);
          return true;
        },
      );
    }
  });

  it('uint64 max on the wire is over the limit, never an error', async () => {
    await withRls(file('edge.yaml', CONFIG), async (client) => {
      const reply = await ask(client, {
        domain: 'edge',
        descriptors: [
          { entries: [{ key: 'tokens', value: 'max' }], hits_addend: { value: '18446744073709551615' } },
        ],
      });
      assert.equal(reply.overall_code, 'OVER_LIMIT');
      assert.equal(headersOf(reply).get('Retry-After'), undefined);
      const next = await ask(client, {
        domain: 'edge',
        descriptors: [{ entries: [{ key: 'tokens', value: 'max' }] }],
      });
      assert.equal(next.statuses[0]!.limit_remaining, 9);
    });
  });
});

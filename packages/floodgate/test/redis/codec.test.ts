import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policySet, resolvePolicies } from '../../src/core/policy.js';
import { Limiter } from '../../src/limiter/limiter.js';
import type { RedisAdapter } from '../../src/stores/redis/adapter.js';
import {
  decodeBatch,
  encodeBatch,
  encodeKeys,
  encodeOperation,
  encodePolicies,
  MalformedReplyError,
} from '../../src/stores/redis/codec.js';
import { RedisStore } from '../../src/stores/redis/index.js';

// The script's arguments and reply, read and written without a server (as node-redis tests its
// parseCommand and transformReply); the store's behaviour on a reply it cannot read.

const set = policySet(
  resolvePolicies(
    [
      { name: 'a', algorithm: 'gcra', limit: 10, window: 1000, burst: 3 },
      { name: 'b', algorithm: 'fixed-window', limit: 5, window: 60_000 },
    ],
    'policies',
  ),
);

describe('Redis codec: encode', () => {
  it('keys share one hash tag per identifier, braces escaped so the tag cannot end early', () => {
    assert.deepEqual(encodeKeys('fg:', 'user:1', set), [
      'fg:{user:1}:a:gcra:10:1000:3',
      'fg:{user:1}:b:fw:5:60000',
    ]);
    assert.deepEqual(encodeKeys('fg:', 'x}{y%', set), [
      'fg:{x%7d%7by%25}:a:gcra:10:1000:3',
      'fg:{x%7d%7by%25}:b:fw:5:60000',
    ]);
  });

  it('a policy set: its size, then per policy machine code, limit, window, burst (token bucket and GCRA share one)', () => {
    assert.deepEqual(encodePolicies(set), ['2', '1', '10', '1000', '3', '2', '5', '60000', '5']);
    const bucket = policySet(resolvePolicies({ limit: 10, window: 1000 }, 'policies'));
    assert.deepEqual(encodePolicies(bucket), ['1', '1', '10', '1000', '10']);
  });

  it('an operation: its kind, then its own fields, never one slot with several meanings', () => {
    const target = { keys: ['k'], policies: encodePolicies(set) };
    const at = () => '7';
    assert.deepEqual(encodeOperation({ kind: 'consume', target, cost: 2, lease: 'a b' }, at), [
      'consume',
      '7',
      '2',
      'a%20b',
    ]);
    assert.deepEqual(encodeOperation({ kind: 'consume', target, cost: 1 }, at), ['consume', '7', '1', '']);
    assert.deepEqual(encodeOperation({ kind: 'peek', target, cost: 0 }, at), ['peek', '7', '0']);
    assert.deepEqual(encodeOperation({ kind: 'refund', target, cost: 1 }, at), ['refund', '7', '1', '']);
    assert.deepEqual(encodeOperation({ kind: 'grant', target, cost: 1, ask: 40 }, at), [
      'grant',
      '7',
      '1',
      '40',
    ]);
    assert.deepEqual(encodeOperation({ kind: 'return', target, units: 3, until: 9000 }, at), [
      'return',
      '7',
      '3',
      '9000',
    ]);
    assert.deepEqual(encodeOperation({ kind: 'reset', target }, at), ['reset', '7']);
    const group = {
      kind: 'group',
      members: [
        { target, cost: 1 },
        { target, cost: 2 },
      ],
    } as const;
    assert.deepEqual(encodeOperation(group, at), ['group', '2', '7', '1', '7', '2']);
  });

  it('a batch: every key, the time ("" for the server time), each distinct set once, then the operations', () => {
    const policies = encodePolicies(set);
    const other = ['1', '2', '5', '1000', '5'];
    const one = { kind: 'consume', target: { keys: ['k1', 'k2'], policies }, cost: 1 } as const;
    const two = { kind: 'peek', target: { keys: ['k3'], policies: other }, cost: 0 } as const;
    const three = { kind: 'refund', target: { keys: ['k4', 'k5'], policies }, cost: 2 } as const;
    assert.deepEqual(encodeBatch([one, two, three], undefined), {
      keys: ['k1', 'k2', 'k3', 'k4', 'k5'],
      args: [
        '',
        '2',
        ...policies,
        ...other,
        'consume',
        '1',
        '1',
        '',
        'peek',
        '2',
        '0',
        'refund',
        '1',
        '2',
        '',
      ],
    });
    assert.deepEqual(encodeBatch([one], 1700000000000).args.slice(0, 2), ['1700000000000', '1']);
    assert.deepEqual(encodeBatch([], undefined).args, ['', '0']);
  });
});

describe('Redis codec: decode', () => {
  it("reads each operation's results, with durations from the time the script decided at", () => {
    const reply = [1000, 1, 2, 1100, 0, 7, 0, 0, 5000, 4000, 1, 4, 61000, -1];
    const one = { keys: ['k1'], policies: [] };
    const two = { keys: ['k2', 'k3'], policies: [] };
    const ops = [
      { kind: 'consume', target: one, cost: 1 },
      { kind: 'reset', target: one },
      { kind: 'grant', target: two, cost: 1, ask: 10 },
    ] as const;
    assert.deepEqual(decodeBatch(reply, ops), [
      {
        results: [[{ allowed: true, remaining: 2, resetAt: 1100, retryAfter: 0, resetAfter: 100 }]],
        granted: 0,
      },
      { results: [], granted: 0 },
      {
        results: [
          [
            { allowed: false, remaining: 0, resetAt: 5000, retryAfter: 4000, resetAfter: 4000 },
            {
              allowed: true,
              remaining: 4,
              resetAt: 61000,
              retryAfter: Number.POSITIVE_INFINITY,
              resetAfter: 60000,
            },
          ],
        ],
        granted: 7,
      },
    ]);
  });

  it('refuses anything else, saying what it got', () => {
    const cases: [unknown, RegExp][] = [
      ['OK', /string, not an array/],
      [null, /object, not an array/],
      [[1000, 1, 2, 3], /4 values where 5 were expected/],
      [[1000, 1, 2, 3, 4, 5], /6 values where 5 were expected/],
      [[1000, 2, 2, 3, 4], /2 at 1, not 0 or 1/],
      [[1000, 1, 'two', 3, 4], /"two" at 2, not an integer/],
      [[1000, 1, 2, 3.5, 4], /3.5 at 3, not an integer/],
      [['x', 1, 2, 3, 4], /"x" at 0/],
    ];
    for (const [reply, message] of cases) {
      assert.throws(
        () => decodeBatch(reply, [{ kind: 'peek', target: { keys: ['k'], policies: [] }, cost: 1 }]),
        (e: unknown) => e instanceof MalformedReplyError && message.test(e.message),
      );
    }
  });
});

describe('RedisStore on a reply it cannot read', () => {
  it('answers by its outage policy and counts a failure: never a hang, never NaN', async () => {
    // A client adapter (the store's public extension point) whose server answers the script with nonsense.
    const client: RedisAdapter = {
      cluster: false,
      evalsha: async () => ['not', 'a', 'decision'],
      eval: async () => ['not', 'a', 'decision'],
    };
    const errors: Error[] = [];
    const store = new RedisStore({
      client,
      onStoreError: 'closed',
      breaker: false,
      onError: (e) => errors.push(e),
    });
    const limiter = new Limiter({ store, policies: { limit: 5, window: '1m' } });
    try {
      const decision = await limiter.consume('k');
      assert.equal(decision.allowed, false);
      assert.equal(decision.reason, 'store-closed');
      assert.equal(decision.retryAfter, 1000);
      assert.equal(store.stats.failures, 1);
      assert.match(errors[0]!.message, /3 values where 5 were expected/);
    } finally {
      store.close();
    }
  });
});

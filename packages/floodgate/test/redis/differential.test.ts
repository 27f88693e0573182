import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { policySet, resolvePolicies } from '../../src/core/policy.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import type { StoreMode } from '../../src/stores/store.js';
import { useRedis } from '../helpers/redis.js';

// The Lua scripts mirror the pure algorithms; random histories must get identical answers from both stores.

let client: Redis;
useRedis((c) => {
  client = c;
});

const T0 = 1_700_000_000_123;
const ALGORITHMS = [
  'token-bucket',
  'gcra',
  'fixed-window',
  'sliding-window-log',
  'sliding-window-counter',
  'concurrency',
] as const;

const policy = fc
  .record({
    algorithm: fc.constantFrom(...ALGORITHMS),
    limit: fc.integer({ min: 1, max: 10 }),
    window: fc.integer({ min: 1, max: 5000 }),
    extra: fc.integer({ min: -3, max: 4 }),
  })
  .map(({ algorithm, limit, window, extra }) => {
    if (algorithm === 'concurrency') return { algorithm, limit, leaseTimeout: window };
    const burst = Math.max(1, limit + extra);
    return algorithm === 'token-bucket' || algorithm === 'gcra'
      ? { algorithm, limit, window, burst }
      : { algorithm, limit, window };
  });

const step = fc.record({
  dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 12_000 })),
  mode: fc.constantFrom<StoreMode>('consume', 'consume', 'consume', 'peek', 'refund'),
  cost: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 12 })),
  lease: fc.option(fc.constantFrom('a', 'b', 'c', 'd e'), { nil: undefined }),
});

let unique = 0;

describe('RedisStore agrees with MemoryStore on random histories', () => {
  it('for one policy and for several, in every mode', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(policy, { minLength: 1, maxLength: 3 }),
        fc.array(step, { minLength: 1, maxLength: 40 }),
        async (specs, steps) => {
          const named = specs.map((s, i) => ({ ...s, name: `p${i}` }));
          const set = policySet(resolvePolicies(named, 'policies'));
          let now = T0;
          const clock = { now: () => now };
          const memory = new MemoryStore({ clock });
          const redis = new RedisStore({ client, clock, onStoreError: 'closed' });
          const key = `diff:${++unique}`;
          for (const [i, s] of steps.entries()) {
            now += s.dt;
            const lease = s.mode === 'peek' ? undefined : (s.lease ?? (set.concurrent ? `l${i}` : undefined));
            const expected = memory.applySync(key, set, s.cost, s.mode, lease);
            const actual = await redis.apply(key, set, s.cost, s.mode, lease);
            assert.deepEqual(
              actual.map((r) => ({ ...r })),
              expected.map((r) => ({
                allowed: r.allowed,
                remaining: r.remaining,
                resetAt: r.resetAt,
                retryAfter: r.retryAfter,
                resetAfter: r.resetAfter,
              })),
              `step ${i}: ${JSON.stringify(s)}`,
            );
          }
          assert.equal(redis.stats.failures, 0);
        },
      ),
      { numRuns: 500 },
    );
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { ManualClock } from '../../src/core/clock.js';
import { Limiter } from '../../src/limiter/limiter.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import type { Store } from '../../src/stores/store.js';
import { useRedis } from '../helpers/redis.js';

// Quotas far past 2^51 / window: the algorithms that only add (fixed window, sliding log) need no bound on
// limit × window, and count them exactly, in memory and in Redis's Lua alike.

let client: Redis;
useRedis((c) => {
  client = c;
});

const T0 = 1_700_000_000_000;
const DAY = 86_400_000;
const YEAR = 365 * DAY;

const stores: [string, (clock: ManualClock, prefix: string) => Store][] = [
  ['memory', (clock) => new MemoryStore({ clock })],
  ['redis', (clock, prefix) => new RedisStore({ client, prefix, clock })],
];

for (const [kind, makeStore] of stores) {
  for (const algorithm of ['fixed-window', 'sliding-window-log'] as const) {
    describe(`${algorithm}, ${kind} store: large quotas`, () => {
      it('100,000,000 a day loads and counts to the unit', async () => {
        const clock = new ManualClock(T0);
        const limiter = new Limiter({
          store: makeStore(clock, `big:${algorithm}:`),
          policies: { algorithm, limit: 100_000_000, window: DAY },
        });
        assert.equal((await limiter.consume('k', { cost: 1 })).remaining, 99_999_999);
        clock.advance(1);
        assert.equal((await limiter.consume('k', { cost: 99_999_998 })).remaining, 1);
        const last = await limiter.consume('k');
        assert.deepEqual([last.allowed, last.remaining], [true, 0]);
        const over = await limiter.consume('k');
        assert.deepEqual([over.allowed, over.remaining], [false, 0]);
        assert.equal(over.retryAfter, DAY - 1);
        // A day after the first request, the first unit is free again (the sliding log frees it alone).
        clock.advance(DAY - 1);
        const next = await limiter.consume('k');
        assert.equal(next.allowed, true);
        assert.equal(next.remaining, algorithm === 'fixed-window' ? 99_999_999 : 0);
      });

      it('parallel charges of 1,000,000 against 100,000,000 a year: exactly 100 admitted', async () => {
        const clock = new ManualClock(T0);
        const limiter = new Limiter({
          store: makeStore(clock, `par:${algorithm}:`),
          policies: { algorithm, limit: 100_000_000, window: YEAR },
        });
        const decisions = await Promise.all(
          Array.from({ length: 150 }, () => limiter.consume('k', { cost: 1_000_000 })),
        );
        assert.equal(decisions.filter((d) => d.allowed).length, 100);
        const peek = await limiter.peek('k', { cost: 0 });
        assert.equal(peek.remaining, 0);
      });

      it('a limit of 2^50 a year, beyond the product bound, is exact to the unit', async () => {
        const clock = new ManualClock(T0);
        const limit = 2 ** 50;
        const limiter = new Limiter({
          store: makeStore(clock, `huge:${algorithm}:`),
          policies: { algorithm, limit, window: YEAR },
        });
        assert.equal((await limiter.consume('k', { cost: limit - 1 })).remaining, 1);
        assert.equal((await limiter.consume('k', { cost: 2 })).allowed, false);
        const last = await limiter.consume('k');
        assert.deepEqual([last.allowed, last.remaining], [true, 0]);
      });
    });
  }
}

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { PolicyNumbers } from '../src/core/algorithms/types.js';
import { ManualClock } from '../src/core/clock.js';
import { type PolicySet, policySet, resolvePolicies } from '../src/core/policy.js';
import { Limiter } from '../src/limiter/limiter.js';
import { MemoryStore } from '../src/stores/memory.js';

const T0 = 1_700_000_000_000;

describe('MemoryStore', () => {
  it('holds memory for live keys only under a flood of unique keys (no timers)', async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    const limiter = new Limiter({
      clock,
      store,
      policies: { algorithm: 'fixed-window', limit: 5, window: '1s' },
    });
    // 200k distinct keys, 1000 per simulated second: about 1000 are live at any time.
    let peak = 0;
    for (let i = 0; i < 200_000; i++) {
      limiter.consumeSync(`flood:${i}`);
      if (i % 1000 === 999) clock.advance(1000);
      peak = Math.max(peak, store.size);
    }
    assert.ok(peak <= 3000, `peak ${peak} entries for ~1000 live keys`);
  });

  it('treats expired state as empty even before reclaiming it', async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    const limiter = new Limiter({
      clock,
      store,
      policies: { algorithm: 'fixed-window', limit: 1, window: '1s' },
    });
    assert.equal(limiter.consumeSync('k').allowed, true);
    assert.equal(limiter.consumeSync('k').allowed, false);
    clock.advance(1000);
    assert.equal(store.size, 1, 'not yet reclaimed');
    assert.equal(limiter.consumeSync('k').allowed, true);
  });

  it('evicts beyond maxKeys, sparing keys used since the hand last passed', async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock, maxKeys: 100 });
    const limiter = new Limiter({
      clock,
      store,
      policies: { algorithm: 'fixed-window', limit: 3, window: '1h' },
    });
    limiter.consumeSync('hot', { cost: 3 });
    for (let i = 0; i < 10_000; i++) {
      limiter.consumeSync(`cold:${i}`);
      limiter.consumeSync('hot', { cost: 0 }); // a read keeps it recently used
      assert.ok(store.size <= 100);
    }
    assert.equal(limiter.consumeSync('hot').allowed, false, 'the hot key kept its count');
    assert.equal((await limiter.peek('cold:0', { cost: 0 })).remaining, 3, 'an old cold key was evicted');
    assert.equal((await limiter.peek('cold:9999', { cost: 0 })).remaining, 2, 'the newest cold key is kept');
  });

  it('maxKeys evicts exactly the least recently used: 10,000 keys through 1,000 places', async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock, maxKeys: 1000 });
    const limiter = new Limiter({
      clock,
      store,
      policies: { algorithm: 'fixed-window', limit: 3, window: '1h' },
    });
    limiter.consumeSync('regular');
    for (let i = 0; i < 10_000; i++) {
      limiter.consumeSync(`once:${i}`);
      if (i % 50 === 0) await limiter.peek('regular'); // used regularly
      assert.ok(store.size <= 1000);
    }
    assert.equal(store.size, 1000);
    const held = [];
    for (let i = 0; i < 10_000; i++)
      if ((await limiter.peek(`once:${i}`, { cost: 0 })).remaining === 2) held.push(i);
    assert.equal(held.length, 999);
    assert.equal(held[0], 9001, 'the newest 999 keys used once, and no older one');
    assert.equal((await limiter.peek('regular', { cost: 0 })).remaining, 2, 'the key used regularly is held');
    assert.equal(store.size, 1000, 'looks create nothing');
  });

  it('maxKeys: a look or a refund counts as a use; the order of eviction is the order of last use', async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock, maxKeys: 4 });
    const limiter = new Limiter({
      clock,
      store,
      policies: { algorithm: 'fixed-window', limit: 3, window: '1h' },
    });
    for (const k of ['a', 'b', 'c', 'd']) limiter.consumeSync(k);
    await limiter.peek('a', { cost: 0 });
    limiter.consumeSync('b');
    await limiter.refund('c', 0);
    limiter.consumeSync('e'); // evicts d, the least recently used
    assert.equal((await limiter.peek('d', { cost: 0 })).remaining, 3);
    limiter.consumeSync('f'); // then a
    assert.equal((await limiter.peek('a', { cost: 0 })).remaining, 3);
    assert.equal((await limiter.peek('b', { cost: 0 })).remaining, 1);
    assert.equal((await limiter.peek('c', { cost: 0 })).remaining, 2);
    await limiter.reset('b');
    limiter.consumeSync('g'); // a reset freed a place: nothing else goes
    assert.deepEqual(
      await Promise.all(
        ['c', 'e', 'f', 'g'].map(async (k) => (await limiter.peek(k, { cost: 0 })).remaining),
      ),
      [2, 2, 2, 2],
    );
    assert.equal(store.size, 4);
  });

  it('keeps state for unchanged policies when a key moves to another policy set', async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    const a = resolvePolicies([{ name: 'x', algorithm: 'fixed-window', limit: 5, window: 60_000 }], 'p');
    const b = resolvePolicies([{ name: 'y', algorithm: 'fixed-window', limit: 5, window: 60_000 }], 'p');
    const first = policySet(a);
    const both = policySet(a, b);
    store.applySync('k', first, 2, 'consume');
    const results = store.applySync('k', both, 1, 'consume');
    assert.deepEqual(
      results.map((r) => r.remaining),
      [2, 4],
    );
    const changed = policySet(
      resolvePolicies([{ name: 'x', algorithm: 'fixed-window', limit: 6, window: 60_000 }], 'p'),
    );
    assert.equal(store.applySync('k', changed, 0, 'peek')[0]!.remaining, 6, 'new parameters start afresh');
  });

  it('reset and clear forget state', async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    const set = policySet(resolvePolicies({ limit: 1, window: 1000 }, 'p'));
    store.applySync('a', set, 1, 'consume');
    store.applySync('b', set, 1, 'consume');
    await store.reset('a');
    assert.equal(store.applySync('a', set, 1, 'peek')[0]!.allowed, true);
    store.clear();
    assert.equal(store.size, 0);
  });

  it('drops an entry refunded back to empty', async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    const set = policySet(resolvePolicies({ limit: 5, window: 1000 }, 'p'));
    store.applySync('a', set, 2, 'consume');
    assert.equal(store.size, 1);
    store.applySync('a', set, 2, 'refund');
    assert.equal(store.size, 0);
  });

  it('decides exactly as the pure algorithms do, over random sequences (a model check)', async () => {
    // Every algorithm, alone and together; `mixed` and `moved` share policies, so keys moving between
    // them carry state across. The model is the plain reading of the Store contract on the object form.
    const p = (specs: Parameters<typeof resolvePolicies>[0]) => resolvePolicies(specs, 'p');
    const bucket = p({ name: 'b', limit: 3, window: 1000 })[0]!;
    const sets: PolicySet[] = [
      policySet([bucket]),
      policySet(p({ name: 'w', algorithm: 'fixed-window', limit: 4, window: 1500 })),
      policySet(p({ name: 'c', algorithm: 'sliding-window-counter', limit: 4, window: 1000 })),
      policySet(p({ name: 'g', algorithm: 'gcra', limit: 2, window: 700, burst: 3 })),
      policySet([
        bucket,
        ...p([
          { name: 'l', algorithm: 'sliding-window-log', limit: 5, window: 2000 },
          { name: 'w', algorithm: 'fixed-window', limit: 4, window: 1500 },
        ]),
      ]),
      policySet([bucket, ...p({ name: 'c', algorithm: 'sliding-window-counter', limit: 4, window: 1000 })]),
    ];
    const op = fc.record({
      key: fc.nat(2),
      // A key mostly keeps its policies; now and then it moves to another set.
      moveTo: fc.option(fc.nat(sets.length - 1), { freq: 8 }),
      cost: fc.nat(3),
      mode: fc.constantFrom('consume', 'consume', 'consume', 'peek', 'refund', 'reset'),
      advance: fc.constantFrom(0, 0, 0, 1, 100, 333, 1000, 2500),
    });
    const start = fc.tuple(fc.nat(sets.length - 1), fc.nat(sets.length - 1), fc.nat(sets.length - 1));
    await fc.assert(
      fc.asyncProperty(start, fc.array(op, { maxLength: 80 }), async (initial, ops) => {
        const setOf = [...initial]; // the generated value is reused while shrinking: never mutate it
        const clock = new ManualClock(T0);
        const store = new MemoryStore({ clock });
        const model = new Map<string, { set: PolicySet; states: unknown[]; expiresAt: number }>();
        for (const { key: k, moveTo, cost, mode, advance } of ops) {
          clock.advance(advance);
          const now = clock.now();
          if (moveTo !== null) setOf[k] = moveTo;
          const key = `key:${k}`;
          const set = sets[setOf[k]!]!;
          if (mode === 'reset') {
            await store.reset(key);
            model.delete(key);
            continue;
          }
          const held = model.get(key);
          const live = held !== undefined && held.expiresAt > now;
          const states = set.policies.map((policy) => {
            const i = live ? held.set.policies.findIndex((o) => o.id === policy.id) : -1;
            return i === -1 ? undefined : held!.states[i];
          });
          let expected: PolicyNumbers[];
          let next: unknown[] | undefined;
          if (mode === 'refund') {
            next = set.policies.map((policy, i) => policy.impl.refund(states[i], now, cost, policy));
            expected = set.policies.map((policy, i) => policy.impl.consume(next![i], now, 0, policy));
            if (next.every((state) => state === undefined)) {
              model.delete(key);
              next = undefined;
            }
          } else {
            const outcomes = set.policies.map((policy, i) =>
              policy.impl.consume(states[i], now, cost, policy),
            );
            const allowed = outcomes.every((o) => o.allowed);
            expected = allowed
              ? outcomes
              : set.policies.map((policy, i) =>
                  outcomes[i]!.allowed ? policy.impl.consume(states[i], now, 0, policy) : outcomes[i]!,
                );
            if (mode === 'consume' && allowed) next = outcomes.map((o) => o.state);
          }
          if (next !== undefined) {
            const expiresAt = Math.max(
              now,
              ...set.policies.map((policy, i) => policy.impl.consume(next![i], now, 0, policy).expiresAt),
            );
            if (expiresAt > now || held !== undefined) model.set(key, { set, states: next, expiresAt });
          } else if (held !== undefined && live && mode !== 'refund') {
            // A peek or a refusal leaves the state, now under this set's layout.
            model.set(key, { set, states, expiresAt: held.expiresAt });
          }
          const got = store.applySync(key, set, cost, mode);
          const numbers = (rs: readonly (PolicyNumbers & { resetAfter?: number })[]) =>
            rs.map(({ allowed, remaining, resetAt, retryAfter, resetAfter = resetAt - now }) => ({
              allowed,
              remaining,
              resetAt,
              retryAfter,
              resetAfter,
            }));
          // A plain comparison: assert's diffing, run on every shrinking step, would make a failure take minutes.
          const [a, b] = [JSON.stringify(numbers(got)), JSON.stringify(numbers(expected))];
          if (a !== b)
            throw new Error(`${mode} ${key} cost ${cost} at +${now - T0}: got ${a}, expected ${b}`);
        }
      }),
      { numRuns: 400 },
    );
  });
});

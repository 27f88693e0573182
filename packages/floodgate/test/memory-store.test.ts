import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { Limiter } from '../src/core/limiter.js';
import { policySet, resolvePolicies } from '../src/core/policy.js';
import { MemoryStore } from '../src/stores/memory.js';

const T0 = 1_700_000_000_000;

describe('MemoryStore', () => {
  it('holds memory for live keys only under a flood of unique keys (no timers)', () => {
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

  it('treats expired state as empty even before reclaiming it', () => {
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

  it('evicts beyond maxKeys, sparing keys used since the hand last passed', () => {
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
    assert.equal(limiter.peekSync('cold:0', { cost: 0 }).remaining, 3, 'an old cold key was evicted');
    assert.equal(limiter.peekSync('cold:9999', { cost: 0 }).remaining, 2, 'the newest cold key is kept');
  });

  it('keeps state for unchanged policies when a key moves to another policy set', () => {
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

  it('drops an entry refunded back to empty', () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock });
    const set = policySet(resolvePolicies({ limit: 5, window: 1000 }, 'p'));
    store.applySync('a', set, 2, 'consume');
    assert.equal(store.size, 1);
    store.applySync('a', set, 2, 'refund');
    assert.equal(store.size, 0);
  });
});

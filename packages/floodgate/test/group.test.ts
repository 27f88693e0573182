import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { Limiter } from '../src/limiter/limiter.js';
import { MemoryStore } from '../src/stores/memory.js';
import type { Store } from '../src/stores/store.js';

// Limiter.consumeAll: several identifiers, of several limiters on one store, charged all or none.

function limiters(store: Store, clock: ManualClock) {
  const perUser = new Limiter({
    store,
    clock,
    policies: { name: 'user', algorithm: 'fixed-window', limit: 5, window: '1m' },
  });
  const perRoute = new Limiter({
    store,
    clock,
    policies: { name: 'route', algorithm: 'token-bucket', limit: 3, window: '1m' },
  });
  return { perUser, perRoute };
}

describe('Limiter.consumeAll on the memory store', () => {
  it('merges only the same state: a key holding a newline and a policy id is another member', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryStore({ clock });
    const first = { name: 'a', algorithm: 'fixed-window', limit: 1, window: '1m' } as const;
    const second = { name: 'b', algorithm: 'fixed-window', limit: 1, window: '1m' } as const;
    const one = new Limiter({ store, clock, policies: [second] });
    const two = new Limiter({ store, clock, policies: [first, second] });
    const [firstId] = two.policiesFor('').map((p) => p.id);
    const decisions = await Limiter.consumeAll([
      { limiter: one, key: `k\n${firstId}` },
      { limiter: two, key: 'k' },
    ]);
    assert.deepEqual(
      decisions.map((d) => d.allowed),
      [true, true],
      'two identifiers, each within its limit of 1: merged, they would cost 2 and be refused',
    );
  });

  it('charges every member or none: a refusal by one leaves the others as they were', () => {
    const clock = new ManualClock(0);
    const store = new MemoryStore({ clock });
    const { perUser, perRoute } = limiters(store, clock);
    const both = () =>
      Limiter.consumeAll([
        { limiter: perUser, key: 'u1' },
        { limiter: perRoute, key: 'r1' },
      ]) as ReturnType<typeof perUser.consumeSync>[];
    for (let i = 0; i < 3; i++)
      assert.deepEqual(
        both().map((d) => d.allowed),
        [true, true],
      );
    const refused = both();
    assert.deepEqual(
      refused.map((d) => d.allowed),
      [true, false],
    );
    // The user's window was not charged by the refused request: 2 left, reported as they stay.
    assert.equal(refused[0]!.remaining, 2);
    assert.equal(perUser.consumeSync('u1').remaining, 1);
  });

  it('sums the cost of one state asked for twice, so that it cannot pass twice on one look', () => {
    const clock = new ManualClock(0);
    const store = new MemoryStore({ clock });
    const { perUser } = limiters(store, clock);
    const twice = Limiter.consumeAll([
      { limiter: perUser, key: 'u', cost: 3 },
      { limiter: perUser, key: 'u', cost: 3 },
    ]) as ReturnType<typeof perUser.consumeSync>[];
    assert.deepEqual(
      twice.map((d) => d.allowed),
      [false, false],
    );
    assert.equal(perUser.consumeSync('u', { cost: 5 }).allowed, true);
  });

  it('is decided at once on the memory store, and refuses what it cannot decide, naming it', () => {
    const clock = new ManualClock(0);
    const store = new MemoryStore({ clock });
    const { perUser } = limiters(store, clock);
    assert.ok(
      Array.isArray(
        Limiter.consumeAll([
          { limiter: perUser, key: 'a' },
          { limiter: perUser, key: 'b' },
        ]),
      ),
    );
    assert.deepEqual(Limiter.consumeAll([]), []);
    const other = new Limiter({ policies: { limit: 1, window: '1s' } });
    assert.throws(
      () =>
        Limiter.consumeAll([
          { limiter: perUser, key: 'a' },
          { limiter: other, key: 'b' },
        ]),
      /requests\[1\]\.limiter.*same store|store/,
    );
    const slots = new Limiter({
      store,
      policies: { algorithm: 'concurrency', limit: 1, leaseTimeout: '1m' },
    });
    assert.throws(
      () => Limiter.consumeAll([{ limiter: slots, key: 'a' }]),
      /requests\[0\]\.limiter.*concurrency/,
    );
    assert.throws(() => Limiter.consumeAll([{ limiter: {} as never, key: 'a' }]), /requests\[0\]\.limiter/);
    assert.throws(() => Limiter.consumeAll([{ limiter: perUser, key: 'a', cost: -1 }]), /cost/);
    assert.throws(() => Limiter.consumeAll('a' as never), /requests/);
  });

  it('refuseConcurrency: no override, configure or addPolicy brings a concurrency policy in afterwards', () => {
    const clock = new ManualClock(0);
    const { perUser } = limiters(new MemoryStore({ clock }), clock);
    perUser.refuseConcurrency('decided in a group');
    const slot = { name: 'slot', algorithm: 'concurrency', limit: 1, leaseTimeout: '1m' } as const;
    assert.throws(
      () => perUser.setOverride('a', [slot]),
      /"overrides\["a"\]\[0\]\.algorithm" must be another algorithm than "concurrency": decided in a group/,
    );
    assert.throws(() => perUser.setOverride('a', slot), /"overrides\["a"\]\.algorithm"/);
    assert.throws(() => perUser.addPolicy(slot), /"policy\.algorithm"/);
    assert.throws(() => perUser.configure({ policies: [slot] }), /"policies\[0\]\.algorithm"/);
    assert.deepEqual(perUser.config().overrides, {}, 'nothing changed');
    perUser.setOverride('a', { name: 'user', algorithm: 'fixed-window', limit: 1, window: '1m' });
    const slots = new Limiter({ policies: slot });
    assert.throws(() => slots.refuseConcurrency('decided in a group'), /"policies\[0\]\.algorithm"/);
    slots.setOverride('b', slot);
  });

  it('charges each and gives back on a store without group decisions', async () => {
    const clock = new ManualClock(0);
    const memory = new MemoryStore({ clock });
    // Only the Store contract's required half: no applySync, no applyGroup.
    const store: Store = { apply: (...args) => memory.apply(...args), reset: (k, s) => memory.reset(k, s) };
    const { perUser, perRoute } = limiters(store, clock);
    const both = () =>
      Limiter.consumeAll([
        { limiter: perUser, key: 'u1' },
        { limiter: perRoute, key: 'r1' },
      ]);
    const results = [];
    for (let i = 0; i < 5; i++) results.push((await both()).map((d) => d.allowed));
    assert.deepEqual(results, [
      [true, true],
      [true, true],
      [true, true],
      [true, false],
      [true, false],
    ]);
    assert.equal((await perUser.consume('u1')).remaining, 1);
  });

  it('gives back what it charged when the clock steps back between the look and the charge', () => {
    const times = [0, 30_000, 30_000, 30_000, 29_999];
    const clock = { now: () => times.shift() ?? 30_000, sleep: async () => {} };
    const store = new MemoryStore({ clock });
    const user = new Limiter({
      store,
      clock,
      policies: { name: 'user', algorithm: 'token-bucket', limit: 2, window: '1m' },
    });
    const route = new Limiter({
      store,
      clock,
      policies: { name: 'route', algorithm: 'fixed-window', limit: 5, window: '1m' },
    });
    assert.equal(user.consumeSync('u', { cost: 2 }).allowed, true); // at 0: empty, a token back every 30 s
    // Looks at 30 s (a token is back: both allow), charges the route at 30 s, then the user at 29.999 s:
    // no whole token yet.
    const group = Limiter.consumeAll([
      { limiter: route, key: 'r' },
      { limiter: user, key: 'u' },
    ]) as ReturnType<typeof user.consumeSync>[];
    assert.deepEqual(
      group.map((d) => d.allowed),
      [true, false],
    );
    assert.equal(route.consumeSync('r', { cost: 0 }).remaining, 5, 'the route was given back its unit');
  });
});

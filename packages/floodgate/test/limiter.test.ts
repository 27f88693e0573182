import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../src/core/clock.js';
import { FloodgateError } from '../src/core/errors.js';
import { boundKey, hashKey } from '../src/core/keys.js';
import type { PolicySet } from '../src/core/policy.js';
import { Limiter, RateLimitedError } from '../src/limiter/limiter.js';
import { MemoryStore } from '../src/stores/memory.js';
import type { Store, StoreMode } from '../src/stores/store.js';

const T0 = 1_700_000_000_000;

function setup(options: Partial<ConstructorParameters<typeof Limiter>[0]> = {}) {
  const clock = new ManualClock(T0);
  const limiter = new Limiter({ clock, policies: { name: 'bucket', limit: 5, window: '10s' }, ...options });
  return { clock, limiter };
}

/** A store with no synchronous path: the async contract only, as a Redis store would offer. */
class AsyncOnlyStore implements Store {
  readonly inner: MemoryStore;
  calls = 0;
  constructor(clock: ManualClock) {
    this.inner = new MemoryStore({ clock });
  }
  async apply(key: string, set: PolicySet, cost: number, mode: StoreMode, lease?: string) {
    this.calls++;
    return this.inner.applySync(key, set, cost, mode, lease);
  }
  async reset(key: string, set: PolicySet) {
    await this.inner.reset(key, set);
  }
}

describe('Limiter', () => {
  it('decides with exact numbers from the most restrictive policy', async () => {
    const { limiter } = setup({
      policies: [
        { name: 'short', limit: 10, window: '10s' },
        { name: 'long', algorithm: 'fixed-window', limit: 3, window: '1m' },
      ],
    });
    const d = await limiter.consume('user');
    assert.deepEqual(
      {
        allowed: d.allowed,
        policy: d.policy,
        limit: d.limit,
        remaining: d.remaining,
        resetAt: d.resetAt,
        retryAfter: d.retryAfter,
      },
      { allowed: true, policy: 'long', limit: 3, remaining: 2, resetAt: T0 + 60_000, retryAfter: 0 },
    );
    assert.equal(d.reason, undefined);
    assert.deepEqual(
      d.policies.map((p) => [p.policy, p.remaining]),
      [
        ['short', 9],
        ['long', 2],
      ],
    );
    await limiter.consume('user', { cost: 2 });
    const denied = await limiter.consume('user');
    assert.equal(denied.allowed, false);
    assert.equal(denied.policy, 'long');
    assert.equal(denied.reason, 'limit');
    assert.equal(denied.retryAfter, 60_000);
    assert.deepEqual(JSON.parse(JSON.stringify(denied)).policies.length, 2);
  });

  it('names policies after their parameters by default', async () => {
    const limiter = new Limiter({
      policies: [
        { limit: 5, window: 10_000 },
        { algorithm: 'concurrency', limit: 2, leaseTimeout: '30s' },
      ],
    });
    assert.deepEqual(
      limiter.policiesFor('x').map((p) => p.name),
      ['token-bucket-5-per-10s', 'concurrency-2'],
    );
  });

  it('peek charges nothing; reset forgets; refund gives back', async () => {
    const { limiter } = setup();
    await limiter.consume('k', { cost: 4 });
    assert.equal((await limiter.peek('k')).remaining, 0);
    assert.equal((await limiter.peek('k')).remaining, 0, 'peeking twice changes nothing');
    assert.equal((await limiter.refund('k', 3)).remaining, 4);
    await limiter.reset('k');
    assert.equal((await limiter.peek('k', { cost: 0 })).remaining, 5);
  });

  it('has a boolean shorthand and a default cost', async () => {
    const { limiter } = setup({ cost: 2 });
    assert.equal(await limiter.allow('k'), true);
    assert.equal(limiter.allowSync('k'), true);
    assert.equal(limiter.allowSync('k'), false, '2 + 2 + 2 > 5');
    assert.equal(limiter.allowSync('k', { cost: 1 }), true);
  });

  it('refuses a cost that can never fit, with a reason and without charging', async () => {
    const { limiter } = setup();
    const d = limiter.consumeSync('k', { cost: 6 });
    assert.equal(d.allowed, false);
    assert.equal(d.reason, 'cost-exceeds-limit');
    assert.equal(d.retryAfter, Number.POSITIVE_INFINITY);
    assert.equal((await limiter.peek('k', { cost: 0 })).remaining, 5);
  });

  it('keeps unknown and odd identifiers under the defaults, numbers included, never throwing', async () => {
    const { limiter } = setup();
    for (const key of ['', ' ', 'ключ', '\u0000', 'x'.repeat(100_000), 42]) {
      assert.equal(limiter.consumeSync(key).allowed, true);
      assert.equal(limiter.consumeSync(key).remaining, 3);
    }
    assert.equal(
      (await limiter.peek('42', { cost: 0 })).remaining,
      3,
      'the number 42 and the string "42" are one identifier',
    );
  });

  it('bounds long identifiers by their digest, keeping distinct ones distinct', async () => {
    const { limiter } = setup({ maxKeyLength: 16 });
    const a = `${'a'.repeat(40)}1`;
    const b = `${'a'.repeat(40)}2`;
    limiter.consumeSync(a, { cost: 5 });
    assert.equal(limiter.consumeSync(a).allowed, false);
    assert.equal(limiter.consumeSync(b).allowed, true);
  });

  it('keeps long identifiers and literal identifiers apart: no literal can name a digest', async () => {
    const { limiter } = setup({ maxKeyLength: 64 });
    const long = 'x'.repeat(100);
    // The digest an identifier of over 64 characters was replaced by, written as a literal identifier.
    const forged = hashKey(long, '~');
    assert.ok(forged.length <= 64);
    limiter.consumeSync(forged, { cost: 5 });
    assert.equal(limiter.consumeSync(forged).allowed, false);
    assert.equal(limiter.consumeSync(long).allowed, true, 'the long identifier has its own budget');
    for (const literal of [hashKey(long, '~#'), `~${hashKey(long, '~#')}`, '~', '~~'])
      assert.equal(limiter.consumeSync(literal).allowed, true, literal);
  });

  it('boundKey is injective over short and long identifiers', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), (a, b) => {
        fc.pre(a !== b);
        assert.notEqual(boundKey(a, 20), boundKey(b, 20));
      }),
    );
    assert.notEqual(boundKey('~abc', 20), boundKey('abc', 20));
    assert.notEqual(boundKey(hashKey('y'.repeat(30), '~#'), 100), boundKey('y'.repeat(30), 20));
  });

  it('applies overrides on top of the defaults, by policy name, changeable at run time', async () => {
    const { limiter } = setup({
      policies: [
        { name: 'minute', limit: 5, window: '1m' },
        { name: 'day', algorithm: 'fixed-window', limit: 100, window: '1d' },
      ],
      overrides: { premium: { name: 'minute', limit: 50, window: '1m' } },
    });
    assert.deepEqual(
      limiter.policiesFor('premium').map((p) => [p.name, p.limit]),
      [
        ['day', 100],
        ['minute', 50],
      ],
    );
    limiter.consumeSync('premium', { cost: 10 });
    assert.equal((await limiter.peek('premium', { cost: 0 })).remaining, 40);
    assert.equal(limiter.consumeSync('basic', { cost: 10 }).reason, 'cost-exceeds-limit');

    limiter.setOverride('basic', [{ name: 'burst', algorithm: 'gcra', limit: 1, window: '1s' }]);
    assert.deepEqual(
      limiter.policiesFor('basic').map((p) => p.name),
      ['minute', 'day', 'burst'],
    );
    assert.equal(limiter.removeOverride('premium'), true);
    assert.equal(limiter.removeOverride('premium'), false);
    // The day counter is kept across the change (same name and parameters); the minute bucket is not.
    const d = await limiter.peek('premium', { cost: 0 });
    assert.deepEqual(
      d.policies.map((p) => [p.policy, p.remaining]),
      [
        ['minute', 5],
        ['day', 90],
      ],
    );
  });

  it('adds and removes default policies at run time', async () => {
    const { limiter } = setup();
    limiter.addPolicy({ name: 'tight', algorithm: 'fixed-window', limit: 1, window: '1m' });
    assert.equal(limiter.consumeSync('k').allowed, true);
    assert.equal(limiter.consumeSync('k').policy, 'tight');
    assert.equal(limiter.removePolicy('tight'), true);
    assert.equal(limiter.removePolicy('tight'), false);
    assert.equal(limiter.consumeSync('k').allowed, true);
    assert.throws(() => limiter.removePolicy('bucket'), /at least one policy/);
  });

  it('loads from and exports plain configuration; a bad configuration changes nothing', async () => {
    const config = {
      cost: 1,
      policies: [{ name: 'minute', algorithm: 'sliding-window-counter', limit: 60, window: '1m' }],
      overrides: { vip: [{ name: 'minute', algorithm: 'sliding-window-counter', limit: 600, window: '1m' }] },
    } as const;
    const limiter = Limiter.fromConfig(config, { clock: new ManualClock(T0) });
    assert.deepEqual(limiter.config(), {
      cost: 1,
      policies: [{ name: 'minute', algorithm: 'sliding-window-counter', limit: 60, window: 60_000 }],
      overrides: {
        vip: [{ name: 'minute', algorithm: 'sliding-window-counter', limit: 600, window: 60_000 }],
      },
    });
    assert.throws(
      () => limiter.configure({ policies: [{ limit: 0, window: '1s' }] }),
      /policies\[0\]\.limit/,
    );
    assert.equal(limiter.policiesFor('x')[0]!.limit, 60);
    assert.throws(() => Limiter.fromConfig(null as never), /option "config"/);
  });

  it('waitFor waits on the clock until allowed, honours maxWait and abort', async () => {
    const { clock, limiter } = setup();
    limiter.consumeSync('k', { cost: 5 });
    const d = await limiter.waitFor('k', { cost: 2 });
    assert.equal(d.allowed, true);
    assert.equal(clock.now(), T0 + 4000, 'slept exactly the retry time of 2 tokens');

    await assert.rejects(limiter.waitFor('k', { cost: 3, maxWait: 5999 }), (e: unknown) => {
      assert.ok(e instanceof RateLimitedError);
      assert.equal(e.code, 'ERR_FLOODGATE_RATE_LIMITED');
      assert.equal(e.decision.retryAfter, 6000);
      return true;
    });
    assert.equal(clock.now(), T0 + 4000, 'refused at once, without sleeping');
    await assert.rejects(limiter.waitFor('k', { cost: 6 }), /the cost exceeds the limit/);
    const controller = new AbortController();
    controller.abort(new Error('caller gave up'));
    await assert.rejects(limiter.waitFor('k', { signal: controller.signal }), /caller gave up/);
    await assert.rejects(limiter.waitFor('k', { maxWait: -1 }), /option "maxWait"/);
  });

  it('wrap limits a function like a decorator, with a key per call and onLimited', async () => {
    const { limiter } = setup({ policies: { limit: 2, window: '1m', algorithm: 'fixed-window' } });
    const greet = limiter.wrap(async (user: string) => `hello ${user}`, { key: (user) => `user:${user}` });
    assert.equal(await greet('ann'), 'hello ann');
    assert.equal(await greet('ann'), 'hello ann');
    await assert.rejects(greet('ann'), RateLimitedError);
    assert.equal(await greet('bob'), 'hello bob');
    const soft = limiter.wrap((n: number) => n * 2, {
      key: 'fixed',
      cost: 2,
      onLimited: (d) => -d.retryAfter,
    });
    assert.equal(await soft(21), 42);
    assert.equal(await soft(21), -60_000);
    assert.throws(() => limiter.wrap('nope' as never, { key: 'k' }), /option "fn"/);
    assert.throws(() => limiter.wrap(() => 1, { key: {} as never }), /option "key"/);
    assert.throws(() => limiter.wrap(() => 1, { key: 'k', onLimited: 1 as never }), /option "onLimited"/);
    assert.throws(() => limiter.wrap(() => 1, { key: 'k', cost: -1 }), /option "cost"/);
  });

  it('concurrency: grants leases, releases them, and wrap releases when the call settles', async () => {
    const { clock, limiter } = setup({
      policies: { name: 'slots', algorithm: 'concurrency', limit: 2, leaseTimeout: '30s' },
    });
    const a = limiter.consumeSync('k');
    const b = limiter.consumeSync('k');
    assert.ok(a.leaseId && b.leaseId && a.leaseId !== b.leaseId);
    const c = limiter.consumeSync('k');
    assert.equal(c.allowed, false);
    assert.equal(c.leaseId, undefined);
    assert.equal((await limiter.release('k', a.leaseId!)).remaining, 1);
    assert.equal((await limiter.release('k', b.leaseId!)).remaining, 2);

    const job = limiter.wrap(
      async (fail: boolean) => {
        assert.equal((await limiter.peek('k', { cost: 0 })).remaining, 1, 'one slot held while running');
        if (fail) throw new Error('boom');
        return 'done';
      },
      { key: 'k' },
    );
    assert.equal(await job(false), 'done');
    await assert.rejects(job(true), /boom/);
    assert.equal(
      (await limiter.peek('k', { cost: 0 })).remaining,
      2,
      'released after success and after failure',
    );

    limiter.consumeSync('k', { cost: 2 });
    clock.advance(30_000);
    assert.equal(limiter.consumeSync('k').allowed, true, 'an unreleased lease lapses after leaseTimeout');
  });

  it('works on a store without a synchronous path; the *Sync methods then say why they cannot', async () => {
    const clock = new ManualClock(T0);
    const store = new AsyncOnlyStore(clock);
    const limiter = new Limiter({ clock, store, policies: { limit: 1, window: '1s' } });
    assert.equal((await limiter.consume('k')).allowed, true);
    assert.equal((await limiter.consume('k')).allowed, false);
    await limiter.reset('k');
    assert.equal((await limiter.consume('k')).allowed, true);
    const conc = new Limiter({
      clock,
      store,
      policies: { algorithm: 'concurrency', limit: 1, leaseTimeout: 1000 },
    });
    const lease = await conc.consume('c');
    assert.match(lease.leaseId!, /^[a-z0-9]+-[a-z0-9]+-\d+$/);
    assert.equal(store.calls, 4, 'reset is not an apply');
    for (const call of [() => limiter.consumeSync('k'), () => limiter.allowSync('k')]) {
      assert.throws(
        call,
        (e: unknown) => e instanceof FloodgateError && e.code === 'ERR_FLOODGATE_STORE_NOT_SYNC',
      );
    }
  });

  it('resetSync and refundSync work on the memory store', async () => {
    const { limiter } = setup();
    limiter.consumeSync('k', { cost: 5 });
    assert.equal((await limiter.refund('k', 1)).remaining, 1);
    await limiter.reset('k');
    assert.equal((await limiter.peek('k', { cost: 0 })).remaining, 5);
  });
});

describe('Limiter: invalid input fails naming the option', () => {
  const ok = { limit: 5, window: '10s' } as const;
  const cases: [string, () => unknown, RegExp, ErrorConstructor][] = [
    ['no options', () => new Limiter(undefined as never), /option "options"/, TypeError],
    [
      'no policies',
      () => new Limiter({ policies: [] }),
      /option "policies" must be at least one policy/,
      RangeError,
    ],
    [
      'zero limit',
      () => new Limiter({ policies: { limit: 0, window: '1s' } }),
      /"policies.limit" must be a positive integer; got 0/,
      RangeError,
    ],
    [
      'negative limit',
      () => new Limiter({ policies: [{ limit: -3, window: '1s' }] }),
      /"policies\[0\]\.limit".*got -3/,
      RangeError,
    ],
    [
      'fractional limit',
      () => new Limiter({ policies: [{ limit: 1.5, window: '1s' }] }),
      /"policies\[0\]\.limit"/,
      RangeError,
    ],
    [
      'string limit',
      () => new Limiter({ policies: [{ limit: '5' as never, window: '1s' }] }),
      /"policies\[0\]\.limit"/,
      TypeError,
    ],
    [
      'NaN window',
      () => new Limiter({ policies: [{ limit: 5, window: Number.NaN }] }),
      /"policies\[0\]\.window".*got NaN/,
      RangeError,
    ],
    [
      'a burst whose product with the window overflows: the burst is named, with the bound',
      () => new Limiter({ policies: { limit: 5, window: '1m', burst: 2 ** 40 } }),
      /option "policies.burst" must be small enough that burst × window in ms \(1099511627776 × 60000\) stays below 2\^51; got 1099511627776/,
      RangeError,
    ],
    [
      'a limit whose product with the window overflows, on an algorithm that scales by the window',
      () => new Limiter({ policies: { algorithm: 'sliding-window-counter', limit: 2 ** 40, window: '1h' } }),
      /option "policies.limit" must be small enough that limit × window in ms/,
      RangeError,
    ],
    [
      'a fixed-window limit past 2^51 (it only adds, so each factor alone is bounded)',
      () => new Limiter({ policies: { algorithm: 'fixed-window', limit: 2 ** 52, window: '1s' } }),
      /option "policies.limit" must be a positive integer below 2\^51; got 4503599627370496/,
      RangeError,
    ],
    [
      'a fixed window past 2^51 ms',
      () => new Limiter({ policies: { algorithm: 'fixed-window', limit: 1, window: 2 ** 52 } }),
      /option "policies.window" must be a duration below 2\^51 ms; got 4503599627370496/,
      RangeError,
    ],
    [
      'a lease timeout past 2^51 ms',
      () => new Limiter({ policies: { algorithm: 'concurrency', limit: 1, leaseTimeout: 2 ** 52 } }),
      /"policies.leaseTimeout" must be a duration below 2\^51 ms/,
      RangeError,
    ],
    [
      'zero window',
      () => new Limiter({ policies: [{ limit: 5, window: 0 }] }),
      /"policies\[0\]\.window"/,
      RangeError,
    ],
    [
      'negative window',
      () => new Limiter({ policies: [{ limit: 5, window: '-1s' as never }] }),
      /"policies\[0\]\.window"/,
      RangeError,
    ],
    [
      'garbled window',
      () => new Limiter({ policies: [{ limit: 5, window: '10 parsecs' as never }] }),
      /"policies\[0\]\.window".*"10 parsecs"/,
      RangeError,
    ],
    [
      'sub-ms window',
      () => new Limiter({ policies: [{ limit: 5, window: '0.5ms' as never }] }),
      /"policies\[0\]\.window"/,
      RangeError,
    ],
    [
      'missing window',
      () => new Limiter({ policies: [{ limit: 5 } as never] }),
      /"policies\[0\]\.window"/,
      TypeError,
    ],
    [
      'unknown algorithm',
      () => new Limiter({ policies: [{ ...ok, algorithm: 'leaky' as never }] }),
      /"policies\[0\]\.algorithm" must be one of "token-bucket"/,
      RangeError,
    ],
    [
      'burst on a window',
      () => new Limiter({ policies: [{ ...ok, algorithm: 'fixed-window', burst: 3 }] }),
      /"policies\[0\]\.burst"/,
      RangeError,
    ],
    [
      'zero burst',
      () => new Limiter({ policies: [{ ...ok, burst: 0 }] }),
      /"policies\[0\]\.burst"/,
      RangeError,
    ],
    [
      'unknown field (a typo)',
      () => new Limiter({ policies: [{ ...ok, windw: 1 } as never] }),
      /"policies\[0\]\.windw" must be absent/,
      RangeError,
    ],
    [
      'concurrency without leaseTimeout',
      () => new Limiter({ policies: [{ algorithm: 'concurrency', limit: 2 } as never] }),
      /"policies\[0\]\.leaseTimeout"/,
      TypeError,
    ],
    [
      'window on concurrency',
      () =>
        new Limiter({
          policies: [{ algorithm: 'concurrency', limit: 2, leaseTimeout: 1, window: 5 } as never],
        }),
      /"policies\[0\]\.window" must be absent/,
      RangeError,
    ],
    [
      'bad name',
      () => new Limiter({ policies: [{ ...ok, name: 'no spaces' }] }),
      /"policies\[0\]\.name"/,
      RangeError,
    ],
    [
      'duplicate names',
      () =>
        new Limiter({
          policies: [
            { ...ok, name: 'a' },
            { ...ok, name: 'a' },
          ],
        }),
      /"policies\[1\]\.name" must be unique/,
      RangeError,
    ],
    [
      'policy not an object',
      () => new Limiter({ policies: [5 as never] }),
      /"policies\[0\]" must be a policy object/,
      TypeError,
    ],
    [
      'limit x window too large',
      () => new Limiter({ policies: [{ limit: 2 ** 30, window: '365d' }] }),
      /"policies\[0\]\.limit"/,
      RangeError,
    ],
    [
      'bad override',
      () => new Limiter({ policies: ok, overrides: { vip: { limit: 0, window: 1 } } }),
      /"overrides\["vip"\]\.limit"/,
      RangeError,
    ],
    ['bad default cost', () => new Limiter({ policies: ok, cost: -1 }), /option "cost"/, RangeError],
    ['NaN cost', () => new Limiter({ policies: ok, cost: Number.NaN }), /option "cost".*NaN/, RangeError],
    [
      'bad clock',
      () => new Limiter({ policies: ok, clock: { now: () => 1 } as never }),
      /option "clock"/,
      TypeError,
    ],
    ['bad store', () => new Limiter({ policies: ok, store: {} as never }), /option "store"/, TypeError],
    [
      'bad maxKeyLength',
      () => new Limiter({ policies: ok, maxKeyLength: 3 }),
      /option "maxKeyLength"/,
      RangeError,
    ],
    ['bad maxKeys', () => new MemoryStore({ maxKeys: 0 }), /option "maxKeys"/, RangeError],
    ['bad store clock', () => new MemoryStore({ clock: {} as never }), /option "clock"/, TypeError],
    [
      'store options not an object',
      () => new MemoryStore(null as never),
      /option "MemoryStore options"/,
      TypeError,
    ],
  ];
  // A key nothing reads has a code of its own; every other case is an invalid value.
  const unknownKeys = new Set([
    'unknown field (a typo)',
    'window on concurrency',
    'an unknown option',
    'an unknown store option',
    'an unknown config key',
  ]);
  cases.push(
    [
      'an unknown option',
      () => new Limiter({ policies: ok, windowMs: 1000 } as never),
      /option "windowMs" must be absent: the options are "policies"/,
      RangeError,
    ],
    [
      'an unknown store option',
      () => new MemoryStore({ maxkeys: 5 } as never),
      /option "maxkeys" must be absent/,
      RangeError,
    ],
    [
      'an unknown config key',
      () => Limiter.fromConfig({ policies: ok, polices: [] } as never),
      /option "config.polices" must be absent/,
      RangeError,
    ],
  );
  for (const [name, make, message, type] of cases) {
    it(name, async () => {
      assert.throws(make, (e: unknown) => {
        assert.ok(e instanceof type, `a ${type.name}`);
        assert.match((e as Error).message, message);
        const code = unknownKeys.has(name) ? 'ERR_FLOODGATE_UNKNOWN_OPTION' : 'ERR_FLOODGATE_INVALID_OPTION';
        assert.equal((e as { code?: string }).code, code);
        return true;
      });
    });
  }

  it('a bad cost or key on a call is refused before any state changes', async () => {
    const { limiter } = setup();
    for (const cost of [Number.NaN, -1, 1.5, Number.POSITIVE_INFINITY]) {
      assert.throws(() => limiter.consumeSync('k', { cost }), /option "cost" must be a non-negative integer/);
      await assert.rejects(limiter.consume('k', { cost }), RangeError);
    }
    assert.throws(() => limiter.consumeSync('k', { cost: '1' as never }), TypeError);
    assert.throws(() => limiter.consumeSync(undefined as never), /option "key" must be a string or a number/);
    await assert.rejects(limiter.consume({} as never), TypeError);
    assert.equal((await limiter.peek('k', { cost: 0 })).remaining, 5);
  });
});

describe('Limiter.decide', () => {
  it('answers at once over a memory store, and throws on invalid input', () => {
    const limiter = new Limiter({ policies: { limit: 1, window: '1m' } });
    const first = limiter.decide('a');
    assert.ok(!(first instanceof Promise));
    assert.equal(first.allowed, true);
    const second = limiter.decide('a');
    assert.ok(!(second instanceof Promise));
    assert.equal(second.allowed, false);
    assert.throws(() => limiter.decide('a', { cost: -1 }), /cost/);
  });
});

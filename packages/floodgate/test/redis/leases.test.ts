import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from '@floodgate/test-support';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { systemClock } from '../../src/core/clock.js';
import { type PolicySpec, policySet, resolvePolicies } from '../../src/core/policy.js';
import { Limiter } from '../../src/limiter/limiter.js';
import { lifetimeOf } from '../../src/stores/redis/grants.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { ManualTimers } from '../helpers/manual-timers.js';
import { useRedis } from '../helpers/redis.js';

// Quota leases against a real Redis: simulated processes (one store each) on one controlled clock, which
// the script also decides by, so the bounds stated in docs/stores.md can be checked at exact times.

let client: Redis;
useRedis((c) => {
  client = c;
});

let unique = 0;

function processes(count: number, clock: { now(): number }, prefix: string, lifetime = 1000) {
  return Array.from(
    { length: count },
    () => new RedisStore({ client, prefix, clock, leases: { lifetime, maxUnits: 50 } }),
  );
}

const arrivals = fc.array(
  fc.record({
    process: fc.integer({ min: 0, max: 3 }),
    dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 400 })),
    burst: fc.integer({ min: 1, max: 12 }),
  }),
  { minLength: 5, maxLength: 60 },
);

/** Decisions from every simulated process, in arrival order; returns the times of those admitted. */
async function run(
  stores: RedisStore[],
  policies: PolicySpec | PolicySpec[],
  clock: { t: number },
  steps: { process: number; dt: number; burst: number }[],
): Promise<number[]> {
  const limiters = stores.map((store) => new Limiter({ store, policies }));
  const admitted: number[] = [];
  for (const s of steps) {
    clock.t += s.dt;
    // A burst of concurrent decisions in one process: some wait for the lease another one asked for.
    const decisions = await Promise.all(
      Array.from({ length: s.burst }, () => limiters[s.process]!.consume('hot')),
    );
    for (const d of decisions) if (d.allowed) admitted.push(clock.t);
  }
  for (const store of stores) store.close();
  return admitted;
}

describe('quota leases: the stated bounds, over simulated processes and random arrival times', () => {
  it('a fixed window admits at most its limit in each window, leases or not', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 50, max: 2000 }),
        arrivals,
        async (limit, window, steps) => {
          const clock = { t: 1_700_000_000_000, now: () => clock.t };
          const stores = processes(4, clock, `fw${++unique}:`);
          const admitted = await run(stores, { algorithm: 'fixed-window', limit, window }, clock, steps);
          // A window opens with a charge, and every charge comes with an admitted decision: the windows are
          // found from the admitted times alone.
          let start = Number.NEGATIVE_INFINITY;
          let inWindow = 0;
          for (const t of admitted) {
            if (t >= start + window) {
              start = t;
              inWindow = 0;
            }
            inWindow++;
            assert.ok(
              inWindow <= limit,
              `${inWindow} admitted in the window opened at ${start}, limit ${limit}`,
            );
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('a token bucket admits at most burst + rate x (interval + lease lifetime) in any interval', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 100, max: 3000 }),
        fc.integer({ min: 0, max: 20 }),
        arrivals,
        async (limit, window, extra, steps) => {
          const clock = { t: 1_700_000_000_000, now: () => clock.t };
          const policies = { algorithm: 'token-bucket' as const, limit, window, burst: limit + extra };
          const stores = processes(4, clock, `tb${++unique}:`);
          const life = lifetimeOf(policySet(resolvePolicies(policies, 'policies')), 1000) ?? 0;
          const admitted = await run(stores, policies, clock, steps);
          for (let i = 0; i < admitted.length; i++) {
            for (let j = i; j < admitted.length; j++) {
              const count = j - i + 1;
              const bound =
                limit + extra + Math.ceil((limit * (admitted[j]! - admitted[i]! + life)) / window);
              assert.ok(
                count <= bound,
                `${count} admitted in [${admitted[i]}, ${admitted[j]}], bound ${bound}`,
              );
            }
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('remaining is never more than what is left in Redis plus what this process holds', async () => {
    const clock = { t: 1_700_000_000_000, now: () => clock.t };
    const [a, b] = processes(2, clock, `rem${++unique}:`);
    const limit = 200;
    const policies = { algorithm: 'fixed-window' as const, limit, window: 3_600_000 };
    const la = new Limiter({ store: a!, policies });
    const lb = new Limiter({ store: b!, policies });
    let admitted = 0;
    for (let i = 0; i < 60; i++) {
      // Three at once, in no known order: each may count only the ones admitted before the three.
      const before = admitted;
      for (const d of await Promise.all([la.consume('k'), lb.consume('k'), la.consume('k')])) {
        if (d.allowed) admitted++;
        assert.ok(d.remaining <= limit - before - 1, `remaining ${d.remaining} after ${before} admitted`);
      }
    }
    assert.equal(admitted, 180);
    assert.ok(a!.stats.localDecisions > 0, 'decided from leases');
    a!.close();
    b!.close();
  });
});

describe('quota leases: lifecycle', () => {
  it('an identifier seen once takes no lease; a hot one takes leases and few script calls', async () => {
    const store = new RedisStore({ client, prefix: `life${++unique}:`, leases: true });
    const limiter = new Limiter({
      store,
      policies: { algorithm: 'fixed-window', limit: 1_000_000, window: 3_600_000 },
    });
    await Promise.all(Array.from({ length: 50 }, (_, i) => limiter.consume(`cold${i}`)));
    assert.equal(store.stats.leases, 0, 'no lease for identifiers seen once');
    for (let wave = 0; wave < 40; wave++) {
      await Promise.all(Array.from({ length: 50 }, () => limiter.consume('hot')));
    }
    const calls = store.stats.scripts - 1; // the cold ones went in one call
    assert.ok(calls / 2000 < 0.05, `${calls} script calls for 2000 decisions`);
    assert.ok(store.stats.localDecisions > 1900);
    store.close();
  });

  it('unused units go back when a lease lapses, and a process that dies loses at most its lease', async () => {
    const clock = { t: 1_700_000_000_000, now: () => clock.t };
    const prefix = `lapse${++unique}:`;
    const policies = { algorithm: 'fixed-window' as const, limit: 100, window: 3_600_000 };
    const a = new RedisStore({ client, prefix, clock, leases: { lifetime: '1s', maxUnits: 10 } });
    const la = new Limiter({ store: a, policies });
    await la.consume('k'); // seen once: exact
    clock.t += 100;
    await la.consume('k'); // a lease: 1 + up to 10 units
    const held = a.stats.leasedUnits;
    assert.ok(held > 0, 'a lease was taken');
    const observer = new Limiter({ store: new RedisStore({ client, prefix, clock }), policies });
    assert.equal(
      (await observer.peek('k', { cost: 0 })).remaining,
      100 - 2 - held,
      'the lease is charged in Redis',
    );
    // "Dies": never returns them. The others still get everything else, exactly.
    clock.t += 1500;
    a.sweep();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    assert.equal(a.stats.returnedUnits, held, 'a lapsed lease gives its units back');
    assert.equal((await observer.peek('k', { cost: 0 })).remaining, 100 - 2, 'and Redis has them again');
    a.close();
  });

  it('limiter.decide answers without a promise from a lease, with one when Redis must be asked', async () => {
    const store = new RedisStore({ client, prefix: `now${++unique}:`, leases: true });
    const limiter = new Limiter({
      store,
      policies: { algorithm: 'fixed-window', limit: 1000, window: 60_000 },
    });
    const first = limiter.decide('k');
    assert.ok(first instanceof Promise, 'seen once: Redis decides');
    await first;
    await limiter.decide('k'); // takes a lease
    const local = limiter.decide('k');
    assert.ok(!(local instanceof Promise), 'from the lease: at once');
    assert.equal(local.allowed, true);
    store.close();
  });

  it('sliding windows and concurrency keep the exact path; a bucket lease lives a tenth of its refill', () => {
    assert.equal(
      lifetimeOf(
        policySet(resolvePolicies({ algorithm: 'sliding-window-log', limit: 5, window: 60_000 }, 'policies')),
        1000,
      ),
      undefined,
    );
    assert.equal(
      lifetimeOf(
        policySet(resolvePolicies({ algorithm: 'concurrency', limit: 5, leaseTimeout: 60_000 }, 'policies')),
        1000,
      ),
      undefined,
    );
    assert.equal(
      lifetimeOf(
        policySet(resolvePolicies({ algorithm: 'fixed-window', limit: 5, window: 60_000 }, 'policies')),
        1000,
      ),
      1000,
    );
    assert.equal(
      lifetimeOf(
        policySet(resolvePolicies({ algorithm: 'token-bucket', limit: 100, window: '1s' }, 'policies')),
        1000,
      ),
      100,
    );
  });

  it('in an outage, decisions follow onStoreError and no lease is taken', async () => {
    const dead = new Redis(await freePort(), '127.0.0.1', { lazyConnect: true, retryStrategy: () => 100 });
    dead.on('error', () => {});
    void dead.connect().catch(() => {});
    const store = new RedisStore({ client: dead, onStoreError: 'closed', timeout: 50, leases: true });
    const limiter = new Limiter({
      store,
      policies: { algorithm: 'fixed-window', limit: 100, window: 60_000 },
    });
    for (let i = 0; i < 3; i++) {
      const decisions = await Promise.all(Array.from({ length: 20 }, () => limiter.consume('hot')));
      assert.ok(decisions.every((d) => !d.allowed && d.reason === 'store-closed'));
    }
    assert.equal(store.stats.leases, 0);
    assert.equal(store.stats.localDecisions, 0);
    store.close();
    dead.disconnect();
  });

  it('refuses bad lease options, naming them', () => {
    const cases: [unknown, RegExp][] = [
      ['yes', /"leases" must be a boolean or/],
      [{ lifetime: 'soon' }, /leases\.lifetime/],
      [{ maxUnits: 0 }, /"leases\.maxUnits" must be a positive integer/],
      [{ maxKeys: 1.5 }, /"leases\.maxKeys" must be a positive integer/],
      [{ size: 3 }, /leases\.size/],
    ];
    for (const [leases, message] of cases) {
      assert.throws(() => new RedisStore({ client, leases: leases as never }), message);
    }
  });
});

/** Decisions for `key` in waves of `size`, each wave at once; returns how many were allowed. */
async function waves(limiter: Limiter, key: string, count: number, size: number): Promise<number> {
  let allowed = 0;
  for (let w = 0; w < count; w++) {
    const decisions = await Promise.all(Array.from({ length: size }, () => limiter.consume(key)));
    allowed += decisions.filter((d) => d.allowed).length;
  }
  return allowed;
}

describe('quota leases: whose lease it is', () => {
  const global = { name: 'global', algorithm: 'fixed-window', limit: 1000, window: '1m' } as const;
  const login = { name: 'login', algorithm: 'fixed-window', limit: 5, window: '1m' } as const;

  it("two limiters with other policies on one store never share an identifier's lease", async () => {
    const store = new RedisStore({ client, prefix: `share${++unique}:`, leases: true });
    const all = new Limiter({ store, policies: global });
    const logins = new Limiter({ store, policies: login });
    assert.equal(await waves(all, 'ip:1', 3, 20), 60, 'the global limit admits all 60');
    assert.ok(store.stats.leases > 0, 'the global limiter took a lease for ip:1');
    assert.equal(await waves(logins, 'ip:1', 3, 20), 5, 'the login limit admits its 5, not the lease');
    // The other way round, on another identifier: the login limit's refusals are not the global one's.
    assert.equal(await waves(logins, 'ip:2', 3, 20), 5);
    assert.equal(await waves(all, 'ip:2', 3, 20), 60);
    // Interleaved in one turn: each limiter keeps its own count.
    const mixed = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? all : logins).consume('ip:3')),
    );
    assert.equal(mixed.filter((d, i) => i % 2 === 0 && d.allowed).length, 20);
    assert.equal(mixed.filter((d, i) => i % 2 === 1 && d.allowed).length, 5);
    await store.close();
  });

  it('configure() reaches an identifier that holds a lease: a lowered limit holds at once', async () => {
    const store = new RedisStore({ client, prefix: `configure${++unique}:`, leases: true });
    const limiter = new Limiter({ store, policies: { ...global, name: 'api' } });
    assert.equal(await waves(limiter, 'busy', 4, 40), 160);
    assert.ok(store.stats.localDecisions > 0, 'decided from a lease');
    limiter.configure({ policies: { ...global, name: 'api', limit: 10 } });
    // A policy with new parameters is new state (see configure): 10 in this window, not one more.
    assert.equal(await waves(limiter, 'busy', 4, 40), 10);
    limiter.configure({ policies: { ...global, name: 'api', limit: 1000 } });
    assert.equal(await waves(limiter, 'busy', 1, 40), 40, 'and raised again, the lease counts from Redis');
    await store.close();
  });

  it('a cost of 0 on an identifier seen once (no units held) is answered, not a TypeError', async () => {
    const store = new RedisStore({ client, prefix: `zero${++unique}:`, leases: true });
    const limiter = new Limiter({ store, policies: global });
    assert.equal((await limiter.consume('k')).remaining, 999);
    const look = await limiter.consume('k', { cost: 0 });
    assert.equal(look.allowed, true);
    assert.equal(look.remaining, 999);
    await waves(limiter, 'k', 2, 20); // now a lease is held: a cost of 0 is answered from it
    const held = await limiter.consume('k', { cost: 0 });
    assert.equal(held.allowed, true);
    await store.close();
  });
});

describe('quota leases: time', () => {
  it("an idle process gives its unused units back at its lease's end, while the window is open", async () => {
    const time = new ManualTimers();
    const prefix = `idle${++unique}:`;
    // A window of 1 s: a lease lives a tenth of it (100 ms), a tenth of the 1 s `lifetime`.
    const policies = { algorithm: 'fixed-window' as const, limit: 400, window: 1000 };
    const options = { client, prefix, clock: time, timers: time, leases: { maxUnits: 1000 } };
    const a = new RedisStore(options);
    const b = new RedisStore(options);
    const la = new Limiter({ store: a, policies });
    const lb = new Limiter({ store: b, policies });
    let admittedA = 0;
    for (let step = 0; step < 4; step++) {
      admittedA += await waves(la, 'shared', 1, 30);
      time.advance(5);
    }
    const held = a.stats.leasedUnits - a.stats.localDecisions;
    assert.ok(held > 0, `process A holds unused units (${held})`);
    // A goes idle. Its lease ends 100 ms after it was asked for: the window (1 s) is still open.
    time.advance(120);
    assert.equal(a.stats.returnedUnits, held, "given back at the lease's end");
    // B gets everything A did not admit, exactly.
    assert.equal(await waves(lb, 'shared', 10, 100), 400 - admittedA);
    await Promise.all([a.close(), b.close()]);
  });

  it('lease lifetimes are monotonic: the wall clock stepping back 3 s admits no more than the limit', async () => {
    // Redis decides on its own TIME (no clock given); only this process's wall clock steps back.
    const prefix = `step${++unique}:`;
    const policies = { algorithm: 'fixed-window' as const, limit: 1000, window: 1000 };
    const store = new RedisStore({ client, prefix, leases: true });
    const limiter = new Limiter({ store, policies });
    const observer = new Limiter({ store: new RedisStore({ client, prefix }), policies });
    const wall = systemClock.now;
    try {
      await limiter.consume('k');
      await waves(limiter, 'k', 1, 20);
      assert.ok(store.stats.leasedUnits - store.stats.localDecisions > 0, 'a lease with units left');
      systemClock.now = () => wall() - 3000;
      // Wait for Redis's window to end (an event seen in Redis, not a guessed sleep).
      const opened = (await observer.peek('k', { cost: 0 })).resetAt;
      while ((await observer.peek('k', { cost: 0 })).remaining !== 1000) {
        await new Promise((r) => setTimeout(r, 20));
      }
      // A new window opens with the next charge: everything below is in it (well under its 1 s).
      const decisions = [];
      for (let w = 0; w < 11; w++) {
        decisions.push(...(await Promise.all(Array.from({ length: 100 }, () => limiter.consume('k')))));
      }
      const windows = new Set(decisions.filter((d) => d.allowed).map((d) => d.resetAt));
      assert.ok(!windows.has(opened), 'no decision reports the ended window');
      assert.equal(decisions.filter((d) => d.allowed).length, 1000);
    } finally {
      systemClock.now = wall;
      await store.close();
    }
  });
});

describe('quota leases: options', () => {
  it('refuses a lifetime past the timer limit and a leases option that is a list', () => {
    const cases: [unknown, RegExp][] = [
      [{ lifetime: '30d' }, /"leases\.lifetime" must be .*2147483647/],
      [{ lifetime: 2 ** 31 }, /"leases\.lifetime" must be .*2147483647/],
      [{ lifetime: '-1s' }, /leases\.lifetime/],
      [[], /"leases" must be a boolean or/],
      [[true], /"leases" must be a boolean or/],
    ];
    for (const [leases, message] of cases) {
      assert.throws(() => new RedisStore({ client, leases: leases as never }), message);
    }
    assert.ok(new RedisStore({ client, leases: { lifetime: 2 ** 31 - 1 } }));
  });

  it('quotaGrants is the option; leases, its former name, is the same option; both at once are refused', async () => {
    for (const [name, options] of [
      ['quotaGrants', { quotaGrants: true }],
      ['leases', { leases: true }],
    ] as const) {
      const store = new RedisStore({ client, prefix: `grant-name-${name}:`, ...options });
      const limiter = new Limiter({
        store,
        policies: { algorithm: 'fixed-window', limit: 100, window: '1m' },
      });
      try {
        for (let wave = 0; wave < 3; wave++) {
          await Promise.all(Array.from({ length: 20 }, () => limiter.consume('hot')));
        }
        assert.ok(store.stats.leases > 0, `${name}: grants were taken`);
        assert.ok(store.stats.localDecisions > 0, `${name}: decisions were made from them`);
      } finally {
        await store.close();
      }
    }
    assert.throws(
      () => new RedisStore({ client, quotaGrants: true, leases: true }),
      /"leases" must be absent when "quotaGrants" is given/,
    );
    assert.throws(
      () => new RedisStore({ client, quotaGrants: [] as never }),
      /"quotaGrants" must be a boolean or/,
    );
    assert.throws(
      () => new RedisStore({ client, quotaGrants: { lifetime: '30d' } }),
      /"quotaGrants\.lifetime" must be .*2147483647/,
    );
  });

  it('refuses other durations past the timer limit and lists for object options, naming them', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ timeout: '30d' }, /"timeout" must be .*2147483647/],
      [{ breaker: { probeInterval: '25d' } }, /"breaker\.probeInterval" must be .*2147483647/],
      [{ breaker: [] }, /"breaker" must be false or/],
      [{ denyCache: [] }, /"denyCache" must be a boolean or/],
      [{ timers: {} }, /"timers" must be/],
    ];
    for (const [options, message] of cases) {
      assert.throws(() => new RedisStore({ client, ...options } as never), message);
    }
  });
});

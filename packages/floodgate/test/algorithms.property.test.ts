import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { algorithms } from '../src/core/algorithms/index.js';
import type { AlgorithmName, AlgorithmParams } from '../src/core/algorithms/types.js';
import { ManualClock } from '../src/core/clock.js';
import type { PolicySpec } from '../src/core/policy.js';
import { Limiter } from '../src/limiter/limiter.js';

const T0 = 1_700_000_000_000;
const RATE: AlgorithmName[] = [
  'token-bucket',
  'gcra',
  'fixed-window',
  'sliding-window-log',
  'sliding-window-counter',
];

interface Req {
  dt: number;
  cost: number;
}
interface Run {
  params: AlgorithmParams;
  reqs: Req[];
}

function run(name: AlgorithmName): fc.Arbitrary<Run> {
  const bucket = name === 'token-bucket' || name === 'gcra';
  return fc
    .record({
      limit: fc.integer({ min: 1, max: 12 }),
      window: fc.integer({ min: 1, max: 3000 }),
      extra: fc.integer({ min: 0, max: 8 }),
    })
    .chain(({ limit, window, extra }) => {
      const burst = bucket ? Math.max(1, limit + extra - 4) : limit;
      return fc.record({
        params: fc.constant({ limit, window, burst }),
        reqs: fc.array(
          fc.record({
            dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 * window })),
            cost: fc.integer({ min: 0, max: burst + 1 }),
          }),
          { maxLength: 60 },
        ),
      });
    });
}

interface Step {
  now: number;
  cost: number;
  allowed: boolean;
}

/** Threads state through the pure functions, checking the per-step properties common to every algorithm. */
function simulate(name: AlgorithmName, { params, reqs }: Run): Step[] {
  const algo = algorithms[name];
  let state: unknown;
  let now = T0;
  const steps: Step[] = [];
  for (const { dt, cost } of reqs) {
    now += dt;
    const out = algo.consume(state, now, cost, params, 'lease');
    if (!out.allowed) {
      assert.equal(out.state, state, 'a denied request changes no state');
      if (Number.isFinite(out.retryAfter)) {
        assert.ok(out.retryAfter >= 1);
        assert.ok(
          algo.consume(state, now + out.retryAfter, cost, params, 'x').allowed,
          'allowed exactly at retryAfter',
        );
        assert.ok(
          !algo.consume(state, now + out.retryAfter - 1, cost, params, 'x').allowed,
          'retryAfter is the earliest time',
        );
      } else {
        assert.ok(cost > params.burst, 'Infinity only for a cost that can never fit');
      }
    } else {
      assert.equal(out.retryAfter, 0);
      // `remaining` is exact: that much more fits now, one more does not.
      const after = out.state;
      assert.ok(algo.consume(after, now, out.remaining, params, 'y').allowed, 'remaining fits');
      assert.ok(!algo.consume(after, now, out.remaining + 1, params, 'y').allowed, 'remaining + 1 does not');
      state = after;
    }
    assert.ok(out.resetAt >= now || out.resetAt === now);
    steps.push({ now, cost, allowed: out.allowed });
  }
  return steps;
}

const allowedIn = (steps: Step[], from: number, to: number) =>
  steps.filter((s) => s.allowed && s.now >= from && s.now < to).reduce((sum, s) => sum + s.cost, 0);

describe('algorithm guarantees (property-based)', () => {
  for (const name of ['token-bucket', 'gcra'] as const) {
    it(`${name}: allowed cost over any interval of length d is at most burst + d * limit / window`, async () => {
      fc.assert(
        fc.property(run(name), (r) => {
          const steps = simulate(name, r);
          const { limit, window, burst } = r.params;
          for (const a of steps) {
            for (const b of steps) {
              if (b.now < a.now) continue;
              const sum = allowedIn(steps, a.now, b.now + 1);
              assert.ok(
                sum * window <= burst * window + (b.now - a.now) * limit,
                `${sum} in [${a.now}, ${b.now}]`,
              );
            }
          }
        }),
        { numRuns: 300 },
      );
    });

    it(`${name}: agrees with a token-counting model (tokens refill continuously, capped at burst)`, async () => {
      fc.assert(
        fc.property(run(name), (r) => {
          const { limit, window, burst } = r.params;
          // Tokens scaled by `window`, so refilling `dt * limit / window` tokens adds `dt * limit`.
          let tokens = burst * window;
          let last = T0;
          const steps = simulate(name, r);
          for (const s of steps) {
            tokens = Math.min(burst * window, tokens + (s.now - last) * limit);
            last = s.now;
            const fits = s.cost <= burst && tokens >= s.cost * window;
            assert.equal(s.allowed, fits);
            if (fits) tokens -= s.cost * window;
          }
        }),
        { numRuns: 300 },
      );
    });
  }

  it('fixed-window: at most limit per window (opened by the first request after the last closed), 2x limit over any window length', async () => {
    fc.assert(
      fc.property(run('fixed-window'), (r) => {
        const steps = simulate('fixed-window', r);
        const { limit, window } = r.params;
        let start = Number.NEGATIVE_INFINITY;
        let count = 0;
        for (const s of steps) {
          if (s.now >= start + window && s.allowed && s.cost > 0) {
            start = s.now;
            count = 0;
          }
          if (s.allowed) count += s.cost;
          assert.ok(count <= limit);
          // Not stricter than the rule: a denied request really would have overflowed the window.
          if (!s.allowed) assert.ok(s.cost > limit || (s.now < start + window && count + s.cost > limit));
        }
        for (const a of steps) assert.ok(allowedIn(steps, a.now, a.now + window) <= 2 * limit);
      }),
      { numRuns: 300 },
    );
  });

  it('sliding-window-log: at most limit over any interval of length window, and denies only when it must', async () => {
    fc.assert(
      fc.property(run('sliding-window-log'), (r) => {
        const steps = simulate('sliding-window-log', r);
        const { limit, window } = r.params;
        for (const a of steps) assert.ok(allowedIn(steps, a.now, a.now + window) <= limit);
        for (const [i, s] of steps.entries()) {
          if (s.allowed) continue;
          const before = steps.slice(0, i);
          assert.ok(s.cost > limit || allowedIn(before, s.now - window + 1, s.now + 1) + s.cost > limit);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('sliding-window-counter: at most limit per aligned window, 2x limit over any interval of length window', async () => {
    fc.assert(
      fc.property(run('sliding-window-counter'), (r) => {
        const steps = simulate('sliding-window-counter', r);
        const { limit, window } = r.params;
        for (const s of steps) {
          const start = s.now - (s.now % window);
          assert.ok(allowedIn(steps, start, start + window) <= limit);
          assert.ok(allowedIn(steps, s.now, s.now + window) <= 2 * limit);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('concurrency: unreleased, unexpired leases never exceed the limit', async () => {
    const arb = fc.record({
      limit: fc.integer({ min: 1, max: 6 }),
      timeout: fc.integer({ min: 1, max: 1000 }),
      ops: fc.array(
        fc.record({
          dt: fc.integer({ min: 0, max: 400 }),
          cost: fc.integer({ min: 0, max: 7 }),
          release: fc.nat(10),
        }),
        { maxLength: 60 },
      ),
    });
    fc.assert(
      fc.property(arb, ({ limit, timeout, ops }) => {
        const params = { limit, window: timeout, burst: limit };
        const algo = algorithms.concurrency;
        let state: unknown;
        let now = T0;
        const held: { id: string; cost: number; until: number }[] = [];
        ops.forEach(({ dt, cost, release }, i) => {
          now += dt;
          if (release < held.length) {
            const [gone] = held.splice(release, 1);
            state = algo.refund(state, now, 0, params, gone!.id);
          }
          const out = algo.consume(state, now, cost, params, `l${i}`);
          if (out.allowed) {
            state = out.state;
            if (cost > 0) held.push({ id: `l${i}`, cost, until: now + timeout });
          } else {
            assert.equal(out.state, state);
          }
          const live = held.filter((h) => h.until > now).reduce((sum, h) => sum + h.cost, 0);
          assert.ok(live <= limit, `${live} slots held with limit ${limit}`);
        });
      }),
      { numRuns: 300 },
    );
  });
});

describe('refund (property-based)', () => {
  for (const name of [...RATE, 'concurrency'] as AlgorithmName[]) {
    it(`${name}: refunding an allowed request at once restores its capacity; later refunds only add, up to the limit`, async () => {
      fc.assert(
        fc.property(run(name), fc.integer({ min: 0, max: 5000 }), (r, later) => {
          const algo = algorithms[name];
          let state: unknown;
          let now = T0;
          const available = (s: unknown, t: number) => algo.consume(s, t, 0, r.params).remaining;
          for (const [i, { dt, cost }] of r.reqs.entries()) {
            now += dt;
            const before = available(state, now);
            const out = algo.consume(state, now, cost, r.params, `l${i}`);
            if (!out.allowed) continue;
            assert.equal(available(algo.refund(out.state, now, cost, r.params), now), before);
            const t = now + later;
            const refunded = available(algo.refund(out.state, t, cost, r.params), t);
            assert.ok(refunded >= available(out.state, t) && refunded <= r.params.burst);
            state = out.state;
          }
        }),
        { numRuns: 200 },
      );
    });
  }
});

function policyArb(i: number): fc.Arbitrary<PolicySpec> {
  return fc.oneof(
    fc.record({
      name: fc.constant(`p${i}`),
      algorithm: fc.constantFrom(...RATE),
      limit: fc.integer({ min: 1, max: 8 }),
      window: fc.integer({ min: 1, max: 2000 }),
    }),
    fc.record({
      name: fc.constant(`p${i}`),
      algorithm: fc.constant('concurrency' as const),
      limit: fc.integer({ min: 1, max: 8 }),
      leaseTimeout: fc.integer({ min: 1, max: 2000 }),
    }),
  ) as fc.Arbitrary<PolicySpec>;
}

describe('Limiter on MemoryStore (property-based)', () => {
  const scenario = fc.record({
    policies: fc
      .tuple(policyArb(0), policyArb(1), policyArb(2))
      .chain((ps) => fc.integer({ min: 1, max: 3 }).map((n) => ps.slice(0, n))),
    reqs: fc.array(
      fc.record({
        dt: fc.integer({ min: 0, max: 3000 }),
        cost: fc.integer({ min: 0, max: 9 }),
        key: fc.constantFrom('a', 'b'),
      }),
      { maxLength: 50 },
    ),
  });

  it('decides exactly as the pure algorithms, all or nothing, across expiry and reclamation', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ policies, reqs }) => {
        const clock = new ManualClock(T0);
        const limiter = new Limiter({ clock, policies });
        const resolved = limiter.policiesFor('a');
        const model = new Map<string, unknown[]>();
        for (const { dt, cost, key } of reqs) {
          clock.advance(dt);
          const now = clock.now();
          const states = model.get(key) ?? [];
          const before = (await limiter.peek(key, { cost: 0 })).policies;
          const decision = limiter.consumeSync(key, { cost });
          const outs = resolved.map((p, i) =>
            p.impl.consume(states[i], now, cost, p, decision.leaseId ?? 'none'),
          );
          const allowed = outs.every((o) => o.allowed);
          assert.equal(decision.allowed, allowed);
          // Refused: nothing is charged, so the policies that would have allowed report their state unchanged.
          const reported = allowed
            ? outs
            : outs.map((o, i) =>
                o.allowed ? resolved[i]!.impl.consume(states[i], now, 0, resolved[i]!) : o,
              );
          assert.deepEqual(
            decision.policies.map((d) => [d.allowed, d.remaining, d.resetAt, d.retryAfter]),
            reported.map((o) => [o.allowed, o.remaining, o.resetAt, o.retryAfter]),
          );
          if (allowed) {
            model.set(
              key,
              outs.map((o) => o.state),
            );
          } else {
            // All or nothing: the refusal left every policy as it was.
            assert.deepEqual((await limiter.peek(key, { cost: 0 })).policies, before);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('allowSync answers and charges exactly as consumeSync, on its fast path and off it', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ policies, reqs }) => {
        const clock = new ManualClock(T0);
        const fast = new Limiter({ clock, policies });
        const full = new Limiter({ clock, policies });
        for (const { dt, cost, key } of reqs) {
          clock.advance(dt);
          assert.equal(fast.allowSync(key, { cost }), full.consumeSync(key, { cost }).allowed);
          assert.deepEqual(await fast.peek(key, { cost: 0 }), await full.peek(key, { cost: 0 }));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a request retried exactly at retryAfter is allowed (several policies)', async () => {
    fc.assert(
      fc.property(scenario, ({ policies, reqs }) => {
        const clock = new ManualClock(T0);
        const limiter = new Limiter({ clock, policies });
        for (const { dt, cost, key } of reqs) {
          clock.advance(dt);
          const d = limiter.consumeSync(key, { cost });
          if (!d.allowed && Number.isFinite(d.retryAfter)) {
            clock.advance(d.retryAfter);
            assert.ok(limiter.consumeSync(key, { cost }).allowed, `retried after ${d.retryAfter} ms`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

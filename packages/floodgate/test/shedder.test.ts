import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Aimd, Gradient2 } from '../src/core/capacity.js';
import { LoopQueue } from '../src/core/loop-queue.js';
import { type Priority, Shedder, type ShedderOptions } from '../src/limiter/shedder.js';
import { ManualTimers } from './helpers/manual-timers.js';
import { QueueServer } from './helpers/queue-server.js';

// A simulated server on a controlled clock: `capacity` requests run at once at their base latency; past
// that they share it (each takes base x inflight / capacity). Closed loop: `clients` each send a request as
// soon as the last one ends, or 5 ms after it was shed. Events run in time order; nothing sleeps.

interface Simulation {
  shedder: Shedder;
  clock: { t: number; now(): number };
  /** Runs until `samples` more requests have finished; returns the limit after every 50. */
  run(samples: number): number[];
  base: number;
}

function simulate(capacity: number, clients: number, options: ShedderOptions, base = 10): Simulation {
  const clock = { t: 0, now: () => clock.t };
  const shedder = new Shedder({ ...options, clock });
  const events: { at: number; fn: () => void }[] = [];
  const sim: Simulation = { shedder, clock, base, run: () => [] };
  let done = 0;
  const send = () => {
    const permit = shedder.acquire();
    if (permit === undefined) {
      events.push({ at: clock.t + 5, fn: send });
      return;
    }
    const latency = sim.base * Math.max(1, shedder.inflight / capacity);
    events.push({
      at: clock.t + latency,
      fn: () => {
        permit.release();
        done++;
        send();
      },
    });
  };
  for (let i = 0; i < clients; i++) send();
  sim.run = (samples) => {
    const limits: number[] = [];
    const until = done + samples;
    while (done < until) {
      let next = 0;
      for (let i = 1; i < events.length; i++) if (events[i]!.at < events[next]!.at) next = i;
      const [event] = events.splice(next, 1);
      clock.t = event!.at;
      const before = done;
      event!.fn();
      if (done !== before && done % 50 === 0) limits.push(shedder.limit);
    }
    return limits;
  };
  return sim;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe('adaptive concurrency: Gradient2 on a simulated server', () => {
  // The default class may fill 80% of the limit, and latency may reach 1.5x the baseline: a server that runs
  // 20 at once settles with 20 to 40 of its requests in flight.
  const settled = (limits: number[]) => median(limits.slice(-40)) * 0.8;

  it('converges to the capacity from above', () => {
    // Enough clients to use over half the limit: a limit nobody reaches is not judged at all.
    const sim = simulate(20, 400, { limit: { algorithm: 'gradient2', initialLimit: 300, maxLimit: 500 } });
    const inflight = settled(sim.run(4000));
    assert.ok(inflight >= 20 && inflight <= 40, `settled at ${inflight} in flight`);
  });

  it('converges to the capacity from below', () => {
    const sim = simulate(20, 100, { limit: { algorithm: 'gradient2', initialLimit: 2 } });
    const inflight = settled(sim.run(4000));
    assert.ok(inflight >= 20 && inflight <= 40, `settled at ${inflight} in flight`);
  });

  it('a server using under half its limit does not grow it', () => {
    const g = new Gradient2({ initialLimit: 100 });
    for (let i = 0; i < 1000; i++) g.sample(10, 10, false);
    assert.equal(g.limit, 100);
  });

  it('nor shrink it: slow requests while most slots are free are noise (a light load on a busy machine)', () => {
    const g = new Gradient2({ initialLimit: 20 });
    for (let i = 0; i < 20; i++) g.sample(20, 4, false);
    for (let i = 0; i < 200; i++) g.sample(i % 3 === 0 ? 60 : 20, 4, i % 50 === 0, true, i);
    assert.equal(g.limit, 20, 'neither slow requests nor drops cut a limit not in use');
    g.sample(60, 12, false);
    assert.ok(g.limit < 20, `a slow request with the limit in use cuts: ${g.limit}`);
  });
});

describe('adaptive concurrency: Gradient2 before a database of fixed parallelism', () => {
  /** A server running `parallel` requests at once, `service` ms each, offered `load` times what it can serve. */
  const database = (parallel: number, service: number, load: number, options: ShedderOptions = {}) => {
    const db = new QueueServer(parallel, service, 0);
    db.rate = db.capacity * load;
    db.shedder = new Shedder({ ...options, clock: db.clock });
    return db;
  };

  for (const load of [2, 4]) {
    it(`40 at once x 100 ms at ${load}x: the limit settles near 40, so requests hardly queue`, () => {
      const db = database(40, 100, load);
      db.run(5000);
      const settled = db.run(5000, 250);
      const limit = median(settled.limits);
      assert.ok(limit >= 40 && limit <= 60, `settled at a limit of ${limit}`);
      assert.ok(settled.p50 <= 100, `p50 ${settled.p50} ms: the typical request does not queue`);
      assert.ok(settled.p99 <= 200, `p99 ${settled.p99} ms`);
      assert.ok(settled.goodput >= db.capacity * 0.9, `goodput ${settled.goodput}/s of ${db.capacity}/s`);
    });
  }

  it('the database 10x slower for good: within 5 s the limit serves all it can; 2 s after it recovers, too', () => {
    const db = database(8, 20, 2);
    db.run(5000);
    const fast = db.capacity;
    db.service = 200; // a slower normal: 40/s, still 8 at once
    const slowed = [1, 2, 3, 4, 5].map(() => db.run(1000));
    const last = slowed.at(-1)!;
    // The default class fills 80% of the limit: 10 lets 8 run.
    assert.ok(last.limits.at(-1)! >= 10, `limit ${last.limits.at(-1)} 5 s after the step`);
    assert.ok(last.goodput >= db.capacity * 0.8, `${last.goodput}/s in the 5th second of ${db.capacity}/s`);
    db.service = 20;
    db.run(1000);
    const back = db.run(1000);
    assert.ok(back.goodput >= fast * 0.9, `${back.goodput}/s in the 2nd second after of ${fast}/s`);
    assert.ok(back.limits.at(-1)! >= 10, `limit ${back.limits.at(-1)} after the recovery`);
  });

  it('a sustained overload does not pass for a new normal: the limit stays put for a minute', () => {
    const db = database(20, 10, 4);
    db.run(2000);
    const minute = db.run(60_000);
    const limits = minute.limits;
    assert.ok(Math.max(...limits.slice(-100)) <= 30, `limit up to ${Math.max(...limits.slice(-100))}`);
    assert.ok(minute.p99 <= 20, `p99 ${minute.p99} ms`);
  });

  it('resetBaseline() from the Shedder measures the baseline again at once, on a few slots', () => {
    const db = database(8, 20, 2);
    db.run(3000);
    db.service = 200;
    db.shedder.resetBaseline();
    assert.ok(db.shedder.limit <= 5, `limit ${db.shedder.limit} while measuring`);
    db.run(1000);
    const next = db.run(1000);
    assert.ok(next.goodput >= db.capacity * 0.8, `${next.goodput}/s of ${db.capacity}/s`);
    assert.ok(next.limits.at(-1)! >= 10, `limit ${next.limits.at(-1)}`);
  });
});

describe('adaptive concurrency: AIMD', () => {
  it('grows by one per round trip while busy, backs off on a drop, once per overload', () => {
    const a = new Aimd({ initialLimit: 10 });
    for (let i = 0; i < 10; i++) a.sample(5, 10, false);
    assert.equal(a.limit, 10, 'nine tenths of a slot after nine tenths of a round trip');
    a.sample(5, 10, false);
    assert.equal(a.limit, 11, 'one slot after a round trip');
    a.sample(5, 11, true);
    assert.equal(a.limit, 9);
    a.sample(5, 11, true, false);
    assert.equal(a.limit, 9, 'a drop admitted before the cut does not cut again');
  });

  it('a request far past the objective cuts by how far past it was, in one step', () => {
    const a = new Aimd({ initialLimit: 100 }, '', 250);
    a.sample(1000, 100, true);
    assert.equal(a.limit, 25, '4x over the objective: a quarter of the limit');
    a.sample(260, 25, true);
    assert.equal(a.limit, 22, 'just over: the backoff (0.9)');
  });

  it('with a latency objective, settles where latency meets it', () => {
    const sim = simulate(20, 100, { limit: { algorithm: 'aimd', initialLimit: 200 }, latencyObjective: 25 });
    // 25 ms is reached at 50 in flight; the default class fills 80% of the limit.
    const inflight = median(sim.run(4000).slice(-40)) * 0.8;
    assert.ok(inflight >= 35 && inflight <= 75, `settled at ${inflight} in flight`);
  });

  /** A database of fixed parallelism offered `load` times its capacity, behind AIMD with a 250 ms objective. */
  const database = (parallel: number, service: number, load: number) => {
    const db = new QueueServer(parallel, service, 0);
    db.rate = db.capacity * load;
    db.shedder = new Shedder({ limit: 'aimd', latencyObjective: 250, clock: db.clock });
    return db;
  };

  for (const [parallel, service] of [
    [8, 20],
    [40, 100],
  ] as const) {
    for (const load of [2, 4]) {
      it(`${parallel} at once x ${service} ms at ${load}x: goodput within the objective, p99 under it`, () => {
        const db = database(parallel, service, load);
        db.run(10_000);
        const settled = db.run(10_000, 250);
        assert.ok(settled.goodput >= db.capacity * 0.9, `goodput ${settled.goodput}/s of ${db.capacity}/s`);
        assert.ok(settled.p99 <= 250, `p99 ${settled.p99} ms`);
      });
    }
  }

  it('the database 10x slower: within 5 s it serves what it can; never stuck at nothing; back after', () => {
    const db = database(8, 20, 2);
    db.run(5000);
    const fast = db.capacity;
    db.service = 200;
    const slowed = [1, 2, 3, 4, 5].map(() => db.run(1000, 250));
    assert.ok(
      slowed.at(-1)!.goodput >= db.capacity * 0.8,
      `${slowed.at(-1)!.goodput}/s in the 5th second of ${db.capacity}/s`,
    );
    db.service = 20;
    db.run(1000, 250);
    const back = db.run(1000, 250);
    assert.ok(back.goodput >= fast * 0.9, `${back.goodput}/s in the 2nd second after of ${fast}/s`);
  });

  it('cut to its floor, an idle server still admits a request of any class, and grows back on it', () => {
    const s = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 2, minLimit: 1 } });
    s.acquire('default')!.release('dropped');
    assert.equal(s.limit, 1);
    const one = s.acquire('default');
    assert.ok(one, "nothing in flight: admitted, though the last slot is critical's");
    assert.equal(s.acquire('default'), undefined);
    one.release();
    assert.ok(s.limit >= 1);
  });
});

describe('load shedding by priority', () => {
  it('sheds sheddable first, then default, and keeps a share for critical', () => {
    const s = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 20 } });
    const take = (p: Priority) => s.acquire(p);
    const held = [];
    for (let i = 0; i < 10; i++) held.push(take('sheddable')!);
    assert.equal(take('sheddable'), undefined, 'sheddable fill half the limit');
    for (let i = 0; i < 6; i++) held.push(take('default')!);
    assert.equal(take('default'), undefined, 'default fill 80%');
    for (let i = 0; i < 4; i++) held.push(take('critical')!);
    assert.equal(take('critical'), undefined, 'critical the rest');
    assert.equal(s.inflight, 20);
    assert.deepEqual(s.stats.shed, { critical: 1, default: 1, sheddable: 1 });
    held[0]!.release('ignore');
    assert.ok(take('critical'), 'a released slot is free again');
  });

  for (const limit of [2, 3, 4]) {
    it(`at a limit of ${limit}, the last slot stays for critical`, () => {
      const s = new Shedder({ limit: { algorithm: 'aimd', initialLimit: limit, minLimit: 1 } });
      const held = [];
      for (let p = s.acquire('default'); p !== undefined; p = s.acquire('default')) held.push(p);
      for (let p = s.acquire('sheddable'); p !== undefined; p = s.acquire('sheddable')) held.push(p);
      assert.equal(held.length, limit - 1, 'default and sheddable leave one slot');
      assert.ok(s.acquire('critical'), 'a health check still gets in');
      assert.equal(s.acquire('critical'), undefined);
    });
  }

  it('a class given all of the limit (share 1) may take the last slot too', () => {
    const s = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 2 }, shares: { default: 1 } });
    assert.ok(s.acquire('default') && s.acquire('default'));
  });

  it('an unknown class is the default class, counted', () => {
    const s = new Shedder();
    const permit = s.acquire('urgent' as Priority);
    assert.equal(permit?.priority, 'default');
    assert.equal(s.stats.unknownPriority, 1);
  });

  it('no request is both admitted and shed; a release frees one slot once; in flight never passes the room', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constantFrom<Priority>('critical', 'default', 'sheddable'), fc.nat(30)), {
          maxLength: 300,
        }),
        (steps) => {
          const clock = { t: 0, now: () => clock.t };
          const s = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 12 }, clock });
          const held: { release(outcome?: 'ok' | 'dropped' | 'ignore'): void }[] = [];
          let acquired = 0;
          let refused = 0;
          for (const step of steps) {
            clock.t += 1;
            if (typeof step === 'number') {
              const permit = held.splice(step % Math.max(1, held.length), 1)[0];
              permit?.release();
              permit?.release(); // twice: the second is ignored
            } else {
              const limit = s.limit;
              const permit = s.acquire(step);
              if (permit === undefined) refused++;
              else {
                acquired++;
                held.push(permit);
                assert.ok(s.inflight <= limit, `${s.inflight} in flight past the limit ${limit}`);
              }
            }
            assert.equal(s.inflight, held.length);
          }
          const shed = s.stats.shed.critical + s.stats.shed.default + s.stats.shed.sheddable;
          assert.equal(s.stats.admitted, acquired);
          assert.equal(shed, refused);
        },
      ),
    );
  });
});

describe('the event loop as a signal (a CPU-bound server)', () => {
  it('a wait past the target is a burst until it has lasted the interval; then those that waited past it are refused', () => {
    const q = new LoopQueue(10, 100, 0); // a tick due every 5 ms
    assert.equal(q.tick, 5);
    assert.equal(q.wait(3), 0, 'before the tick is due, nobody has waited');
    assert.equal(q.wait(40), 35);
    assert.ok(q.admit(40, 'default'), 'a 35 ms wait: a burst so far');
    assert.ok(q.admit(300, 'default'), 'one long stretch of work, with no tick run late, is no queue');
    // The loop works in batches, the tick late after each: late since 15 (10 past the tick due at 5).
    q.ticked(40);
    q.ticked(80);
    assert.equal(q.standing(114), false);
    assert.equal(q.standing(115), true);
    assert.ok(q.admit(95, 'default'), 'waited 10 ms (the tick was due at 85)');
    assert.equal(q.admit(115, 'default'), false, 'waited 30 ms');
    assert.ok(q.admit(115, 'critical'), 'critical is never refused for the loop');
    q.ticked(120);
    assert.ok(q.admit(121, 'default'), 'just after a tick: waited under the target');
    assert.equal(q.admit(121, 'sheddable'), false, 'sheddable goes first, whatever it waited');
    assert.equal(q.admit(131, 'default'), false, '11 ms into the batch');
    q.ticked(140); // 15 ms late: still standing
    assert.ok(q.admit(160, 'default'), 'the first of a batch goes on, however late it comes');
    assert.equal(q.admit(161, 'default'), false);
    // A tick on time (within half the target): the queue has drained.
    q.ticked(165);
    q.ticked(174);
    assert.equal(q.standing(175), false);
    assert.ok(q.admit(175, 'sheddable'));
  });

  it('bursts shorter than the interval, however often, never refuse', () => {
    const q = new LoopQueue(10, 100, 0);
    let t = 0;
    for (let i = 0; i < 100; i++) {
      t += 5 + 90; // a 90 ms pause (a GC, a flurry), then the tick, late
      assert.ok(q.admit(t, 'sheddable'), `burst ${i}`);
      q.ticked(t);
      t += 5;
      q.ticked(t); // and one on time
    }
  });

  /**
   * A CPU-bound server on timers moved by hand: requests arrive every `gap` ms; the loop takes every one that
   * has arrived, 5 ms of work each (a refusal costs nothing), then runs its timers, as Node's loop does.
   */
  const cpuBound = (gap: number, ms: number) => {
    const timers = new ManualTimers(0);
    const s = new Shedder({ timers });
    let next = 0;
    let arrived = 0;
    const waits: number[] = [];
    while (timers.t < ms) {
      const batch: number[] = [];
      for (; next <= timers.t; next += gap) batch.push(next);
      if (batch.length === 0) timers.t = next; // idle until the next arrival
      arrived += batch.length;
      for (const at of batch) {
        const permit = s.acquire();
        if (permit === undefined) continue;
        waits.push(timers.t - at);
        timers.t += 5;
        permit.release();
      }
      timers.advance(0);
    }
    s.close();
    return { shedder: s, waits, served: waits.length, arrived };
  };

  for (const load of [2, 4]) {
    it(`5 ms of CPU per request at ${load}x: serves at capacity, and what it serves waited little`, () => {
      const { shedder, waits, served, arrived } = cpuBound(5 / load, 10_000);
      assert.ok(served >= 0.9 * 2000, `${served} served in 10 s of a capacity of 2000`);
      assert.equal(shedder.stats.waitedTooLong, arrived - served, 'every refusal is for the wait');
      const late = waits.slice(100).sort((a, b) => a - b);
      const p99 = late[Math.floor(late.length * 0.99)]!;
      assert.ok(p99 <= 25, `p99 wait ${p99} ms (target 10 ms, a tick of 5, and a request's own 5)`);
    });
  }

  it('5 ms of CPU per request at 0.5x: nothing refused', () => {
    const { shedder, served, arrived } = cpuBound(10, 10_000);
    assert.equal(shedder.stats.waitedTooLong, 0);
    assert.equal(served, arrived);
  });

  it('a shedder on timers moved by hand stops its watch on close', () => {
    const timers = new ManualTimers(0);
    const s = new Shedder({ timers });
    assert.equal(timers.pending, 1);
    timers.advance(100);
    assert.equal(s.overloaded, false, 'ticks on time: no queue');
    s.close();
    assert.equal(timers.pending, 0);
  });

  it('eventLoop: false does not watch; a clock without timers does not either, unless asked', () => {
    const timers = new ManualTimers(0);
    assert.equal(new Shedder({ timers, eventLoop: false }).overloaded, false);
    assert.equal(timers.pending, 0);
    const clock = { now: () => 0 };
    const simulated = new Shedder({ clock });
    for (let i = 0; i < 100; i++) simulated.acquire()?.release();
    assert.equal(simulated.stats.waitedTooLong, 0);
    const watched = new Shedder({ clock, eventLoop: { target: '5ms' } });
    assert.equal(watched.overloaded, false);
    watched.close();
  });
});

describe('Shedder options', () => {
  const cases: [unknown, RegExp][] = [
    [{ latencyObjective: 'soon' }, /"latencyObjective" must be/],
    [{ limit: 'vegas' }, /"limit" must be "gradient2", "aimd" or/],
    [{ limit: { algorithm: 'vegas' } }, /"limit\.algorithm" must be one of "gradient2", "aimd"/],
    [{ limit: { algorithm: 'aimd', backoff: 2 } }, /"limit\.backoff" must be a number above 0/],
    [
      { limit: { algorithm: 'gradient2', minLimit: 10, maxLimit: 5 } },
      /"limit\.minLimit" must be at most maxLimit/,
    ],
    [
      { limit: { algorithm: 'gradient2', tolerance: 0.5 } },
      /"limit\.tolerance" must be a number from 1 to 10/,
    ],
    [{ shares: { default: 0 } }, /"shares\.default" must be a number above 0/],
    [{ shares: { default: 0.4, sheddable: 0.6 } }, /"shares\.sheddable" must be at most shares\.default/],
    [{ shares: { critical: 1 } }, /"shares\.critical" must be absent/],
    [{ eventLoop: { target: 'late' } }, /"eventLoop\.target" must be/],
    [{ eventLoop: { target: 0 } }, /"eventLoop\.target" must be a positive integer/],
    [{ eventLoop: { maxDelay: '100ms' } }, /"eventLoop\.maxDelay" must be absent/],
    [{ eventLoop: true }, /"eventLoop" must be false or \{ target, interval \}/],
    [{ timers: { now: () => 0 } }, /"timers" must be an object with now\(\), setTimeout\(\)/],
    [{ retryAfter: -1 }, /"retryAfter" must be/],
    [{ sheddable: true }, /"sheddable" must be absent/],
  ];
  for (const [options, message] of cases) {
    it(`refuses ${JSON.stringify(options)}, naming the option`, () => {
      assert.throws(() => new Shedder(options as ShedderOptions), message);
    });
  }

  it('inside a larger configuration, names the option by its full path', () => {
    assert.throws(
      () => new Shedder({ limit: { algorithm: 'aimd', backoff: 2 } }, 'shed.'),
      /"shed\.limit\.backoff" must be/,
    );
    assert.throws(() => new Shedder({ shares: { default: 0 } }, 'shed.'), /"shed\.shares\.default" must be/);
    assert.throws(
      () => new Shedder({ eventLoop: { interval: 'x' } }, 'shed.'),
      /"shed\.eventLoop\.interval"/,
    );
    assert.throws(
      () => new Shedder({ sheddable: true } as ShedderOptions, 'shed.'),
      /"shed\.sheddable" must be absent/,
    );
  });

  it('watches the event loop with real timers by default, and stops on close', () => {
    const s = new Shedder();
    assert.equal(s.overloaded, false);
    s.close();
  });
});

import type { PolicyResult } from '../../core/algorithms/types.js';
import type { MaybePromise } from '../../core/maybe.js';
import type { PolicySet } from '../../core/policy.js';
import type { Timers } from '../../core/timers.js';

/** What the leases need from the store. */
export interface LeaseStore {
  /** One script operation, answered with its results and grant (never rejects: an outage is answered). */
  call(
    key: string,
    set: PolicySet,
    mode: 'consume' | 'lease' | 'unlease',
    cost: number,
    lease?: string,
  ): Promise<{ readonly results: readonly PolicyResult[]; readonly granted: number }>;
  /** The outage policy's own answer for one consume decision (charged in the fallback store, counted). */
  degrade(key: string, set: PolicySet, cost: number): readonly PolicyResult[];
}

export interface LeaseSettings {
  /** Longest a lease is held before its unused units go back (ms); shortened per policy set, see `lifetimeOf`. */
  readonly lifetime: number;
  /** Most units one lease may ask for. */
  readonly maxUnits: number;
  /** Most identifiers followed at once (per policy set); past it, new identifiers take the exact path. */
  readonly maxKeys: number;
  /** Local monotonic time, and the timers that end leases. */
  readonly timers: Timers;
}

/**
 * Counters for metrics: leases taken, units leased, units given back to Redis, units a lease held unspent
 * and could not give back, decisions made from a lease.
 */
export interface LeaseStats {
  leases: number;
  leasedUnits: number;
  returnedUnits: number;
  lapsedUnits: number;
  localDecisions: number;
}

interface Waiter {
  readonly cost: number;
  resolve(results: MaybePromise<readonly PolicyResult[]>): void;
}

/** One identifier under one policy set as this process sees it: the units it holds, how fast it spends them. */
interface Entry {
  readonly key: string;
  readonly set: PolicySet;
  /** Units leased and not yet spent. */
  units: number;
  /** Local time at which the lease lapses and its unused units go back. */
  expires: number;
  /** Redis time of the earliest window end the units were charged in: past it, they are not returned. */
  deadline: number;
  /** Whether the lease lapses at a window's end, where its unused units are worth nothing. */
  endsWithWindow: boolean;
  /** Whether unused units may go back: fixed windows only (see `#giveBack`). */
  readonly returnable: boolean;
  /** The grant's answer, from which decisions made from the lease report their reset. */
  grant: readonly PolicyResult[];
  /** Local time the last lease was asked for (a lower bound of when Redis charged it). */
  since: number;
  /** Units spent since then: the local rate that sizes the next lease. */
  used: number;
  lastSeen: number;
  /** Decisions waiting for a lease asked for and not yet answered. */
  waiting: Waiter[] | undefined;
  /** The timer that gives the units back at the lease's end. */
  timer: unknown;
}

/** What the leases know of a policy set: its lease lifetime (undefined: not leasable) and identity. */
interface SetInfo {
  readonly life: number | undefined;
  /**
   * The set's policy ids, which name its state in Redis and change with any parameter: a lease is of an
   * identifier under these, so two limiters with other policies on one store never share one, and a
   * `configure()` that changes a policy leaves the old leases to no decision (they lapse at their end).
   */
  readonly id: string;
}

const LEASABLE = new Set(['fixed-window', 'token-bucket', 'gcra']);

/**
 * Whether a set may be leased, and for how long: fixed windows and token buckets (GCRA) only. A sliding
 * window log and a concurrency limit keep the exact path; a sliding window counter too, since its weighted
 * previous window would count leased units in a window they were not spent in.
 *
 * A bucket's lease lives at most the time it takes to refill a tenth of its burst, so leasing widens a burst
 * by at most a tenth (rate x lifetime). A window's lease lives at most a tenth of the window, and never
 * past its end (see `#renew`): with leases sized to cover one lifetime, processes drain the window at
 * their own rates, and the one that asks first cannot hold most of it while others are refused.
 */
export function lifetimeOf(set: PolicySet, lifetime: number): number | undefined {
  let life = lifetime;
  for (const p of set.policies) {
    if (!LEASABLE.has(p.algorithm)) return undefined;
    const tenth = p.algorithm === 'fixed-window' ? p.window / 10 : (p.window * p.burst) / (10 * p.limit);
    life = Math.min(life, Math.floor(tenth));
  }
  return life >= 1 ? life : undefined;
}

/**
 * Quota leases: a process that sees an identifier often takes a slice of its quota in one atomic script call
 * (charged in Redis when taken), then decides from it locally until it is spent or lapses; a window's unused
 * units go back when it lapses. What Redis has charged bounds what every process admits together: never more than
 * the exact limit for a fixed window, a burst wider by at most rate x lifetime for a token bucket.
 *
 * Sizes adapt: an identifier seen once takes no lease; then each lease asks for what this process spent in
 * one lifetime at its last rate, up to `maxUnits`; the script grants at most a quarter of what is left, so
 * near the limit grants shrink to nothing and the last units are decided one by one, in Redis.
 * A process that stops holding a lease loses at most that lease: units charged, never admitted.
 */
export class Leases {
  /** By set id, then identifier (the id holds no newline, so `id\nkey` is injective). */
  readonly #entries = new Map<string, Entry>();
  readonly #sets = new WeakMap<PolicySet, SetInfo>();
  /** Give-backs under way, so `close()` can wait for them. */
  readonly #pending = new Set<Promise<unknown>>();
  #sweep: unknown;
  #stopped = false;

  constructor(
    private readonly settings: LeaseSettings,
    private readonly store: LeaseStore,
    private readonly stats: LeaseStats,
  ) {
    this.#armSweep();
  }

  #info(set: PolicySet): SetInfo {
    let info = this.#sets.get(set);
    if (info === undefined) {
      info = {
        life: lifetimeOf(set, this.settings.lifetime),
        id: set.policies.map((p) => p.id).join(','),
      };
      this.#sets.set(set, info);
    }
    return info;
  }

  /** Whether decisions for this set go through leases. */
  covers(set: PolicySet): boolean {
    return this.#info(set).life !== undefined;
  }

  /** A consume decision for a covered set: from the lease when it holds enough, else from Redis. */
  take(key: string, set: PolicySet, cost: number): MaybePromise<readonly PolicyResult[]> {
    const now = this.settings.timers.now();
    const name = `${this.#info(set).id}\n${key}`;
    const entry = this.#entries.get(name);
    if (entry === undefined) {
      // Seen once: no lease yet, only the time, from which the next sighting reads a rate.
      if (this.#entries.size < this.settings.maxKeys && !this.#stopped) {
        this.#entries.set(name, {
          key,
          set,
          returnable: set.policies.every((p) => p.algorithm === 'fixed-window'),
          units: 0,
          expires: 0,
          deadline: 0,
          endsWithWindow: false,
          grant: [],
          since: now,
          used: cost,
          lastSeen: now,
          waiting: undefined,
          timer: undefined,
        });
      }
      return this.store.call(key, set, 'consume', cost).then((r) => r.results);
    }
    entry.lastSeen = now;
    if (entry.units > 0 && now >= entry.expires) this.#giveBack(entry);
    // Units held, and enough: a cost of 0 on an identifier holding none asks Redis like any other.
    if (entry.units > 0 && entry.units >= cost) return this.#spend(entry, cost, now);
    if (entry.waiting !== undefined) {
      const waiting = entry.waiting;
      return new Promise((resolve) => waiting.push({ cost, resolve }));
    }
    return this.#renew(entry, cost, now);
  }

  /**
   * Gives back every lease's unused units, and stops taking leases: resolves when Redis has them (or
   * could not be reached: they are then lost, as a process that dies loses its lease). Never rejects.
   */
  async close(): Promise<void> {
    this.#stopped = true;
    this.settings.timers.clearTimeout(this.#sweep);
    for (const entry of this.#entries.values()) if (entry.units > 0) this.#giveBack(entry);
    await Promise.all(this.#pending);
  }

  /** Lapsed leases give their units back (a backstop: each lease's own timer does it at its end); identifiers idle for two lifetimes are forgotten. */
  sweep(): void {
    const now = this.settings.timers.now();
    for (const [name, entry] of this.#entries) {
      if (entry.waiting !== undefined) continue;
      if (entry.units > 0 && now >= entry.expires) this.#giveBack(entry);
      if (entry.units === 0 && now - entry.lastSeen >= 2 * this.settings.lifetime) this.#entries.delete(name);
    }
  }

  #armSweep(): void {
    if (this.#stopped) return;
    this.#sweep = this.settings.timers.setTimeout(() => {
      this.sweep();
      this.#armSweep();
    }, this.settings.lifetime);
  }

  #spend(entry: Entry, cost: number, now: number): readonly PolicyResult[] {
    entry.units -= cost;
    entry.used += cost;
    this.stats.localDecisions++;
    // `remaining` is what this process still holds: a lower bound of the quota left, never more than it.
    return entry.grant.map((g) => ({
      allowed: true,
      remaining: entry.units,
      resetAt: g.resetAt,
      retryAfter: 0,
      resetAfter: Math.max(0, g.resetAfter - (now - entry.since)),
    }));
  }

  #renew(entry: Entry, cost: number, now: number): Promise<readonly PolicyResult[]> {
    // Units left over (fewer than this cost) go back first: a lease is one grant, with one lifetime.
    if (entry.units > 0) this.#giveBack(entry);
    const { key, set } = entry;
    const rate = entry.used / Math.max(1, now - entry.since);
    const life = this.#info(set).life!;
    const ask = Math.min(this.settings.maxUnits, Math.max(1, Math.ceil(rate * life)));
    entry.since = now;
    entry.used = 0;
    const waiting: Waiter[] = [];
    entry.waiting = waiting;
    // After close(), no lease: the decision is one exact call, and there is nothing left to give back.
    const mode = this.#stopped ? 'consume' : 'lease';
    return this.store
      .call(key, set, mode, cost, mode === 'lease' ? String(ask) : undefined)
      .then(({ results, granted }) => {
        entry.waiting = undefined;
        const outage = results.some((r) => r.outage !== undefined);
        const allowed = !outage && results.every((r) => r.allowed);
        if (allowed) {
          entry.used += cost;
          if (granted > 0) this.#hold(entry, results, granted, now, life);
        }
        for (const w of waiting) {
          // In an outage each waiting decision is the outage policy's own (charged in the fallback store):
          // sharing the first one's answer would admit them all for the price of one.
          if (outage) w.resolve(this.store.degrade(key, set, w.cost));
          else if (!allowed && w.cost >= cost) w.resolve(results);
          else w.resolve(this.take(key, set, w.cost));
        }
        return results.map((r) => (allowed && granted > 0 ? { ...r, remaining: r.remaining + granted } : r));
      });
  }

  /** Holds a grant until the lease's end, when a timer of its own gives the unused units back. */
  #hold(entry: Entry, results: readonly PolicyResult[], granted: number, now: number, life: number): void {
    this.stats.leases++;
    this.stats.leasedUnits += granted;
    entry.units = granted;
    entry.grant = results;
    let expires = now + life;
    let deadline = Number.MAX_SAFE_INTEGER;
    entry.endsWithWindow = false;
    entry.set.policies.forEach((p, i) => {
      if (p.algorithm !== 'fixed-window') return;
      // A window's lease lapses by the window's end, counted from when it was asked for: Redis
      // charged it later than that, so the lease ends no later than the window.
      const end = now + results[i]!.resetAfter;
      if (end <= expires) {
        expires = end;
        entry.endsWithWindow = true;
      }
      deadline = Math.min(deadline, results[i]!.resetAt);
    });
    entry.expires = expires;
    entry.deadline = deadline;
    const timers = this.settings.timers;
    timers.clearTimeout(entry.timer);
    entry.timer = timers.setTimeout(
      () => {
        entry.timer = undefined;
        if (entry.units > 0 && entry.waiting === undefined) this.#giveBack(entry);
      },
      Math.max(0, expires - timers.now()),
    );
  }

  /**
   * Unused units go back into the windows they were charged in, while those are open. A bucket's do not:
   * given back later, they would bring refill the bucket could not have kept while full (a bucket kept
   * below full by a lease's debt accrues what a full one wastes), and widen its burst by that much. They
   * count as spent; leases are sized to the local rate and live a tenth of a refill, so few lapse unused.
   */
  #giveBack(entry: Entry): void {
    const units = entry.units;
    entry.units = 0;
    this.settings.timers.clearTimeout(entry.timer);
    entry.timer = undefined;
    if (!entry.returnable || (entry.endsWithWindow && this.settings.timers.now() >= entry.expires)) {
      this.stats.lapsedUnits += units;
      return;
    }
    this.stats.returnedUnits += units;
    const back = this.store.call(entry.key, entry.set, 'unlease', units, String(entry.deadline));
    this.#pending.add(back);
    const done = () => this.#pending.delete(back);
    back.then(done, done);
  }
}

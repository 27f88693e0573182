import type { Outcome, PolicyResult } from '../core/algorithms/types.js';
import { systemClock } from '../core/clock.js';
import { invalidOption } from '../core/errors.js';
import type { Policy, PolicySet } from '../core/policy.js';
import type { StoreMode, SyncStore } from './store.js';

export interface MemoryStoreOptions {
  /** Source of time (integer ms); inject one in tests. Default: `Date.now`. */
  readonly clock?: { now(): number };
  /**
   * Most identifiers kept at once. Past it, an identifier not used since the eviction hand last passed is
   * dropped (second-chance approximation of least-recently-used). Default: unbounded, relying on expiry.
   */
  readonly maxKeys?: number;
}

interface Entry {
  readonly key: string;
  set: PolicySet;
  states: unknown[];
  /** When every state is back to empty: from then on the entry means nothing and may be dropped. */
  expiresAt: number;
  /** Second-chance bit for eviction. */
  used: boolean;
}

/** Entries examined per insertion while reclaiming expired state: amortised O(1), no timers. */
const SWEEP_STEPS = 2;
/** Compact the hand's queue once this many slots have been consumed from its front. */
const COMPACT_AFTER = 4096;

/**
 * The embedded default store: state in a `Map`, decided synchronously by the pure algorithms.
 *
 * O(1) per decision for every algorithm but the sliding-window log. No timer per key: expired state is
 * ignored when read and reclaimed a few entries at a time as new keys arrive, so a flood of unique keys
 * holds memory for the keys live within their windows; `maxKeys` bounds it outright. State lives in this
 * process only: several processes need a shared store such as `floodgate/redis`.
 */
export class MemoryStore implements SyncStore {
  readonly #map = new Map<string, Entry>();
  /**
   * The clock hand: entries in the order it will visit them. Iterating the Map itself would be O(deleted
   * slots) per new iterator in V8, so the hand keeps its own queue; a slot whose entry left the Map is
   * skipped when reached.
   */
  #queue: Entry[] = [];
  #head = 0;
  readonly #clock: { now(): number };
  readonly #maxKeys: number;

  constructor(options: MemoryStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('MemoryStore options', 'an object', options, 'type');
    }
    const { clock = systemClock, maxKeys = Number.POSITIVE_INFINITY } = options;
    if (typeof clock?.now !== 'function')
      throw invalidOption('clock', 'an object with a now() method', clock, 'type');
    if (maxKeys !== Number.POSITIVE_INFINITY && (!Number.isSafeInteger(maxKeys) || maxKeys < 1)) {
      throw invalidOption('maxKeys', 'a positive integer', maxKeys);
    }
    this.#clock = clock;
    this.#maxKeys = maxKeys;
  }

  /** Number of identifiers held, including expired ones not yet reclaimed. */
  get size(): number {
    return this.#map.size;
  }

  applySync(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): readonly PolicyResult[] {
    const now = this.#clock.now();
    const entry = this.#map.get(key);
    let states: unknown[] | undefined;
    if (entry !== undefined && entry.expiresAt > now) {
      entry.used = true;
      states = entry.set === set ? entry.states : remap(entry, set);
    }
    const policies = set.policies;
    if (mode === 'refund') return this.#refund(key, entry, set, states, now, cost, lease);
    if (policies.length === 1) {
      const p = policies[0]!;
      const prev = states === undefined ? undefined : states[0];
      const out = p.impl.consume(prev, now, cost, p, lease);
      if (mode === 'consume' && out.allowed && out.state !== prev) {
        if (states !== undefined) {
          // A live entry: update it in place, so that nothing allocated by this call outlives it.
          states[0] = keep(p, prev, out.state);
          entry!.expiresAt = out.expiresAt;
        } else {
          this.#commit(key, entry, set, [out.state], out.expiresAt, now);
        }
      }
      return [out];
    }
    const results: Outcome<unknown>[] = new Array(policies.length);
    let allowed = true;
    let expiresAt = now;
    for (let i = 0; i < policies.length; i++) {
      const p = policies[i]!;
      const out = p.impl.consume(states?.[i], now, cost, p, lease);
      results[i] = out;
      allowed &&= out.allowed;
      if (out.expiresAt > expiresAt) expiresAt = out.expiresAt;
    }
    if (!allowed) {
      // All or nothing: a refusal by any policy charges none of them, so the policies that would have
      // allowed report their state as it stays (a zero-cost look), not as if charged.
      for (let i = 0; i < policies.length; i++) {
        const p = policies[i]!;
        if (results[i]!.allowed) results[i] = p.impl.consume(states?.[i], now, 0, p, lease);
      }
    }
    if (mode === 'consume' && allowed) {
      this.#commit(
        key,
        entry,
        set,
        results.map((r) => r.state),
        expiresAt,
        now,
      );
    }
    return results;
  }

  async apply(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): Promise<readonly PolicyResult[]> {
    return this.applySync(key, set, cost, mode, lease);
  }

  resetSync(key: string, _set?: PolicySet): void {
    this.#map.delete(key);
  }

  async reset(key: string, _set?: PolicySet): Promise<void> {
    this.#map.delete(key);
  }

  /** Forgets every identifier. */
  clear(): void {
    this.#map.clear();
    this.#queue = [];
    this.#head = 0;
  }

  #refund(
    key: string,
    entry: Entry | undefined,
    set: PolicySet,
    states: unknown[] | undefined,
    now: number,
    cost: number,
    lease: string | undefined,
  ): readonly PolicyResult[] {
    const policies = set.policies;
    const next = policies.map((p, i) => p.impl.refund(states?.[i], now, cost, p, lease));
    const results = policies.map((p, i) => p.impl.consume(next[i], now, 0, p));
    let expiresAt = now;
    for (const r of results) if (r.expiresAt > expiresAt) expiresAt = r.expiresAt;
    if (next.every((s) => s === undefined)) this.#map.delete(key);
    else this.#commit(key, entry, set, next, expiresAt, now);
    return results;
  }

  #commit(
    key: string,
    entry: Entry | undefined,
    set: PolicySet,
    states: unknown[],
    expiresAt: number,
    now: number,
  ): void {
    if (entry !== undefined) {
      if (entry.set === set) {
        const kept = entry.states;
        for (let i = 0; i < states.length; i++) kept[i] = keep(set.policies[i]!, kept[i], states[i]);
      } else {
        entry.set = set;
        entry.states = states;
      }
      entry.expiresAt = expiresAt;
      entry.used = true;
      return;
    }
    if (expiresAt <= now) return;
    const created: Entry = { key, set, states, expiresAt, used: false };
    this.#map.set(key, created);
    this.#queue.push(created);
    this.#sweep(now);
  }

  /**
   * Called once per new key: a clock hand over the oldest entries. Expired entries are dropped; live ones
   * go to the back, losing their second-chance bit; past `maxKeys`, the first entry without that bit is
   * evicted. Each call examines a few entries (more only while over `maxKeys`), so the cost is amortised O(1).
   */
  #sweep(now: number): void {
    const map = this.#map;
    const queue = this.#queue;
    let steps = SWEEP_STEPS;
    while (this.#head < queue.length) {
      const over = map.size > this.#maxKeys;
      if (steps-- <= 0 && !over) break;
      const entry = queue[this.#head++]!;
      if (map.get(entry.key) !== entry) continue; // reset, refunded to empty, or replaced since queued
      if (entry.expiresAt <= now || (over && !entry.used)) {
        map.delete(entry.key);
        continue;
      }
      entry.used = false;
      queue.push(entry);
    }
    if (this.#head >= COMPACT_AFTER && this.#head * 2 >= queue.length) {
      this.#queue = queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** The state object to hold: the store's own, updated in place where the algorithm allows it. */
function keep(policy: Policy, held: unknown, next: unknown): unknown {
  if (held === undefined || next === undefined || policy.impl.assign === undefined) return next;
  policy.impl.assign(held, next);
  return held;
}

/** Carries state across a change of the key's policies: kept for policies whose id is unchanged. */
function remap(entry: Entry, set: PolicySet): unknown[] {
  const old = entry.set.policies;
  const states = set.policies.map((p) => {
    const i = old.findIndex((o) => o.id === p.id);
    return i === -1 ? undefined : entry.states[i];
  });
  entry.set = set;
  entry.states = states;
  return states;
}

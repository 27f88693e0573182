import { type FlatAlgorithm, newResultSlot } from '../core/algorithms/flat.js';
import type { PolicyNumbers, PolicyResult } from '../core/algorithms/types.js';
import { systemClock } from '../core/clock.js';
import { invalidOption, knownKeys } from '../core/errors.js';
import type { PolicySet } from '../core/policy.js';
import { decideGroup, type GroupMember } from './group.js';
import { type Entry, KeyTable } from './memory/key-table.js';
import { copyBlock, type StateLayout, StateLoader } from './state-loader.js';
import type { Store, StoreMode } from './store.js';

export interface MemoryStoreOptions {
  /** Source of time (integer ms); inject one in tests. Default: `Date.now`. */
  readonly clock?: { now(): number };
  /**
   * Most identifiers kept at once. Past it, the least recently used identifier is dropped (exact LRU: any
   * decision, look or refund on a key counts as a use). Default: unbounded, relying on expiry.
   */
  readonly maxKeys?: number;
}

/** A policy's result as its own object (the slot is reused), decided at `now` on the store's clock. */
function resultOf(out: PolicyNumbers, now: number): PolicyResult {
  return {
    allowed: out.allowed,
    remaining: out.remaining,
    resetAt: out.resetAt,
    retryAfter: out.retryAfter,
    resetAfter: out.resetAt - now,
  };
}

/**
 * The memory store's shortcuts, for the Limiter alone: a set of one policy answered in the store's reused
 * result slot (read it at once), and a consume that answers only whether it was allowed.
 */
export interface MemoryFastPath {
  applySync: NonNullable<Store['applySync']>;
  one(key: string, set: PolicySet, cost: number, mode: 'consume' | 'peek'): PolicyResult | undefined;
  allow(key: string, set: PolicySet, cost: number): boolean;
}

/** The key of `MemoryStore`'s fast-path member: a symbol, so it stays out of the store's public surface. */
export const fastPath: unique symbol = Symbol('floodgate.memoryFastPath');

/**
 * The embedded default store: state in a `Map`, decided synchronously by the pure algorithms.
 *
 * O(1) per decision for every algorithm but the sliding-window log. No timer per key: expired state is
 * ignored when read and reclaimed a few entries at a time as new keys arrive, so a flood of unique keys
 * holds memory for the keys live within their windows; `maxKeys` bounds it outright. State lives in this
 * process only: several processes need a shared store such as `floodgate/redis`.
 */
export class MemoryStore implements Store {
  readonly #table: KeyTable;
  readonly #loader: StateLoader<Entry>;
  readonly #out = newResultSlot();
  readonly #clock: { now(): number };
  /** The shortcuts a Limiter over this store takes, picked once in `limiter/store-path.ts`. */
  readonly [fastPath]: MemoryFastPath = {
    applySync: (key, set, cost, mode, lease) => this.applySync(key, set, cost, mode, lease),
    one: (key, set, cost, mode) => this.#one(key, set, cost, mode),
    allow: (key, set, cost) => this.#allow(key, set, cost),
  };

  constructor(options: MemoryStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('MemoryStore options', 'an object', options, 'type');
    }
    knownKeys(options, ['clock', 'maxKeys']);
    const { clock = systemClock, maxKeys = Number.POSITIVE_INFINITY } = options;
    if (typeof clock?.now !== 'function')
      throw invalidOption('clock', 'an object with a now() method', clock, 'type');
    if (maxKeys !== Number.POSITIVE_INFINITY && (!Number.isSafeInteger(maxKeys) || maxKeys < 1)) {
      throw invalidOption('maxKeys', 'a positive integer', maxKeys);
    }
    this.#clock = clock;
    this.#table = new KeyTable(maxKeys);
    this.#loader = new StateLoader(this.#table);
  }

  /** Number of identifiers held, including expired ones not yet reclaimed. */
  get size(): number {
    return this.#table.size;
  }

  applySync(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): readonly PolicyResult[] {
    if (mode !== 'refund') {
      const one = this.#one(key, set, cost, mode);
      if (one !== undefined) return [resultOf(one, one.resetAt - one.resetAfter)]; // the slot's own now
    }
    const now = this.#clock.now();
    const layout = this.#loader.layout(set);
    const entry = this.#loader.load(key, layout, now);
    if (mode === 'refund') return this.#refund(entry, layout, now, cost, lease);
    return this.#applyMany(key, entry, layout, now, cost, mode, lease);
  }

  /**
   * `applySync` for a set of one policy whose state is numbers, answering in the store's result slot (valid
   * until its next call) instead of new objects: a Limiter builds its decision from it.
   */
  #one(key: string, set: PolicySet, cost: number, mode: 'consume' | 'peek'): PolicyResult | undefined {
    const layout = this.#loader.layout(set);
    const single = layout.single;
    if (single === undefined) return undefined;
    const now = this.#clock.now();
    const entry = this.#loader.load(key, layout, now);
    this.#decideOne(key, entry, layout, single, now, cost, mode);
    return this.#out;
  }

  /**
   * `applySync` in consume mode, answering only whether the request is allowed: no result objects, for
   * `Limiter.allowSync`. One policy whose state is numbers; anything else goes the general way.
   */
  #allow(key: string, set: PolicySet, cost: number): boolean {
    const layout = this.#loader.layout(set);
    const single = layout.single;
    if (single === undefined || single.admit === undefined) {
      for (const result of this.applySync(key, set, cost, 'consume')) if (!result.allowed) return false;
      return true;
    }
    const policy = set.policies[0]!;
    const now = this.#clock.now();
    const entry = this.#loader.load(key, layout, now);
    if (entry === undefined) {
      const scratch = this.#loader.scratch;
      const expiresAt = single.admit(layout.empty, 1, now, cost, policy, scratch, 1);
      if (expiresAt < 0) return false;
      if (expiresAt > now) this.#table.create(key, layout, undefined, scratch, expiresAt, now);
      return true;
    }
    const slab = this.#table.numbers;
    const at = entry.at;
    const expiresAt = single.admit(slab, at + 1, now, cost, policy, slab, at + 1);
    if (expiresAt < 0) return false;
    slab[at] = expiresAt;
    return true;
  }

  /** The common case, written out: one policy whose state is numbers, decided in place into `#out`. */
  #decideOne(
    key: string,
    entry: Entry | undefined,
    layout: StateLayout,
    single: FlatAlgorithm,
    now: number,
    cost: number,
    mode: 'consume' | 'peek',
  ): void {
    const p = layout.set.policies[0]!;
    const out = this.#out;
    if (entry === undefined) {
      const scratch = this.#loader.scratch;
      single.decide(layout.empty, 1, now, cost, p, out, scratch, 1);
      if (mode === 'consume' && out.allowed && out.expiresAt > now) {
        this.#table.create(key, layout, undefined, scratch, out.expiresAt, now);
      }
    } else if (mode === 'consume') {
      const slab = this.#table.numbers;
      single.decide(slab, entry.at + 1, now, cost, p, out, slab, entry.at + 1);
      if (out.allowed) slab[entry.at] = out.expiresAt;
    } else {
      single.decide(this.#table.numbers, entry.at + 1, now, cost, p, out, this.#loader.scratch, 1);
    }
    out.resetAfter = out.resetAt - now;
  }

  applyGroup(members: readonly GroupMember[]): (readonly PolicyResult[])[] {
    return decideGroup(members, (m, cost, mode) => this.applySync(m.key, m.set, cost, mode));
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

  async reset(key: string, _set?: PolicySet): Promise<void> {
    this.#table.forget(key);
  }

  /** Forgets every identifier. */
  clear(): void {
    this.#table.clear();
  }

  /** Several policies (or one whose state is an object): decided together, charged all or nothing. */
  #applyMany(
    key: string,
    entry: Entry | undefined,
    layout: StateLayout,
    now: number,
    cost: number,
    mode: StoreMode,
    lease: string | undefined,
  ): readonly PolicyResult[] {
    const policies = layout.set.policies;
    const out = this.#out;
    const scratch = this.#loader.scratch;
    const n = policies.length;
    const source = entry === undefined ? layout.empty : this.#table.numbers;
    const base = entry === undefined ? 0 : entry.at;
    const held = entry?.objects;
    const objects: unknown[] | undefined = layout.hasObjects ? new Array(n) : undefined;
    const results: PolicyResult[] = new Array(n);
    let allowed = true;
    let expiresAt = now;
    const decideOne = (i: number, c: number) => {
      const p = policies[i]!;
      const flat = layout.flats[i];
      if (flat !== undefined) {
        const offset = layout.offsets[i]!;
        flat.decide(source, base + offset, now, c, p, out, scratch, offset);
        results[i] = resultOf(out, now);
        return out.expiresAt;
      }
      const outcome = p.impl.consume(held?.[i], now, c, p, lease);
      results[i] = resultOf(outcome, now);
      objects![i] = outcome.state;
      return outcome.expiresAt;
    };
    for (let i = 0; i < n; i++) {
      const expires = decideOne(i, cost);
      allowed &&= results[i]!.allowed;
      if (expires > expiresAt) expiresAt = expires;
    }
    if (!allowed) {
      // All or nothing: a refusal by any policy charges none of them, so the policies that would have
      // allowed report their state as it stays (a zero-cost look), not as if charged.
      for (let i = 0; i < n; i++) if (results[i]!.allowed) decideOne(i, 0);
      return results;
    }
    if (mode !== 'consume') return results;
    if (entry === undefined) {
      if (expiresAt > now) this.#table.create(key, layout, objects, scratch, expiresAt, now);
      return results;
    }
    scratch[0] = expiresAt;
    copyBlock(this.#table.numbers, entry.at, scratch, layout.size);
    entry.objects = objects;
    return results;
  }

  #refund(
    entry: Entry | undefined,
    layout: StateLayout,
    now: number,
    cost: number,
    lease: string | undefined,
  ): readonly PolicyResult[] {
    const policies = layout.set.policies;
    const out = this.#out;
    const scratch = this.#loader.scratch;
    const source = entry === undefined ? layout.empty : this.#table.numbers;
    const base = entry === undefined ? 0 : entry.at;
    const objects: unknown[] | undefined = layout.hasObjects ? [] : undefined;
    let held = false;
    let expiresAt = now;
    const results = policies.map((p, i): PolicyResult => {
      const flat = layout.flats[i];
      if (flat !== undefined) {
        const at = base + layout.offsets[i]!;
        // A missing entry is the empty state, which a refund leaves empty: nothing to write.
        if (entry !== undefined) held = flat.refund(source, at, now, cost, p) || held;
        flat.decide(source, at, now, 0, p, out, scratch, layout.offsets[i]!);
        if (out.expiresAt > expiresAt) expiresAt = out.expiresAt;
        return resultOf(out, now);
      }
      const state = p.impl.refund(entry?.objects?.[i], now, cost, p, lease);
      objects![i] = state;
      held ||= state !== undefined;
      const outcome = p.impl.consume(state, now, 0, p);
      if (outcome.expiresAt > expiresAt) expiresAt = outcome.expiresAt;
      return resultOf(outcome, now);
    });
    if (entry !== undefined) {
      if (!held) this.#table.drop(entry);
      else {
        entry.objects = objects;
        this.#table.numbers[entry.at] = expiresAt;
      }
    }
    return results;
  }
}

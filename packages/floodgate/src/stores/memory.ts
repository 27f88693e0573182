import { clear, type FlatAlgorithm, newResultSlot } from '../core/algorithms/flat.js';
import type { PolicyNumbers, PolicyResult } from '../core/algorithms/types.js';
import { systemClock } from '../core/clock.js';
import { invalidOption, knownKeys } from '../core/errors.js';
import type { PolicySet } from '../core/policy.js';
import { decideGroup, type GroupMember } from './group.js';
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

interface Entry {
  readonly key: string;
  layout: Layout;
  /**
   * Offset of the key's block in the store's array: when the entry expires (when every state is back to
   * empty, so it means nothing and may be dropped), then the flat policies' states. -1 once dropped.
   */
  at: number;
  /** States of the policies that are not flat (sliding log, concurrency), by policy index. */
  objects: unknown[] | undefined;
  /** Neighbours in the recency list (kept only under `maxKeys`): towards the least and the most recent. */
  older: Entry | undefined;
  newer: Entry | undefined;
}

/** Where one policy set keeps its states: numbers in the key's block, or objects. */
interface Layout {
  readonly set: PolicySet;
  /** Per policy: its flat form, or undefined when its state is an object. */
  readonly flats: readonly (FlatAlgorithm | undefined)[];
  /** Per policy: the offset of its numbers in the key's block (-1 for an object state). */
  readonly offsets: readonly number[];
  /** Numbers per key: the expiry, then the states. */
  readonly size: number;
  readonly hasObjects: boolean;
  /** A block holding every policy's empty state. */
  readonly empty: Float64Array;
  /** The flat form of the set's only policy, when it has one policy and that one is flat. */
  readonly single: FlatAlgorithm | undefined;
}

function layoutOf(set: PolicySet): Layout {
  const flats = set.policies.map((p) => p.impl.flat);
  const offsets: number[] = [];
  let size = 1;
  for (const flat of flats) {
    offsets.push(flat === undefined ? -1 : size);
    size += flat?.slots ?? 0;
  }
  const empty = new Float64Array(size);
  flats.forEach((flat, i) => {
    if (flat !== undefined) clear(empty, offsets[i]!, flat.slots);
  });
  const single = flats.length === 1 ? flats[0] : undefined;
  return { set, flats, offsets, size, hasObjects: flats.includes(undefined), empty, single };
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
 * The memory store's shortcuts, for the Limiter alone (it picks them once, when it is made over a memory
 * store): a set of one policy answered in the store's reused result slot (read it at once), and a consume
 * that answers only whether it was allowed. Nothing else needs to know they exist.
 */
export interface MemoryFastPath {
  applySync: NonNullable<Store['applySync']>;
  one(key: string, set: PolicySet, cost: number, mode: 'consume' | 'peek'): PolicyResult | undefined;
  allow(key: string, set: PolicySet, cost: number): boolean;
}

let fastPathOf: (store: MemoryStore) => MemoryFastPath;

/** The shortcuts of `store` when it is a memory store. */
export function memoryFastPath(store: Store): MemoryFastPath | undefined {
  return store instanceof MemoryStore ? fastPathOf(store) : undefined;
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
export class MemoryStore implements Store {
  readonly #map = new Map<string, Entry>();
  /**
   * The clock hand: entries in the order it will visit them. Iterating the Map itself would be O(deleted
   * slots) per new iterator in V8, so the hand keeps its own queue; a slot whose entry left the Map is
   * skipped when reached.
   */
  #queue: Entry[] = [];
  #head = 0;
  /**
   * Every key's numbers, in one array: an entry points at its block. Blocks of dropped keys are reused
   * (a free list per block size), so the array grows to the peak number of live keys and no further.
   */
  #slab = new Float64Array(1024);
  #top = 0;
  #free: number[][] = [];
  /** Scratch for states being decided, before all-or-nothing lets them be written. */
  #next = new Float64Array(16);
  readonly #out = newResultSlot();
  #lastSet: PolicySet | undefined;
  #lastLayout: Layout | undefined;
  readonly #layouts = new WeakMap<PolicySet, Layout>();
  readonly #clock: { now(): number };
  readonly #maxKeys: number;
  readonly #bounded: boolean;
  /** The recency list's ends, under `maxKeys`: the least recently used entry is the next to go. */
  #oldest: Entry | undefined;
  #newest: Entry | undefined;

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
    this.#maxKeys = maxKeys;
    this.#bounded = maxKeys !== Number.POSITIVE_INFINITY;
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
    if (mode !== 'refund') {
      const one = this.#one(key, set, cost, mode);
      if (one !== undefined) return [resultOf(one, one.resetAt - one.resetAfter)]; // the slot's own now
    }
    const now = this.#clock.now();
    const layout = this.#layoutOf(set);
    const entry = this.#map.get(key);
    if (entry !== undefined) this.#ready(entry, layout, now);
    if (mode === 'refund') return this.#refund(entry, layout, now, cost, lease);
    return this.#applyMany(key, entry, layout, now, cost, mode, lease);
  }

  /**
   * `applySync` for a set of one policy whose state is numbers, answering in the store's result slot (valid
   * until its next call) instead of new objects: a Limiter builds its decision from it.
   */
  #one(key: string, set: PolicySet, cost: number, mode: 'consume' | 'peek'): PolicyResult | undefined {
    const layout = this.#layoutOf(set);
    const single = layout.single;
    if (single === undefined) return undefined;
    const now = this.#clock.now();
    const entry = this.#map.get(key);
    if (entry !== undefined) this.#ready(entry, layout, now);
    this.#decideOne(key, entry, layout, single, now, cost, mode);
    return this.#out;
  }

  /**
   * `applySync` in consume mode, answering only whether the request is allowed: no result objects, for
   * `Limiter.allowSync`. One policy whose state is numbers; anything else goes the general way.
   */
  #allow(key: string, set: PolicySet, cost: number): boolean {
    const layout = this.#layoutOf(set);
    const single = layout.single;
    if (single === undefined || single.admit === undefined) {
      for (const result of this.applySync(key, set, cost, 'consume')) if (!result.allowed) return false;
      return true;
    }
    const policy = set.policies[0]!;
    const now = this.#clock.now();
    const entry = this.#map.get(key);
    if (entry === undefined) {
      const expiresAt = single.admit(layout.empty, 1, now, cost, policy, this.#next, 1);
      if (expiresAt < 0) return false;
      if (expiresAt > now) this.#create(key, layout, undefined, expiresAt, now);
      return true;
    }
    this.#ready(entry, layout, now);
    const slab = this.#slab;
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
    layout: Layout,
    single: FlatAlgorithm,
    now: number,
    cost: number,
    mode: 'consume' | 'peek',
  ): void {
    const p = layout.set.policies[0]!;
    const out = this.#out;
    if (entry === undefined) {
      single.decide(layout.empty, 1, now, cost, p, out, this.#next, 1);
      if (mode === 'consume' && out.allowed && out.expiresAt > now) {
        this.#create(key, layout, undefined, out.expiresAt, now);
      }
    } else if (mode === 'consume') {
      const slab = this.#slab;
      single.decide(slab, entry.at + 1, now, cost, p, out, slab, entry.at + 1);
      if (out.allowed) slab[entry.at] = out.expiresAt;
    } else {
      single.decide(this.#slab, entry.at + 1, now, cost, p, out, this.#next, 1);
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
    const entry = this.#map.get(key);
    if (entry !== undefined) this.#drop(entry);
  }

  static {
    fastPathOf = (store) => ({
      applySync: (key, set, cost, mode, lease) => store.applySync(key, set, cost, mode, lease),
      one: (key, set, cost, mode) => store.#one(key, set, cost, mode),
      allow: (key, set, cost) => store.#allow(key, set, cost),
    });
  }

  /** Forgets every identifier. */
  clear(): void {
    this.#map.clear();
    this.#queue = [];
    this.#head = 0;
    this.#slab = new Float64Array(1024);
    this.#top = 0;
    this.#free = [];
    this.#oldest = this.#newest = undefined;
  }

  /** Several policies (or one whose state is an object): decided together, charged all or nothing. */
  #applyMany(
    key: string,
    entry: Entry | undefined,
    layout: Layout,
    now: number,
    cost: number,
    mode: StoreMode,
    lease: string | undefined,
  ): readonly PolicyResult[] {
    const policies = layout.set.policies;
    const out = this.#out;
    const n = policies.length;
    const source = entry === undefined ? layout.empty : this.#slab;
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
        flat.decide(source, base + offset, now, c, p, out, this.#next, offset);
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
      if (expiresAt > now) this.#create(key, layout, objects, expiresAt, now);
      return results;
    }
    this.#next[0] = expiresAt;
    this.#write(entry.at, this.#next, layout.size);
    entry.objects = objects;
    return results;
  }

  #layoutOf(set: PolicySet): Layout {
    if (set === this.#lastSet) return this.#lastLayout!;
    let layout = this.#layouts.get(set);
    if (layout === undefined) {
      layout = layoutOf(set);
      this.#layouts.set(set, layout);
      if (layout.size > this.#next.length) this.#next = new Float64Array(layout.size);
    }
    this.#lastSet = set;
    this.#lastLayout = layout;
    return layout;
  }

  /**
   * Brings a held entry to `layout` (the key's policies may have changed) and empties it if expired. Every
   * access to a held key passes here, so this is where it becomes the most recently used.
   */
  #ready(entry: Entry, layout: Layout, now: number): void {
    if (entry.layout !== layout) this.#remap(entry, layout);
    if (this.#bounded && entry !== this.#newest) {
      this.#unlink(entry);
      this.#link(entry);
    }
    if (this.#slab[entry.at]! > now) return;
    this.#write(entry.at, layout.empty, layout.size);
    entry.objects = undefined;
  }

  /** Carries state across a change of the key's policies: kept for policies whose id is unchanged. */
  #remap(entry: Entry, layout: Layout): void {
    const old = entry.layout;
    const at = this.#alloc(layout.size);
    this.#write(at, layout.empty, layout.size);
    const slab = this.#slab;
    slab[at] = slab[entry.at]!;
    const objects: unknown[] | undefined = layout.hasObjects ? [] : undefined;
    layout.set.policies.forEach((p, i) => {
      const j = old.set.policies.findIndex((o) => o.id === p.id);
      if (j === -1) return;
      const flat = layout.flats[i];
      if (flat === undefined) objects![i] = entry.objects?.[j];
      else
        slab.copyWithin(
          at + layout.offsets[i]!,
          entry.at + old.offsets[j]!,
          entry.at + old.offsets[j]! + flat.slots,
        );
    });
    this.#release(entry);
    entry.layout = layout;
    entry.at = at;
    entry.objects = objects;
  }

  #refund(
    entry: Entry | undefined,
    layout: Layout,
    now: number,
    cost: number,
    lease: string | undefined,
  ): readonly PolicyResult[] {
    const policies = layout.set.policies;
    const out = this.#out;
    const source = entry === undefined ? layout.empty : this.#slab;
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
        flat.decide(source, at, now, 0, p, out, this.#next, layout.offsets[i]!);
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
      if (!held) this.#drop(entry);
      else {
        entry.objects = objects;
        this.#slab[entry.at] = expiresAt;
      }
    }
    return results;
  }

  /** Holds a new key whose block is in the scratch array. */
  #create(key: string, layout: Layout, objects: unknown[] | undefined, expiresAt: number, now: number): void {
    const at = this.#alloc(layout.size);
    this.#next[0] = expiresAt;
    this.#write(at, this.#next, layout.size);
    const created: Entry = { key, layout, at, objects, older: undefined, newer: undefined };
    this.#map.set(key, created);
    this.#queue.push(created);
    if (this.#bounded) {
      this.#link(created);
      while (this.#map.size > this.#maxKeys) this.#drop(this.#oldest!);
    }
    this.#sweep(now);
  }

  /** Makes `entry` the most recently used. */
  #link(entry: Entry): void {
    entry.older = this.#newest;
    entry.newer = undefined;
    if (this.#newest === undefined) this.#oldest = entry;
    else this.#newest.newer = entry;
    this.#newest = entry;
  }

  #unlink(entry: Entry): void {
    const { older, newer } = entry;
    if (older === undefined) this.#oldest = newer;
    else older.newer = newer;
    if (newer === undefined) this.#newest = older;
    else newer.older = older;
    entry.older = entry.newer = undefined;
  }

  /** Copies a block (a scratch or empty one) into the key's place in the shared array. */
  #write(at: number, block: Float64Array, size: number): void {
    const slab = this.#slab;
    for (let k = 0; k < size; k++) slab[at + k] = block[k]!;
  }

  #alloc(size: number): number {
    const reused = this.#free[size]?.pop();
    if (reused !== undefined) return reused;
    if (this.#top + size > this.#slab.length) {
      const grown = new Float64Array(this.#slab.length * 2);
      grown.set(this.#slab);
      this.#slab = grown;
    }
    const at = this.#top;
    this.#top += size;
    return at;
  }

  #release(entry: Entry): void {
    if (entry.at < 0) return;
    const size = entry.layout.size;
    const list = this.#free[size];
    if (list === undefined) this.#free[size] = [entry.at];
    else list.push(entry.at);
    entry.at = -1;
  }

  #drop(entry: Entry): void {
    this.#map.delete(entry.key);
    this.#release(entry);
    if (this.#bounded) this.#unlink(entry);
  }

  /**
   * Called once per new key: a clock hand over the entries, which drops the expired ones and sends the live
   * ones to the back. Each call examines a few entries, so reclaiming costs amortised O(1). (`maxKeys` is
   * not the hand's business: past it, the recency list names the entry to drop.)
   */
  #sweep(now: number): void {
    const map = this.#map;
    const queue = this.#queue;
    for (let steps = SWEEP_STEPS; steps > 0 && this.#head < queue.length; steps--) {
      const entry = queue[this.#head++]!;
      if (map.get(entry.key) !== entry) continue; // reset, refunded to empty, evicted or replaced since queued
      if (this.#slab[entry.at]! <= now) this.#drop(entry);
      else queue.push(entry);
    }
    if (this.#head >= COMPACT_AFTER && this.#head * 2 >= queue.length) {
      this.#queue = queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

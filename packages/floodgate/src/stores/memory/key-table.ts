import { copyBlock, type HeldStates, type StateBlocks, type StateLayout } from '../state-loader.js';

/** One identifier held by the memory store. */
export interface Entry extends HeldStates {
  readonly key: string;
  /**
   * Offset of the key's block in the table's numbers: when the entry expires (when every state is back to
   * empty, so it means nothing and may be dropped), then the flat policies' states. -1 once dropped.
   */
  at: number;
  /** Neighbours in the recency list (kept only under `maxKeys`): towards the least and the most recent. */
  older: Entry | undefined;
  newer: Entry | undefined;
}

/** Entries examined per insertion while reclaiming expired state: amortised O(1), no timers. */
const SWEEP_STEPS = 2;
/** Compact the hand's queue once this many slots have been consumed from its front. */
const COMPACT_AFTER = 4096;
const INITIAL_NUMBERS = 1024;

/**
 * The memory store's identifiers and where their states are: a `Map` of entries whose numbers live in one
 * array (a decision reads two cache lines instead of following an object graph), reused blocks, the
 * recency list that `maxKeys` evicts by, and the clock hand that reclaims expired entries. It knows nothing
 * of decisions: what the numbers mean is the layout's and the algorithms' business.
 */
export class KeyTable implements StateBlocks<Entry> {
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
  numbers = new Float64Array(INITIAL_NUMBERS);
  #top = 0;
  #free: number[][] = [];
  readonly #maxKeys: number;
  readonly #bounded: boolean;
  /** The recency list's ends, under `maxKeys`: the least recently used entry is the next to go. */
  #oldest: Entry | undefined;
  #newest: Entry | undefined;

  /** `maxKeys`: the most entries held at once (`Infinity` for no bound but expiry). */
  constructor(maxKeys: number) {
    this.#maxKeys = maxKeys;
    this.#bounded = maxKeys !== Number.POSITIVE_INFINITY;
  }

  /** Number of entries held, including expired ones not yet reclaimed. */
  get size(): number {
    return this.#map.size;
  }

  /** The key's entry, made the most recently used. */
  find(key: string): Entry | undefined {
    const entry = this.#map.get(key);
    if (entry !== undefined && this.#bounded && entry !== this.#newest) {
      this.#unlink(entry);
      this.#link(entry);
    }
    return entry;
  }

  /**
   * Holds a new key whose block (expiry left to this) is `block`; may evict the least recently used entry
   * and reclaim a few expired ones.
   */
  create(
    key: string,
    layout: StateLayout,
    objects: unknown[] | undefined,
    block: Float64Array,
    expiresAt: number,
    now: number,
  ): void {
    const at = this.alloc(layout.size);
    block[0] = expiresAt;
    copyBlock(this.numbers, at, block, layout.size);
    const created: Entry = { key, layout, at, objects, older: undefined, newer: undefined };
    this.#map.set(key, created);
    this.#queue.push(created);
    if (this.#bounded) {
      this.#link(created);
      while (this.#map.size > this.#maxKeys) this.drop(this.#oldest!);
    }
    this.#sweep(now);
  }

  /** Forgets the key, if held. */
  forget(key: string): void {
    const entry = this.#map.get(key);
    if (entry !== undefined) this.drop(entry);
  }

  drop(entry: Entry): void {
    this.#map.delete(entry.key);
    this.release(entry);
    if (this.#bounded) this.#unlink(entry);
  }

  /** Forgets every key. */
  clear(): void {
    this.#map.clear();
    this.#queue = [];
    this.#head = 0;
    this.numbers = new Float64Array(INITIAL_NUMBERS);
    this.#top = 0;
    this.#free = [];
    this.#oldest = this.#newest = undefined;
  }

  alloc(size: number): number {
    const reused = this.#free[size]?.pop();
    if (reused !== undefined) return reused;
    if (this.#top + size > this.numbers.length) {
      const grown = new Float64Array(this.numbers.length * 2);
      grown.set(this.numbers);
      this.numbers = grown;
    }
    const at = this.#top;
    this.#top += size;
    return at;
  }

  release(entry: Entry): void {
    if (entry.at < 0) return;
    const size = entry.layout.size;
    const list = this.#free[size];
    if (list === undefined) this.#free[size] = [entry.at];
    else list.push(entry.at);
    entry.at = -1;
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
      if (this.numbers[entry.at]! <= now) this.drop(entry);
      else queue.push(entry);
    }
    if (this.#head >= COMPACT_AFTER && this.#head * 2 >= queue.length) {
      this.#queue = queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** One monitored identifier of a Space-Saving summary. */
interface Counter {
  key: string;
  /** An upper bound of the identifier's true count. */
  count: number;
  /** How much of `count` may belong to identifiers it replaced: the true count is >= count - error. */
  error: number;
  /** Its place in the heap. */
  at: number;
}

/** A heavy hitter as a summary reports it: the true count lies in [count - error, count]. */
export interface HeavyHitter {
  readonly key: string;
  readonly count: number;
  readonly error: number;
}

/**
 * The Space-Saving summary (Metwally, Agrawal, El Abbadi, "Efficient computation of frequent and top-k
 * elements in data streams", 2005) over `capacity` counters: a new identifier, when all counters are taken,
 * replaces the one with the smallest count and inherits that count as its possible error. Over a stream of
 * total weight N it guarantees, whatever the number of distinct identifiers:
 * - every reported count is an overestimate by at most its `error`, and `error` <= min count <= N / capacity;
 * - every identifier whose true count exceeds N / capacity is monitored.
 * The counters sit in a min-heap, so a count goes up in O(log capacity) and the smallest is found at once;
 * the counters are allocated as identifiers first arrive and reused by `clear`, so the memory is bounded.
 */
export class SpaceSaving {
  readonly capacity: number;
  readonly #heap: Counter[];
  readonly #index = new Map<string, Counter>();
  #size = 0;
  #total = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    // Counters are made as identifiers arrive, up to `capacity`, and kept for reuse: a limiter few clients
    // use (or none, as most of a process's limiters at a given moment) costs a few hundred bytes, not
    // `capacity` counters in each of its buckets.
    this.#heap = [];
  }

  /** The weight counted since the last `clear`. */
  get total(): number {
    return this.#total;
  }

  /** The smallest monitored count once every counter is taken (the bound of any error), else 0. */
  get floor(): number {
    return this.#size < this.capacity ? 0 : this.#heap[0]!.count;
  }

  /** Counts `weight` for `key`; true when `key` was not monitored before (a newcomer, or one that came back). */
  add(key: string, weight: number): boolean {
    this.#total += weight;
    const known = this.#index.get(key);
    if (known !== undefined) {
      known.count += weight;
      this.#down(known.at);
      return false;
    }
    let counter: Counter;
    if (this.#size < this.capacity) {
      if (this.#heap.length === this.#size) this.#heap.push({ key: '', count: 0, error: 0, at: this.#size });
      counter = this.#heap[this.#size++]!;
      counter.count = weight;
      counter.error = 0;
      counter.key = key;
      this.#index.set(key, counter);
      this.#up(counter.at);
      return true;
    }
    counter = this.#heap[0]!;
    this.#index.delete(counter.key);
    counter.key = key;
    counter.error = counter.count;
    counter.count += weight;
    this.#index.set(key, counter);
    this.#down(0);
    return true;
  }

  /** The monitored identifiers, largest count first. */
  entries(): HeavyHitter[] {
    const out: HeavyHitter[] = [];
    for (let i = 0; i < this.#size; i++) {
      const c = this.#heap[i]!;
      out.push({ key: c.key, count: c.count, error: c.error });
    }
    return out.sort((a, b) => b.count - a.count);
  }

  /** The counter of `key`, if monitored. */
  get(key: string): HeavyHitter | undefined {
    const c = this.#index.get(key);
    return c === undefined ? undefined : { key: c.key, count: c.count, error: c.error };
  }

  /** Forgets everything, keeping the counters for reuse. */
  clear(): void {
    this.#index.clear();
    for (let i = 0; i < this.#size; i++) this.#heap[i]!.key = '';
    this.#size = 0;
    this.#total = 0;
  }

  #up(at: number): void {
    const heap = this.#heap;
    const c = heap[at]!;
    while (at > 0) {
      const parentAt = (at - 1) >> 1;
      const parent = heap[parentAt]!;
      if (parent.count <= c.count) break;
      heap[at] = parent;
      parent.at = at;
      at = parentAt;
    }
    heap[at] = c;
    c.at = at;
  }

  #down(at: number): void {
    const heap = this.#heap;
    const size = this.#size;
    const c = heap[at]!;
    for (;;) {
      const left = 2 * at + 1;
      if (left >= size) break;
      const right = left + 1;
      const child = right < size && heap[right]!.count < heap[left]!.count ? right : left;
      const smaller = heap[child]!;
      if (smaller.count >= c.count) break;
      heap[at] = smaller;
      smaller.at = at;
      at = child;
    }
    heap[at] = c;
    c.at = at;
  }
}

/**
 * The heavy hitters of several summaries of disjoint parts of one stream (time buckets, processes), merged
 * without loss: a key's counts are added, and where a full summary does not monitor it, that summary's
 * floor is added to its upper bound (its true count there is at most the floor) and to its error. So the
 * merged bounds hold for the whole stream: count - error <= true count <= count, and count - true count <=
 * sum of the floors <= N / capacity (N the total of all parts). A key absent from every part has a true
 * count of at most the sum of the floors, so every key above N / capacity is still listed.
 */
export function mergeHeavyHitters(
  parts: readonly { entries: readonly HeavyHitter[]; floor: number }[],
): HeavyHitter[] {
  const merged = new Map<string, { count: number; error: number; seen: number }>();
  let floors = 0;
  for (const part of parts) {
    floors += part.floor;
    for (const e of part.entries) {
      const m = merged.get(e.key);
      if (m === undefined) merged.set(e.key, { count: e.count, error: e.error, seen: part.floor });
      else {
        m.count += e.count;
        m.error += e.error;
        m.seen += part.floor;
      }
    }
  }
  const out: HeavyHitter[] = [];
  for (const [key, m] of merged) {
    const unseen = floors - m.seen;
    out.push({ key, count: m.count + unseen, error: m.error + unseen });
  }
  return out.sort((a, b) => b.count - a.count);
}

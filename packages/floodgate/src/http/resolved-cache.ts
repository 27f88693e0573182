/**
 * What a request's peer (and forwarded chain) resolved to, remembered so that a client's next request costs
 * a lookup, not a resolution. Bounded by entries and by bytes: a key longer than `maxKey` characters is
 * never kept (its resolution is redone each time; it reads only the trusted hops), so a flood of long,
 * distinct `X-Forwarded-For` chains holds at most `maxEntries × maxKey` characters of keys. Full, it
 * starts over: a flood of new addresses only costs the resolving it saved.
 */
export class ResolvedCache<V> {
  readonly #map = new Map<string, V>();
  readonly #maxEntries: number;
  readonly #maxKey: number;

  constructor(maxEntries = 4096, maxKey = 256) {
    this.#maxEntries = maxEntries;
    this.#maxKey = maxKey;
  }

  get(key: string): V | undefined {
    return this.#map.get(key);
  }

  set(key: string, value: V): void {
    if (key.length > this.#maxKey) return;
    if (this.#map.size >= this.#maxEntries) this.#map.clear();
    this.#map.set(key, value);
  }

  /** Characters of keys held: never more than `maxEntries × maxKey`. */
  get keyChars(): number {
    let n = 0;
    for (const key of this.#map.keys()) n += key.length;
    return n;
  }
}

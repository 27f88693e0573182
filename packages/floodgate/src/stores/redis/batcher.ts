/**
 * A turn's operations go out in two calls (one when there is one operation): while Redis runs one, the
 * client reads the replies of the other and sends the decisions they lead to. One call per turn made the
 * two take turns; more than two cost more per decision (each call has its fixed cost on both sides) than
 * the overlap gained. Measured in `bench:redis` with 16 and 128 decisions in flight, 1, 2, 3, 4 and 6 calls.
 */
const CALLS_PER_TICK = 2;

/**
 * Groups operations into script calls. While a call is outstanding, those started in one turn of the
 * event loop go out together at its end (`setImmediate`, right after the turn's I/O): an HTTP server's
 * requests read in one turn, or the decisions that one batch of replies leads to, travel in the same calls
 * (flushing on `nextTick` sent each request of a busy server alone, one socket read per tick, at twice the
 * client CPU per decision). With no call outstanding there is nothing to wait for: the operations of the
 * current task go out as soon as it ends (a microtask), so a lone decision costs no extra turn. Split in
 * up to `CALLS_PER_TICK` calls of at most `maxBatch`, and on a Cluster one group per hash slot (`slotOf`),
 * since a script may only touch keys of one slot.
 */
export class Batcher<Item> {
  #queue = new Map<number, Item[]>();
  #scheduled = false;
  readonly #flush = () => this.#send();

  constructor(
    private readonly slotOf: (item: Item) => number,
    private readonly maxBatch: number,
    private readonly send: (items: Item[]) => void,
    private readonly idle: () => boolean,
  ) {}

  add(item: Item): void {
    const slot = this.slotOf(item);
    const group = this.#queue.get(slot);
    if (group === undefined) this.#queue.set(slot, [item]);
    else group.push(item);
    if (!this.#scheduled) {
      this.#scheduled = true;
      if (this.idle()) queueMicrotask(this.#flush);
      else setImmediate(this.#flush);
    }
  }

  #send(): void {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = new Map();
    for (const items of queue.values()) {
      const size = Math.min(this.maxBatch, Math.ceil(items.length / CALLS_PER_TICK));
      for (let i = 0; i < items.length; i += size) this.send(items.slice(i, i + size));
    }
  }
}

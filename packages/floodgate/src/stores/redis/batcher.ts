import { hashSlot } from './slot.js';

/**
 * A turn's operations go out in two calls (one when there is one operation): while Redis runs one, the
 * client reads the replies of the other and sends the decisions they lead to. One call per turn made the
 * two take turns; more than two cost more per decision (each call has its fixed cost on both sides) than
 * the overlap gained. Measured in `bench:redis` with 16 and 128 decisions in flight, 1, 2, 3, 4 and 6 calls.
 */
const CALLS_PER_TICK = 2;

/**
 * Groups operations into script calls: those started in one turn of the event loop go out together, at
 * its end (`setImmediate`, right after the turn's I/O): an HTTP server's requests read in one turn, or the
 * decisions that one batch of replies leads to, travel in the same calls. Flushing on `nextTick` sent each
 * request of a busy server alone (one socket read per tick), at twice the client CPU per decision. Split in
 * up to `CALLS_PER_TICK` calls of at most `maxBatch`, and on a Cluster one group per hash slot, since a
 * script may only touch keys of one slot.
 */
export class Batcher<Op extends { readonly keys: readonly string[] }> {
  #queue = new Map<number, Op[]>();
  #scheduled = false;

  constructor(
    private readonly cluster: boolean,
    private readonly maxBatch: number,
    private readonly send: (ops: Op[]) => void,
  ) {}

  add(op: Op): void {
    const slot = this.cluster ? hashSlot(op.keys[0]!) : 0;
    const group = this.#queue.get(slot);
    if (group === undefined) this.#queue.set(slot, [op]);
    else group.push(op);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = new Map();
    for (const ops of queue.values()) {
      const size = Math.min(this.maxBatch, Math.ceil(ops.length / CALLS_PER_TICK));
      for (let i = 0; i < ops.length; i += size) this.send(ops.slice(i, i + size));
    }
  }
}

import { hashSlot } from './slot.js';

/**
 * Groups operations into script calls: those started in one tick go out together (after the current
 * microtasks settle, so decisions made by one batch of replies travel as one), at most `maxBatch` to a
 * call, and on a Cluster one group per hash slot, since a script may only touch keys of one slot.
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
      process.nextTick(() => this.#flush());
    }
  }

  #flush(): void {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = new Map();
    for (const ops of queue.values()) {
      for (let i = 0; i < ops.length; i += this.maxBatch) this.send(ops.slice(i, i + this.maxBatch));
    }
  }
}

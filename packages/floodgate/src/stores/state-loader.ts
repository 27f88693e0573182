import { clear, type FlatAlgorithm } from '../core/algorithms/flat.js';
import type { PolicySet } from '../core/policy.js';

/**
 * Where one policy set keeps an identifier's states: a block of numbers (the block's expiry, then each flat
 * policy's numbers at its offset) and, for policies whose state is an object (sliding log, concurrency),
 * objects by policy index. Computed once per set.
 */
export interface StateLayout {
  readonly set: PolicySet;
  /** Per policy: its flat form, or undefined when its state is an object. */
  readonly flats: readonly (FlatAlgorithm | undefined)[];
  /** Per policy: the offset of its numbers in the block (-1 for an object state). */
  readonly offsets: readonly number[];
  /** Numbers per block: the expiry, then the states. */
  readonly size: number;
  readonly hasObjects: boolean;
  /** A block holding every policy's empty state (and an expiry long past). */
  readonly empty: Float64Array;
  /** The flat form of the set's only policy, when it has one policy and that one is flat. */
  readonly single: FlatAlgorithm | undefined;
}

function layoutOf(set: PolicySet): StateLayout {
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

/** One identifier's states as a store holds them: its block at `at` in the store's numbers, its objects. */
export interface HeldStates {
  layout: StateLayout;
  at: number;
  objects: unknown[] | undefined;
}

/**
 * What a store offers the loader: its identifiers, and one array of numbers in which each holds a block.
 * The memory store's key table is one; a store keeping its blocks elsewhere (shared memory, a file) can be
 * another and decide with the same loader.
 */
export interface StateBlocks<E extends HeldStates> {
  /** Every held block's numbers; may be a new array after `alloc`. */
  readonly numbers: Float64Array;
  /** The identifier's held states, if any; finding one counts as using it. */
  find(key: string): E | undefined;
  /** Room for a block of `size` numbers; returns its offset. */
  alloc(size: number): number;
  /** Gives the entry's block back (its `at` becomes -1). */
  release(entry: E): void;
}

/**
 * Loads an identifier's states for a decision or a refund, so both read them the same way: brought to the
 * policy set asked about (its policies may have changed since they were written: states are kept for the
 * policies whose id is unchanged) and emptied when expired, so that whatever reads them next sees only
 * what still counts. Also keeps each set's layout, and a scratch block large enough for any of them.
 */
export class StateLoader<E extends HeldStates> {
  readonly #blocks: StateBlocks<E>;
  readonly #layouts = new WeakMap<PolicySet, StateLayout>();
  #lastSet: PolicySet | undefined;
  #lastLayout: StateLayout | undefined;
  /** Where states being decided are written before all-or-nothing lets them be kept. */
  scratch = new Float64Array(16);

  constructor(blocks: StateBlocks<E>) {
    this.#blocks = blocks;
  }

  layout(set: PolicySet): StateLayout {
    if (set === this.#lastSet) return this.#lastLayout!;
    let layout = this.#layouts.get(set);
    if (layout === undefined) {
      layout = layoutOf(set);
      this.#layouts.set(set, layout);
      if (layout.size > this.scratch.length) this.scratch = new Float64Array(layout.size);
    }
    this.#lastSet = set;
    this.#lastLayout = layout;
    return layout;
  }

  /** The identifier's states under `layout` at `now`, or undefined when none are held. */
  load(key: string, layout: StateLayout, now: number): E | undefined {
    const entry = this.#blocks.find(key);
    if (entry === undefined) return undefined;
    if (entry.layout !== layout) this.#remap(entry, layout);
    const numbers = this.#blocks.numbers;
    if (numbers[entry.at]! > now) return entry;
    copyBlock(numbers, entry.at, layout.empty, layout.size);
    entry.objects = undefined;
    return entry;
  }

  #remap(entry: E, layout: StateLayout): void {
    const old = entry.layout;
    const at = this.#blocks.alloc(layout.size);
    const numbers = this.#blocks.numbers;
    copyBlock(numbers, at, layout.empty, layout.size);
    numbers[at] = numbers[entry.at]!;
    const objects: unknown[] | undefined = layout.hasObjects ? [] : undefined;
    layout.set.policies.forEach((p, i) => {
      const j = old.set.policies.findIndex((o) => o.id === p.id);
      if (j === -1) return;
      const flat = layout.flats[i];
      if (flat === undefined) objects![i] = entry.objects?.[j];
      else {
        const from = entry.at + old.offsets[j]!;
        numbers.copyWithin(at + layout.offsets[i]!, from, from + flat.slots);
      }
    });
    this.#blocks.release(entry);
    entry.layout = layout;
    entry.at = at;
    entry.objects = objects;
  }
}

/** Copies `block` (a scratch or an empty one) to `at` in `numbers`: a loop, faster than `set` for a few. */
export function copyBlock(numbers: Float64Array, at: number, block: Float64Array, size: number): void {
  for (let k = 0; k < size; k++) numbers[at + k] = block[k]!;
}

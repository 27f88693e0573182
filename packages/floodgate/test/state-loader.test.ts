import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newResultSlot } from '../src/core/algorithms/flat.js';
import { policySet, resolvePolicies } from '../src/core/policy.js';
import { type Entry, KeyTable } from '../src/stores/memory/key-table.js';
import { type HeldStates, type StateBlocks, StateLoader } from '../src/stores/state-loader.js';

const T0 = 1_700_000_000_000;
const minute = (name: string, limit: number) =>
  resolvePolicies([{ name, algorithm: 'fixed-window', limit, window: 60_000 }], 'policies');

/** A third store's blocks: a Map and an array that only grows, nothing reused, no recency. */
class GrowingBlocks implements StateBlocks<HeldStates> {
  readonly held = new Map<string, HeldStates>();
  numbers = new Float64Array(4);
  top = 0;
  released: number[] = [];
  find(key: string) {
    return this.held.get(key);
  }
  alloc(size: number) {
    if (this.top + size > this.numbers.length) {
      const grown = new Float64Array(2 * (this.top + size));
      grown.set(this.numbers);
      this.numbers = grown;
    }
    this.top += size;
    return this.top - size;
  }
  release(entry: HeldStates) {
    this.released.push(entry.at);
    entry.at = -1;
  }
}

/** Consumes `cost` of a fixed window through the loader, as a store's decision would. */
function consume(
  loader: StateLoader<HeldStates>,
  blocks: GrowingBlocks,
  key: string,
  set: ReturnType<typeof policySet>,
  now: number,
) {
  const layout = loader.layout(set);
  const entry = loader.load(key, layout, now) ?? {
    layout,
    at: blocks.alloc(layout.size),
    objects: undefined,
  };
  if (!blocks.held.has(key)) {
    blocks.numbers.set(layout.empty, entry.at);
    blocks.held.set(key, entry);
  }
  const out = newResultSlot();
  let expiresAt = now;
  set.policies.forEach((p, i) => {
    const at = entry.at + layout.offsets[i]!;
    layout.flats[i]!.decide(blocks.numbers, at, now, 1, p, out, blocks.numbers, at);
    expiresAt = Math.max(expiresAt, out.expiresAt);
  });
  blocks.numbers[entry.at] = expiresAt;
  return out.remaining;
}

describe('StateLoader', () => {
  it('lets a store of its own decide from blocks it keeps: held states are read, expired ones empty', () => {
    const blocks = new GrowingBlocks();
    const loader = new StateLoader(blocks);
    const set = policySet(minute('m', 3));
    assert.equal(loader.load('k', loader.layout(set), T0), undefined, 'nothing held yet');
    assert.deepEqual(
      [1, 2, 3].map(() => consume(loader, blocks, 'k', set, T0)),
      [2, 1, 0],
    );
    assert.equal(consume(loader, blocks, 'k', set, T0 + 59_999), 0, 'still the same window');
    const entry = loader.load('k', loader.layout(set), T0 + 60_000)!;
    assert.deepEqual(
      [...blocks.numbers.subarray(entry.at, entry.at + loader.layout(set).size)],
      [...loader.layout(set).empty],
    );
    assert.equal(consume(loader, blocks, 'k', set, T0 + 60_000), 2, 'a new window');
  });

  it('carries the states of the policies kept when the set changes, in a new block, and releases the old', () => {
    const blocks = new GrowingBlocks();
    const loader = new StateLoader(blocks);
    const daily = resolvePolicies([{ name: 'd', algorithm: 'fixed-window', limit: 10, window: '1d' }], 'p');
    const before = policySet(minute('m', 3));
    const after = policySet(daily, minute('m', 3));
    consume(loader, blocks, 'k', before, T0);
    const oldAt = blocks.held.get('k')!.at;
    const entry = loader.load('k', loader.layout(after), T0)!;
    assert.deepEqual(blocks.released, [oldAt]);
    assert.notEqual(entry.at, oldAt);
    assert.equal(entry.layout, loader.layout(after));
    assert.equal(consume(loader, blocks, 'k', after, T0), 1, 'the minute kept its count; the day starts');
  });

  it('grows its scratch block to the largest layout it has made', () => {
    const loader = new StateLoader(new GrowingBlocks());
    const many = resolvePolicies(
      Array.from({ length: 12 }, (_, i) => ({ name: `p${i}`, limit: 5, window: '1m' })),
      'p',
    );
    const layout = loader.layout(policySet(many));
    assert.ok(loader.scratch.length >= layout.size && layout.size > 16);
  });
});

describe('KeyTable', () => {
  it('reuses a dropped block for the next key of its size', () => {
    const table = new KeyTable(Number.POSITIVE_INFINITY);
    const loader = new StateLoader<Entry>(table);
    const layout = loader.layout(policySet(minute('m', 3)));
    table.create('a', layout, undefined, loader.scratch, T0 + 1000, T0);
    const at = table.find('a')!.at;
    table.forget('a');
    assert.equal(table.size, 0);
    table.create('b', layout, undefined, loader.scratch, T0 + 1000, T0);
    assert.equal(table.find('b')!.at, at);
  });

  it('evicts the least recently found key past maxKeys', () => {
    const table = new KeyTable(2);
    const loader = new StateLoader<Entry>(table);
    const layout = loader.layout(policySet(minute('m', 3)));
    table.create('a', layout, undefined, loader.scratch, T0 + 1000, T0);
    table.create('b', layout, undefined, loader.scratch, T0 + 1000, T0);
    table.find('a');
    table.create('c', layout, undefined, loader.scratch, T0 + 1000, T0);
    assert.deepEqual(
      ['a', 'b', 'c'].map((k) => table.find(k) !== undefined),
      [true, false, true],
    );
  });
});

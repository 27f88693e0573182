import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DistinctCount, estimateDistinct } from '../../src/observe/distinct.js';
import { type HeavyHitter, mergeHeavyHitters, SpaceSaving } from '../../src/observe/space-saving.js';

/** A Zipf(s) stream over `clients` identifiers: client i (from 1) drawn with weight 1 / i^s. */
function zipf(clients: number, s: number, length: number, random: () => number): string[] {
  const weights = Array.from({ length: clients }, (_, i) => 1 / (i + 1) ** s);
  const total = weights.reduce((a, b) => a + b, 0);
  const cumulative: number[] = [];
  let sum = 0;
  for (const w of weights) {
    sum += w / total;
    cumulative.push(sum);
  }
  const out: string[] = [];
  for (let n = 0; n < length; n++) {
    const u = random();
    let lo = 0;
    let hi = clients - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    out.push(`ip:10.0.${lo >> 8}.${lo & 255}`);
  }
  return out;
}

function exact(stream: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const key of stream) counts.set(key, (counts.get(key) ?? 0) + 1);
  return counts;
}

/** The bounds the summary states: lower <= true <= upper, upper - true <= bound, all above bound listed. */
function assertBounds(
  listed: readonly HeavyHitter[],
  truth: Map<string, number>,
  bound: number,
  total: number,
  capacity: number,
) {
  assert.ok(bound <= total / capacity, `bound ${bound} <= N/k = ${total / capacity}`);
  const seen = new Set<string>();
  for (const h of listed) {
    const t = truth.get(h.key) ?? 0;
    seen.add(h.key);
    assert.ok(h.count >= t, `${h.key}: reported ${h.count} >= true ${t}`);
    assert.ok(h.count - h.error <= t, `${h.key}: lower bound ${h.count - h.error} <= true ${t}`);
    assert.ok(h.count - t <= bound, `${h.key}: overestimate ${h.count - t} <= ${bound}`);
  }
  for (const [key, t] of truth)
    if (t > bound) assert.ok(seen.has(key), `${key} (true ${t} > ${bound}) is listed`);
}

const streams = fc.record({
  clients: fc.integer({ min: 1, max: 3000 }),
  s: fc.double({ min: 0.5, max: 2, noNaN: true }),
  length: fc.integer({ min: 1, max: 6000 }),
  capacity: fc.integer({ min: 1, max: 80 }),
  seed: fc.integer(),
  parts: fc.integer({ min: 1, max: 6 }),
});

/** A small seeded generator (mulberry32), so a failing case replays. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('Space-Saving on Zipf streams, against exact counts', () => {
  it('one summary: every count within [count - error, count], overestimates <= N/k, every key above N/k listed', () => {
    fc.assert(
      fc.property(streams, ({ clients, s, length, capacity, seed }) => {
        const stream = zipf(clients, s, length, seeded(seed));
        const summary = new SpaceSaving(capacity);
        for (const key of stream) summary.add(key, 1);
        assert.equal(summary.total, length);
        const entries = summary.entries();
        assert.ok(entries.length <= capacity, 'never more counters than its capacity');
        assertBounds(entries, exact(stream), summary.floor, length, capacity);
      }),
      { numRuns: 150 },
    );
  });

  it('summaries of parts merged: the same bounds hold for the whole stream', () => {
    fc.assert(
      fc.property(streams, ({ clients, s, length, capacity, seed, parts }) => {
        const stream = zipf(clients, s, length, seeded(seed));
        const summaries = Array.from({ length: parts }, () => new SpaceSaving(capacity));
        stream.forEach((key, i) => {
          summaries[Math.floor((i * parts) / length)]!.add(key, 1);
        });
        const merged = mergeHeavyHitters(summaries.map((p) => ({ entries: p.entries(), floor: p.floor })));
        const bound = summaries.reduce((sum, p) => sum + p.floor, 0);
        assertBounds(merged, exact(stream), bound, length, capacity);
      }),
      { numRuns: 100 },
    );
  });

  it('the heaviest client of a skewed stream is on top, exactly counted while the summary has room', () => {
    const summary = new SpaceSaving(16);
    for (let i = 0; i < 1000; i++) summary.add(i % 2 === 0 ? 'ip:flood' : `ip:${i % 7}`, 1);
    assert.deepEqual(summary.entries()[0], { key: 'ip:flood', count: 500, error: 0 });
  });

  it('clear forgets everything and keeps its capacity', () => {
    const summary = new SpaceSaving(2);
    for (const key of ['a', 'b', 'c', 'c']) summary.add(key, 1);
    summary.clear();
    assert.equal(summary.total, 0);
    assert.deepEqual(summary.entries(), []);
    summary.add('z', 3);
    assert.deepEqual(summary.entries(), [{ key: 'z', count: 3, error: 0 }]);
  });
});

describe('distinct count (HyperLogLog, 256 registers)', () => {
  it('estimates within 4 standard errors (26%) from 1 to 200 000 clients, and merges without loss', () => {
    for (const n of [1, 10, 100, 1000, 20_000, 200_000]) {
      const a = new DistinctCount();
      const b = new DistinctCount();
      for (let i = 0; i < n; i++) (i % 2 === 0 ? a : b).add(`ip:${i}`);
      const estimate = estimateDistinct([a.registers, b.registers]);
      assert.ok(Math.abs(estimate - n) <= Math.max(1, 0.26 * n), `${estimate} for ${n}`);
    }
  });
});

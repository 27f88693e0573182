import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compact } from '../../src/admin/fleet.js';
import { SpaceSaving } from '../../src/observe/space-saving.js';
import type { BucketSnapshot } from '../../src/observe/traffic.js';
import { topOf } from '../../src/observe/traffic.js';

/** A bucket of a Zipf-like stream: client i sent about 1000 / (i + 1) requests. */
function bucket(
  start: number,
  clients: number,
  offset: number,
): { snapshot: BucketSnapshot; exact: Map<string, number> } {
  const summary = new SpaceSaving(64);
  const exact = new Map<string, number>();
  for (let i = 0; i < clients; i++) {
    const key = `ip:10.0.${(i + offset) >> 8}.${(i + offset) & 255}`;
    const n = Math.max(1, Math.floor(1000 / (i + 1)));
    for (let j = 0; j < n; j++) summary.add(key, 1);
    exact.set(key, n);
  }
  const side = { entries: summary.entries(), floor: summary.floor, total: summary.total };
  return {
    snapshot: { start, requests: side, refusals: { entries: [], floor: 0, total: 0 }, distinct: [0] },
    exact,
  };
}

describe('compact: what a process publishes to the fleet', () => {
  it('keeps the bounds of the merge: every count within [count - error, count], none more than floor too high, every client above floor listed', () => {
    const parts = [bucket(0, 300, 0), bucket(10_000, 300, 100), bucket(20_000, 200, 50)];
    const exact = new Map<string, number>();
    for (const p of parts) for (const [k, n] of p.exact) exact.set(k, (exact.get(k) ?? 0) + n);
    const published = [compact(parts.slice(0, 2).map((p) => p.snapshot)), compact([parts[2]!.snapshot])];
    const top = topOf('15m', published, 1000);
    const listed = new Set(top.requests.clients.map((c) => c.key));
    assert.ok(top.requests.bound > 0, 'the summaries were full: this tests the bound, not exact counts');
    for (const c of top.requests.clients) {
      const truth = exact.get(c.key) ?? 0;
      assert.ok(c.count - c.error <= truth && truth <= c.count, c.key);
      assert.ok(c.count - truth <= top.requests.bound, c.key);
    }
    for (const [key, n] of exact)
      if (n > top.requests.bound) assert.ok(listed.has(key), `${key} (${n}) listed`);
    assert.ok(top.requests.bound <= (2 * top.requests.total) / 64, 'at most 2N/k');
    assert.equal(
      top.requests.total,
      [...exact.values()].reduce((a, b) => a + b, 0),
    );
  });
});

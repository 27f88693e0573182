import type { Decision, PolicyDecision } from 'floodgate';

// Fixed windows aligned to their unit's boundaries, as envoyproxy/ratelimit counts (a minute limit resets
// on the minute; a month is 30 days from the epoch, as upstream divides time). Made in the rls layer over
// the library's fixed window, unchanged: the window's index is part of the counter's key, so each one
// counts from zero, and the waits a decision reports end at the boundary.

export interface AlignedWindow {
  /** The index of the window `now` is in, for the counter's key. */
  readonly index: number;
  /** ms from `now` to the window's end. */
  readonly until: number;
}

export function alignedWindow(now: number, unit: number): AlignedWindow {
  const index = Math.floor(now / unit);
  return { index, until: (index + 1) * unit - now };
}

function clamp<T extends PolicyDecision>(d: T, until: number, now: number): T {
  const resetAfter = Math.min(d.resetAfter, until);
  // A wait that no window can end (a cost past the limit) stays what the library says.
  const retryAfter =
    d.retryAfter > 0 && Number.isFinite(d.retryAfter) ? Math.min(d.retryAfter, until) : d.retryAfter;
  return { ...d, resetAfter, retryAfter, resetAt: now + resetAfter };
}

/** A fixed window's decision, its reset and wait ending at the aligned window's end. */
export function alignDecision(d: Decision, window: AlignedWindow, now: number): Decision {
  if (d.reason === 'cost-exceeds-limit') return d;
  return { ...clamp(d, window.until, now), policies: d.policies.map((p) => clamp(p, window.until, now)) };
}

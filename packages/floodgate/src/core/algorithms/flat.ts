import type { Algorithm, AlgorithmName, AlgorithmParams, Outcome } from './types.js';

/** Where a flat algorithm writes one decision: a store reuses one across calls, so nothing is allocated. */
export interface ResultSlot {
  allowed: boolean;
  remaining: number;
  resetAt: number;
  retryAfter: number;
  expiresAt: number;
  /** Written by the store that owns the slot (it knows its clock), not by the algorithms. */
  resetAfter: number;
}

/**
 * An algorithm whose state is a few numbers, stored at `at` in a `Float64Array`. The empty state (no request
 * seen, or expired) is `-Infinity` followed by zeros: every algorithm reads it as "nothing counted".
 *
 * This is the form the algorithms are written in. The memory store keeps every key's numbers in one array,
 * so a decision reads two cache lines instead of following an object graph; the object form the rest of
 * the library speaks (`Algorithm`) is derived from it by `objectForm`.
 */
export interface FlatAlgorithm {
  /** Numbers of state per key. */
  readonly slots: number;
  /**
   * Decides a request of `cost` at `now` on the state at `s[at]`, writing the numbers to `out`. When it is
   * allowed, writes the state after it at `t[to]` (the same place is fine); when denied, writes nothing.
   */
  decide(
    s: Float64Array,
    at: number,
    now: number,
    cost: number,
    params: AlgorithmParams,
    out: ResultSlot,
    t: Float64Array,
    to: number,
  ): void;
  /** Gives back `cost` in place; returns false when the state is now empty (and written as such). */
  refund(s: Float64Array, at: number, now: number, cost: number, params: AlgorithmParams): boolean;
  /**
   * Optional: `decide` when only the answer matters (`Limiter.allowSync`). Writes the state after an
   * allowed request as `decide` would, and returns when that state expires; returns -1 when denied, writing
   * nothing. Skips the numbers a decision reports, whose divisions are most of `decide`'s cost.
   */
  admit?(
    s: Float64Array,
    at: number,
    now: number,
    cost: number,
    params: AlgorithmParams,
    t: Float64Array,
    to: number,
  ): number;
}

/** Writes the empty state. */
export function clear(s: Float64Array, at: number, slots: number): void {
  s[at] = Number.NEGATIVE_INFINITY;
  for (let k = 1; k < slots; k++) s[at + k] = 0;
}

export function deny(out: ResultSlot, remaining: number, resetAt: number, retryAfter: number): void {
  out.allowed = false;
  out.remaining = remaining;
  out.resetAt = resetAt;
  out.retryAfter = retryAfter;
  out.expiresAt = resetAt;
}

export function allow(out: ResultSlot, remaining: number, resetAt: number): void {
  out.allowed = true;
  out.remaining = remaining;
  out.resetAt = resetAt;
  out.retryAfter = 0;
  out.expiresAt = resetAt;
}

export function newResultSlot(): ResultSlot {
  return { allowed: false, remaining: 0, resetAt: 0, retryAfter: 0, expiresAt: 0, resetAfter: 0 };
}

/** An `Algorithm` that also exposes its flat form, for stores that can use it. */
export interface FlatBacked<S> extends Algorithm<S> {
  readonly flat: FlatAlgorithm;
}

/**
 * The object form of a flat algorithm: state objects whose fields are, in order, the flat numbers
 * (`fields`). Pure: the input state is never modified, and is returned as is when nothing was charged.
 */
export function objectForm<S extends object>(
  name: AlgorithmName,
  flat: FlatAlgorithm,
  fields: readonly (keyof S & string)[],
): FlatBacked<S> {
  const n = flat.slots;
  const buf = new Float64Array(2 * n);
  const out = newResultSlot();
  const load = (state: S | undefined) => {
    if (state === undefined) clear(buf, 0, n);
    else for (let k = 0; k < n; k++) buf[k] = (state as Record<string, number>)[fields[k]!]!;
  };
  const make = (at: number): S => {
    const state: Record<string, number> = {};
    for (let k = 0; k < n; k++) state[fields[k]!] = buf[at + k]!;
    return state as S;
  };
  return {
    name,
    flat,
    consume(state, now, cost, params): Outcome<S> {
      load(state);
      flat.decide(buf, 0, now, cost, params, out, buf, n);
      return {
        allowed: out.allowed,
        remaining: out.remaining,
        resetAt: out.resetAt,
        retryAfter: out.retryAfter,
        state: out.allowed && cost > 0 ? make(n) : state,
        expiresAt: out.expiresAt,
      };
    },
    refund(state, now, cost, params) {
      if (state === undefined) return undefined;
      load(state);
      return flat.refund(buf, 0, now, cost, params) ? make(0) : undefined;
    },
  };
}

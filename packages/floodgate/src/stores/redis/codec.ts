import type { PolicyResult } from '../../core/algorithms/types.js';
import type { PolicySet } from '../../core/policy.js';
import { MACHINE_CODES } from './script.js';

// The script's arguments and reply, as pure functions: what goes to Redis is built here and what comes
// back is read here, so both are tested without a server (the client call between them is one line).

/** One identifier under one policy set, as the script sees it: its keys and its set's arguments. */
export interface Target {
  readonly keys: readonly string[];
  /** `encodePolicies` of its set, made once per set: a call sends each distinct array once. */
  readonly policies: readonly string[];
}

/**
 * What one script operation does to one identifier's policies (a group: to several, all or none):
 * - `consume`: charge `cost` to every policy if all allow (`lease`: the concurrency lease it takes);
 * - `peek`: decide as `consume` would, charging nothing;
 * - `refund`: give `cost` back (`lease`: the concurrency lease to release), then report as a zero-cost peek;
 * - `grant`: a quota grant, consume `cost` plus up to `ask` more units, answered with the units granted;
 * - `return`: give `units` of a quota grant back, unless Redis's time is already at or past `until`, the
 *   end of the earliest window they were charged in (then only a look);
 * - `group`: each member consumes its cost, all or none;
 * - `reset`: delete the identifier's state (answered with nothing).
 */
export type Operation =
  | { readonly kind: 'consume'; readonly target: Target; readonly cost: number; readonly lease?: string }
  | { readonly kind: 'peek'; readonly target: Target; readonly cost: number }
  | { readonly kind: 'refund'; readonly target: Target; readonly cost: number; readonly lease?: string }
  | { readonly kind: 'grant'; readonly target: Target; readonly cost: number; readonly ask: number }
  | { readonly kind: 'return'; readonly target: Target; readonly units: number; readonly until: number }
  | {
      readonly kind: 'group';
      readonly members: readonly { readonly target: Target; readonly cost: number }[];
    }
  | { readonly kind: 'reset'; readonly target: Target };

/** What the script answers to one operation: results per target (one for all but a group), units granted. */
export interface Answer {
  readonly results: readonly (readonly PolicyResult[])[];
  readonly granted: number;
}

/** Keeps an identifier inside its `{hash tag}`: braces would end the tag early, so they are escaped. */
function tag(key: string): string {
  return /[{}%]/.test(key) ? key.replace(/[{}%]/g, (c) => `%${c.charCodeAt(0).toString(16)}`) : key;
}

/** The Redis keys of an identifier's policies: one hash tag per identifier, so they share a Cluster slot. */
export function encodeKeys(prefix: string, key: string, set: PolicySet): string[] {
  const base = `${prefix}{${tag(key)}}:`;
  return set.policies.map((p) => base + p.id);
}

/** A policy set: its number of policies, then per policy machine code, limit, window, burst. */
export function encodePolicies(set: PolicySet): string[] {
  return [
    String(set.policies.length),
    ...set.policies.flatMap((p) => [
      MACHINE_CODES[p.algorithm],
      String(p.limit),
      String(p.window),
      String(p.burst),
    ]),
  ];
}

const lease = (id: string | undefined) => (id === undefined ? '' : encodeURIComponent(id));

/** The targets an operation touches, in the order of its keys. */
export function targetsOf(op: Operation): readonly Target[] {
  return op.kind === 'group' ? op.members.map((m) => m.target) : [op.target];
}

/**
 * An operation's own ARGV, led by its kind; `set` gives the (1-based) place of a target's policy set in
 * the call. Each kind has its own fields, so no slot means two things.
 */
export function encodeOperation(op: Operation, set: (target: Target) => string): string[] {
  switch (op.kind) {
    case 'consume':
    case 'refund':
      return [op.kind, set(op.target), String(op.cost), lease(op.lease)];
    case 'peek':
      return [op.kind, set(op.target), String(op.cost)];
    case 'grant':
      return [op.kind, set(op.target), String(op.cost), String(op.ask)];
    case 'return':
      return [op.kind, set(op.target), String(op.units), String(op.until)];
    case 'reset':
      return [op.kind, set(op.target)];
    case 'group':
      return [
        op.kind,
        String(op.members.length),
        ...op.members.flatMap((m) => [set(m.target), String(m.cost)]),
      ];
  }
}

/**
 * The script's whole call: KEYS, then ARGV led by the time to decide at ('' = the server's TIME), the
 * distinct policy sets, then the operations.
 */
export function encodeBatch(
  ops: readonly Operation[],
  now: number | undefined,
): { keys: string[]; args: string[] } {
  const keys: string[] = [];
  const args: string[] = [now === undefined ? '' : String(now), ''];
  const tail: string[] = [];
  const sets = new Map<readonly string[], string>();
  const place = (target: Target): string => {
    let index = sets.get(target.policies);
    if (index === undefined) {
      index = String(sets.size + 1);
      sets.set(target.policies, index);
      for (const a of target.policies) args.push(a);
    }
    return index;
  };
  for (const op of ops) {
    for (const target of targetsOf(op)) for (const k of target.keys) keys.push(k);
    for (const a of encodeOperation(op, place)) tail.push(a);
  }
  args[1] = String(sets.size);
  for (const a of tail) args.push(a);
  return { keys, args };
}

/** A reply that is not what the script returns: a failure of the store, answered by its outage policy. */
export class MalformedReplyError extends Error {
  constructor(detail: string) {
    super(`floodgate: Redis answered the decision script with ${detail}`);
    this.name = 'MalformedReplyError';
  }
}

function integer(value: unknown, at: number): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n))
    throw new MalformedReplyError(`${JSON.stringify(value)} at ${at}, not an integer`);
  return n;
}

const policiesOf = (target: Target) => target.keys.length;

/**
 * The answer to each operation, from the script's reply: the time decided at, then per operation (after
 * the units granted, for a grant) and policy allowed (1/0), remaining, resetAt and retryAfter (-1: never);
 * nothing for a reset. Anything else (another shape, a length that does not match what was asked, a number
 * that is not an integer) throws MalformedReplyError.
 */
export function decodeBatch(reply: unknown, ops: readonly Operation[]): Answer[] {
  if (!Array.isArray(reply)) throw new MalformedReplyError(`${typeof reply}, not an array`);
  let expected = 1;
  for (const op of ops) {
    if (op.kind === 'reset') continue;
    if (op.kind === 'grant') expected++;
    for (const target of targetsOf(op)) expected += 4 * policiesOf(target);
  }
  if (reply.length !== expected) {
    throw new MalformedReplyError(`${reply.length} values where ${expected} were expected`);
  }
  const now = integer(reply[0], 0); // Redis's time (or the injected clock's): resetAt is on it
  let at = 1;
  return ops.map((op): Answer => {
    if (op.kind === 'reset') return { results: [], granted: 0 };
    let granted = 0;
    if (op.kind === 'grant') {
      granted = integer(reply[at], at);
      if (granted < 0) throw new MalformedReplyError(`${granted} at ${at}, not a number of units`);
      at++;
    }
    const results = targetsOf(op).map((target) => {
      const n = policiesOf(target);
      const out: PolicyResult[] = new Array(n);
      for (let i = 0; i < n; i++, at += 4) {
        const allowed = integer(reply[at], at);
        if (allowed !== 0 && allowed !== 1) throw new MalformedReplyError(`${allowed} at ${at}, not 0 or 1`);
        const resetAt = integer(reply[at + 2], at + 2);
        const retry = integer(reply[at + 3], at + 3);
        out[i] = {
          allowed: allowed === 1,
          remaining: integer(reply[at + 1], at + 1),
          resetAt,
          retryAfter: retry < 0 ? Number.POSITIVE_INFINITY : retry,
          resetAfter: resetAt - now,
        };
      }
      return out;
    });
    return { results, granted };
  });
}

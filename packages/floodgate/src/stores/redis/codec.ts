import type { PolicyResult } from '../../core/algorithms/types.js';
import type { Policy, PolicySet } from '../../core/policy.js';
import type { StoreMode } from '../store.js';

// The script's arguments and reply, as pure functions: what goes to Redis is built here and what comes
// back is read here, so both are tested without a server (the client call between them is one line).

/** One decision, as the batch script takes it: its keys, its policy set's arguments, and its own. */
export interface EncodedOp {
  readonly keys: readonly string[];
  /** `encodePolicies` of its set, made once per set: a batch sends each distinct array once. */
  readonly policies: readonly string[];
  readonly args: readonly string[];
}

const CODES: Record<Policy['algorithm'], string> = {
  'token-bucket': '1',
  gcra: '1',
  'fixed-window': '2',
  'sliding-window-log': '3',
  'sliding-window-counter': '4',
  concurrency: '5',
};
/**
 * What a script call can do to an identifier: the store's modes, `reset`, and the two halves of a quota
 * lease: `lease` (consume, plus up to `lease` more units) and `unlease` (give unused units back, unless the
 * Redis time is already at or past `lease`), and `group`: this operation and the `lease` - 1 after it are
 * charged all or none.
 */
export type OpMode = StoreMode | 'reset' | 'lease' | 'unlease' | 'group';
const MODES: Record<OpMode, string> = {
  consume: 'c',
  peek: 'p',
  refund: 'r',
  reset: 'x',
  lease: 'l',
  unlease: 'u',
  group: 'g',
};

/** Keeps an identifier inside its `{hash tag}`: braces would end the tag early, so they are escaped. */
function tag(key: string): string {
  return /[{}%]/.test(key) ? key.replace(/[{}%]/g, (c) => `%${c.charCodeAt(0).toString(16)}`) : key;
}

/** The Redis keys of an identifier's policies: one hash tag per identifier, so they share a Cluster slot. */
export function encodeKeys(prefix: string, key: string, set: PolicySet): string[] {
  const base = `${prefix}{${tag(key)}}:`;
  return set.policies.map((p) => base + p.id);
}

/** A policy set: its number of policies, then per policy algorithm code, limit, window, burst. */
export function encodePolicies(set: PolicySet): string[] {
  return [
    String(set.policies.length),
    ...set.policies.flatMap((p) => [CODES[p.algorithm], String(p.limit), String(p.window), String(p.burst)]),
  ];
}

/** An operation's own ARGV: mode, cost, lease ('' for none; the units asked for or the deadline for a quota lease). */
export function encodeOp(mode: OpMode, cost: number, lease: string | undefined): string[] {
  return [MODES[mode], String(cost), lease === undefined ? '' : encodeURIComponent(lease)];
}

/**
 * The script's whole call: KEYS, then ARGV led by the time to decide at ('' = the server's TIME), the
 * distinct policy sets, and per operation the number of its set followed by its own arguments.
 */
export function encodeBatch(
  ops: readonly EncodedOp[],
  now: number | undefined,
): { keys: string[]; args: string[] } {
  const keys: string[] = [];
  const args: string[] = [now === undefined ? '' : String(now), ''];
  const tail: string[] = [];
  const sets = new Map<readonly string[], string>();
  for (const op of ops) {
    for (const k of op.keys) keys.push(k);
    let index = sets.get(op.policies);
    if (index === undefined) {
      index = String(sets.size + 1);
      sets.set(op.policies, index);
      for (const a of op.policies) args.push(a);
    }
    tail.push(index);
    for (const a of op.args) tail.push(a);
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

/**
 * The results of each operation, from the script's reply: the time decided at, then per operation and
 * policy allowed (1/0), remaining, resetAt and retryAfter (-1: never). An operation marked in `leased`
 * leads with the units granted, written to `grants`. Anything else (another shape, a length that does not
 * match what was asked, a number that is not an integer) throws MalformedReplyError.
 */
export function decodeBatch(
  reply: unknown,
  counts: readonly number[],
  leased?: readonly boolean[],
  grants?: number[],
): PolicyResult[][] {
  if (!Array.isArray(reply)) throw new MalformedReplyError(`${typeof reply}, not an array`);
  let expected = 1 + 4 * counts.reduce((sum, n) => sum + n, 0);
  if (leased !== undefined) for (const l of leased) if (l) expected++;
  if (reply.length !== expected) {
    throw new MalformedReplyError(`${reply.length} values where ${expected} were expected`);
  }
  const now = integer(reply[0], 0); // Redis's time (or the injected clock's): resetAt is on it
  let at = 1;
  return counts.map((n, op) => {
    if (leased?.[op] === true) {
      const granted = integer(reply[at], at);
      if (granted < 0) throw new MalformedReplyError(`${granted} at ${at}, not a number of units`);
      if (grants !== undefined) grants[op] = granted;
      at++;
    }
    const results: PolicyResult[] = new Array(n);
    for (let i = 0; i < n; i++, at += 4) {
      const allowed = integer(reply[at], at);
      if (allowed !== 0 && allowed !== 1) throw new MalformedReplyError(`${allowed} at ${at}, not 0 or 1`);
      const resetAt = integer(reply[at + 2], at + 2);
      const retry = integer(reply[at + 3], at + 3);
      results[i] = {
        allowed: allowed === 1,
        remaining: integer(reply[at + 1], at + 1),
        resetAt,
        retryAfter: retry < 0 ? Number.POSITIVE_INFINITY : retry,
        resetAfter: resetAt - now,
      };
    }
    return results;
  });
}

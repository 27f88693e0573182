import { type Decision, decide, decideOne } from '../core/decision.js';
import { andThen, type MaybePromise } from '../core/maybe.js';
import type { PolicySet } from '../core/policy.js';
import { fastPath, MemoryStore } from '../stores/memory.js';
import type { Store, StoreMode } from '../stores/store.js';

/**
 * How a Limiter reaches its store, chosen once when the Limiter is made: synchronously when the store can
 * answer so (`applySync`), else through promises; over the memory store, with its two shortcuts as well.
 * The Limiter's methods are written once over this; only here and in the memory store do the shortcuts exist.
 */
export interface StorePath {
  /** True when `decide` and `allow` never return a promise. */
  readonly sync: boolean;
  decide(key: string, set: PolicySet, cost: number, mode: StoreMode, lease?: string): MaybePromise<Decision>;
  /** `decide` in consume mode, answering only whether the request may go on. */
  allow(key: string, set: PolicySet, cost: number): MaybePromise<boolean>;
}

let leaseCounter = 0;

/** Lease ids must be unique across processes sharing a store. */
function sharedLeaseId(): string {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}-${++leaseCounter}`;
}

/** The memory store's state lives in this process only: a counter is a unique enough lease id. */
function localLeaseId(): string {
  return `${++leaseCounter}`;
}

export function storePath(store: Store): StorePath {
  const fast = store instanceof MemoryStore ? store[fastPath] : undefined;
  const apply = fast?.applySync ?? store.applySync?.bind(store) ?? store.apply.bind(store);
  const makeLease = fast === undefined ? sharedLeaseId : localLeaseId;
  // The one way every decision is made: a lease id if a concurrency policy needs one, the store, the decision.
  const general = (key: string, set: PolicySet, cost: number, mode: StoreMode, lease?: string) => {
    const leaseId = lease ?? (set.concurrent && mode === 'consume' ? makeLease() : undefined);
    return andThen(apply(key, set, cost, mode, leaseId), (results) => decide(set.policies, results, leaseId));
  };
  const sync = fast !== undefined || store.applySync !== undefined;
  if (fast === undefined) {
    return {
      sync,
      decide: general,
      allow: (key, set, cost) => andThen(general(key, set, cost, 'consume'), (d) => d.allowed),
    };
  }
  return {
    sync,
    decide(key, set, cost, mode, lease) {
      // One policy whose state is numbers: the decision is built straight from the store's result slot.
      if (mode !== 'refund' && set.policies.length === 1) {
        const one = fast.one(key, set, cost, mode);
        if (one !== undefined) return decideOne(set.policies, one);
      }
      return general(key, set, cost, mode, lease);
    },
    allow(key, set, cost) {
      // A concurrency policy records its holder under a lease id, which only the general path makes.
      if (set.concurrent) return (general(key, set, cost, 'consume') as Decision).allowed;
      return fast.allow(key, set, cost);
    },
  };
}

import type { PolicyResult } from '../core/algorithms/types.js';
import { type Decision, decide, decideOne } from '../core/decision.js';
import type { PolicySet } from '../core/policy.js';
import { memoryFastPath } from '../stores/memory.js';
import type { Store, StoreMode } from '../stores/store.js';

/**
 * How a Limiter reaches its store, chosen once when the Limiter is made: synchronously when the store can
 * answer so (the memory store, by its shortcuts; any store with `applySync`), else through promises. The
 * Limiter's methods are written once over this; only here and in the memory store do the shortcuts exist.
 */
export interface StorePath {
  /** True when `decide` and `allow` never return a promise. */
  readonly sync: boolean;
  decide(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): Decision | Promise<Decision>;
  /** `decide` in consume mode, answering only whether the request may go on. */
  allow(key: string, set: PolicySet, cost: number): boolean | Promise<boolean>;
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

function leaseFor(set: PolicySet, mode: StoreMode, given: string | undefined, make: () => string) {
  return given ?? (set.concurrent && mode === 'consume' ? make() : undefined);
}

export function storePath(store: Store): StorePath {
  const fast = memoryFastPath(store);
  if (fast !== undefined) {
    const general = (key: string, set: PolicySet, cost: number, mode: StoreMode, lease?: string) => {
      const leaseId = leaseFor(set, mode, lease, localLeaseId);
      return decide(set.policies, fast.applySync(key, set, cost, mode, leaseId), leaseId);
    };
    return {
      sync: true,
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
        if (set.concurrent) return general(key, set, cost, 'consume').allowed;
        return fast.allow(key, set, cost);
      },
    };
  }
  const applySync = store.applySync?.bind(store);
  if (applySync !== undefined) {
    const decideSync = (key: string, set: PolicySet, cost: number, mode: StoreMode, lease?: string) => {
      const leaseId = leaseFor(set, mode, lease, sharedLeaseId);
      return decide(set.policies, applySync(key, set, cost, mode, leaseId), leaseId);
    };
    return {
      sync: true,
      decide: decideSync,
      allow: (key, set, cost) => decideSync(key, set, cost, 'consume').allowed,
    };
  }
  const decideAsync = async (key: string, set: PolicySet, cost: number, mode: StoreMode, lease?: string) => {
    const leaseId = leaseFor(set, mode, lease, sharedLeaseId);
    const results: readonly PolicyResult[] = await store.apply(key, set, cost, mode, leaseId);
    return decide(set.policies, results, leaseId);
  };
  return {
    sync: false,
    decide: decideAsync,
    allow: async (key, set, cost) => (await decideAsync(key, set, cost, 'consume')).allowed,
  };
}

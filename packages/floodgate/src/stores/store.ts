import type { PolicyResult } from '../core/algorithms/types.js';
import type { PolicySet } from '../core/policy.js';

/**
 * What a store is asked to do with one identifier's policies:
 * - `consume`: decide every policy for `cost`; if all allow, charge all; otherwise charge none, and report
 *   the policies that would have allowed as they stay (a zero-cost look at them).
 * - `peek`: decide as `consume` would, charging nothing.
 * - `refund`: give `cost` back to every policy (for concurrency: release `lease`), then report as a
 *   zero-cost peek.
 */
export type StoreMode = 'consume' | 'peek' | 'refund';

/**
 * The contract between the Limiter and where state lives. Implement it to keep limits somewhere else;
 * a store must decide exactly as the pure algorithms in `floodgate`'s `algorithms` do (the shared decision
 * vectors in the repository test that), and apply all policies of a set atomically.
 *
 * Results come back in the order of `set.policies`.
 */
export interface Store {
  apply(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): Promise<readonly PolicyResult[]>;
  /** Forgets all state of `key` under the policies of `set`. */
  reset(key: string, set: PolicySet): Promise<void>;
}

/** A store that can also answer synchronously (the memory store): the Limiter's `*Sync` methods use it. */
export interface SyncStore extends Store {
  applySync(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): readonly PolicyResult[];
  resetSync(key: string, set: PolicySet): void;
  /**
   * Optional: `applySync` for a set of one policy, answering in a result the store reuses at its next call
   * (read it at once); undefined when the store has no such path for this set.
   */
  applyOneSync?(
    key: string,
    set: PolicySet,
    cost: number,
    mode: 'consume' | 'peek',
  ): PolicyResult | undefined;
  /** Optional: `applySync` in consume mode, answering only whether every policy allowed it. */
  allowSync?(key: string, set: PolicySet, cost: number): boolean;
}

/** True when `store` offers the synchronous fast path. */
export function isSyncStore(store: Store): store is SyncStore {
  const candidate = store as Partial<SyncStore>;
  return typeof candidate.applySync === 'function' && typeof candidate.resetSync === 'function';
}

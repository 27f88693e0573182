import type { PolicyResult } from '../core/algorithms/types.js';
import type { MaybePromise } from '../core/maybe.js';
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
 * Results come back in the order of `set.policies`, as a value or a promise of one (a Redis store
 * answers a decision made from a quota lease at once).
 */
export interface Store {
  apply(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): MaybePromise<readonly PolicyResult[]>;
  /**
   * Optional: `apply` answered at once, for a store whose state is in this process. A Limiter over such a
   * store decides without promises, and offers `consumeSync` and `allowSync`.
   */
  applySync?(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): readonly PolicyResult[];
  /** Forgets all state of `key` under the policies of `set`. */
  reset(key: string, set: PolicySet): Promise<void>;
}

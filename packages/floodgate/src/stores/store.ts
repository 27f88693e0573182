import type { PolicyResult } from '../core/algorithms/types.js';
import type { MaybePromise } from '../core/maybe.js';
import type { PolicySet } from '../core/policy.js';
import type { GroupMember } from './group.js';

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
  /**
   * Optional: several identifiers decided together, in consume mode: all are charged, or none (a request
   * that must pass a per-user and a per-route limit). Results come back per member, as `apply`'s. Returns
   * undefined when it cannot decide these members in one step (a Redis Cluster, where they live on
   * different slots); the Limiter then charges each and gives back on a refusal.
   */
  applyGroup?(
    members: readonly GroupMember[],
  ): MaybePromise<readonly (readonly PolicyResult[])[]> | undefined;
  /** Forgets all state of `key` under the policies of `set`. */
  reset(key: string, set: PolicySet): Promise<void>;
}

/**
 * Floodgate core: policies, algorithms, the Limiter and the in-memory store. Never imports a framework or
 * a Redis client; those live in their own subpaths.
 */

export type { ConcurrencyState, Lease } from './core/algorithms/concurrency.js';
export { concurrency } from './core/algorithms/concurrency.js';
export type { FixedWindowState } from './core/algorithms/fixed-window.js';
export { fixedWindow } from './core/algorithms/fixed-window.js';
export type { GcraState } from './core/algorithms/gcra.js';
export { gcra } from './core/algorithms/gcra.js';
export { algorithmNames, algorithms } from './core/algorithms/index.js';
export type { SlidingCounterState } from './core/algorithms/sliding-window-counter.js';
export { slidingWindowCounter } from './core/algorithms/sliding-window-counter.js';
export type { SlidingLogState } from './core/algorithms/sliding-window-log.js';
export { slidingWindowLog } from './core/algorithms/sliding-window-log.js';
export { tokenBucket } from './core/algorithms/token-bucket.js';
export type {
  Algorithm,
  AlgorithmName,
  AlgorithmParams,
  OutagePolicy,
  Outcome,
  PolicyNumbers,
  PolicyResult,
} from './core/algorithms/types.js';
export {
  Aimd,
  type AimdOptions,
  type CapacityBounds,
  type CapacityEstimator,
  Gradient2,
  type Gradient2Options,
} from './core/capacity.js';
export { type Clock, ManualClock, systemClock } from './core/clock.js';
export type { Decision, DecisionReason, DenyReason, PolicyDecision } from './core/decision.js';
export { type Duration, parseDuration } from './core/duration.js';
export {
  FloodgateError,
  type FloodgateErrorCode,
  type InvalidOption,
  isInvalidOption,
} from './core/errors.js';
export { boundKey, hashKey } from './core/keys.js';
export {
  type ConcurrencyPolicySpec,
  type Policy,
  type PolicySet,
  type PolicySpec,
  type RatePolicySpec,
  resolvePolicies,
  resolvePolicy,
} from './core/policy.js';
export {
  type CostOptions,
  type GroupRequest,
  type Key,
  Limiter,
  type LimiterConfig,
  type LimiterOptions,
  RateLimitedError,
  type WaitOptions,
  type WrapOptions,
} from './limiter/limiter.js';
export { type LoginAttempt, LoginGuard, type LoginGuardOptions } from './limiter/login.js';
export {
  type Permit,
  PRIORITIES,
  type Priority,
  Shedder,
  type ShedderOptions,
  type ShedderStats,
} from './limiter/shedder.js';
export type { GroupMember } from './stores/group.js';
export { MemoryStore, type MemoryStoreOptions } from './stores/memory.js';
export type { Store, StoreMode } from './stores/store.js';

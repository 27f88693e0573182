import type { AlgorithmName, PolicyResult } from './algorithms/types.js';
import type { Policy } from './policy.js';

/** Why a request was refused. */
export type DenyReason =
  /** The policy has no room for this cost now; `retryAfter` says when it will. */
  | 'limit'
  /** The cost exceeds what the policy can ever allow (its limit or burst); retrying cannot help. */
  | 'cost-exceeds-limit';

/**
 * Why a decision is what it is, when there is more to say than "the limits allow it": a refusal's
 * reason, or that the store could not decide and its outage policy did (allowing with `store-open` or
 * `store-fallback`, refusing with `store-closed`).
 */
export type DecisionReason = DenyReason | 'store-open' | 'store-closed' | 'store-fallback';

/** One policy's view of a request. */
export interface PolicyDecision extends PolicyResult {
  readonly policy: string;
  readonly algorithm: AlgorithmName;
  readonly limit: number;
  /** The policy's window in ms (for concurrency, the lease timeout). */
  readonly window: number;
}

/**
 * The answer to a request. Its numbers come from the most restrictive policy: when refused, the one that
 * makes the caller wait longest; when allowed, the one with the least `remaining`. `policies` has every
 * policy's numbers (e.g. one `RateLimit` header item each).
 */
export interface Decision extends PolicyDecision {
  /** Set when refused, and when the store's outage policy decided (see `DecisionReason`). */
  readonly reason: DecisionReason | undefined;
  /** When a concurrency policy granted slots: pass it to `limiter.release(key, leaseId)` when done. */
  readonly leaseId: string | undefined;
  readonly policies: readonly PolicyDecision[];
}

function policyDecision(policy: Policy, result: PolicyResult): PolicyDecision {
  return {
    policy: policy.name,
    algorithm: policy.algorithm,
    limit: policy.burst,
    window: policy.window,
    allowed: result.allowed,
    remaining: result.remaining,
    resetAt: result.resetAt,
    retryAfter: result.retryAfter,
    resetAfter: result.resetAfter,
  };
}

/** Index of the policy whose numbers a decision reports. */
export function mostRestrictive(results: readonly PolicyResult[]): number {
  let pick = 0;
  const allowed = results.every((r) => r.allowed);
  for (let i = 1; i < results.length; i++) {
    const r = results[i]!;
    const best = results[pick]!;
    if (
      allowed ? r.remaining < best.remaining : !r.allowed && (best.allowed || r.retryAfter > best.retryAfter)
    ) {
      pick = i;
    }
  }
  return pick;
}

/** Built on the hot path: the per-policy list is only assembled when read. */
class LimiterDecision implements Decision {
  readonly allowed: boolean;
  readonly policy: string;
  readonly algorithm: AlgorithmName;
  readonly limit: number;
  readonly window: number;
  readonly remaining: number;
  readonly resetAt: number;
  readonly retryAfter: number;
  readonly resetAfter: number;
  readonly reason: DecisionReason | undefined;
  readonly leaseId: string | undefined;
  #policies: readonly Policy[];
  /** Undefined for a single policy, whose numbers are the decision's own. */
  #results: readonly PolicyResult[] | undefined;
  #decisions: readonly PolicyDecision[] | undefined;

  constructor(
    allowed: boolean,
    policies: readonly Policy[],
    results: readonly PolicyResult[] | undefined,
    pick: number,
    leaseId: string | undefined,
    result: PolicyResult = results![pick]!,
  ) {
    const policy = policies[pick]!;
    this.allowed = allowed;
    this.policy = policy.name;
    this.algorithm = policy.algorithm;
    this.limit = policy.burst;
    this.window = policy.window;
    this.remaining = result.remaining;
    this.resetAt = result.resetAt;
    this.retryAfter = result.retryAfter;
    this.resetAfter = result.resetAfter;
    const outage = result.outage;
    this.reason =
      outage !== undefined
        ? `store-${outage}`
        : allowed
          ? undefined
          : result.retryAfter === Number.POSITIVE_INFINITY
            ? 'cost-exceeds-limit'
            : 'limit';
    this.leaseId = allowed ? leaseId : undefined;
    this.#policies = policies;
    this.#results = results;
  }

  get policies(): readonly PolicyDecision[] {
    const results = this.#results;
    this.#decisions ??=
      results === undefined
        ? [policyDecision(this.#policies[0]!, this)]
        : this.#policies.map((p, i) => policyDecision(p, results[i]!));
    return this.#decisions;
  }

  /** Its public fields and every policy's numbers (the per-policy list is a getter, so it is added). */
  toJSON() {
    return { ...this, policies: this.policies };
  }
}

/**
 * The decision of a single policy from its numbers, which are copied: `result` may be a store's scratch
 * slot, reused by its next call.
 */
export function decideOne(policies: readonly Policy[], result: PolicyResult): Decision {
  return new LimiterDecision(result.allowed, policies, undefined, 0, undefined, result);
}

/** Combines the per-policy results of one request into a decision. */
export function decide(
  policies: readonly Policy[],
  results: readonly PolicyResult[],
  leaseId?: string,
): Decision {
  if (results.length === 1) return new LimiterDecision(results[0]!.allowed, policies, results, 0, leaseId);
  let allowed = true;
  for (const r of results) allowed &&= r.allowed;
  return new LimiterDecision(allowed, policies, results, mostRestrictive(results), leaseId);
}

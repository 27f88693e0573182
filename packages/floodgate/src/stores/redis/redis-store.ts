import type { PolicyResult } from '../../core/algorithms/types.js';
import type { MaybePromise } from '../../core/maybe.js';
import type { PolicySet } from '../../core/policy.js';
import type { GroupMember } from '../group.js';
import type { Store, StoreMode } from '../store.js';
import { RedisDecisions } from './decisions.js';
import { DenyCache } from './deny-cache.js';
import { type GrantStats, QuotaGrants } from './grants.js';
import { type RedisStoreOptions, resolveRedisOptions } from './options.js';
import { OutageAnswers } from './outage.js';
import { type RunnerStats, ScriptRunner } from './runner.js';
import { hashSlot } from './slot.js';
import { Targets } from './targets.js';

/** Counters for metrics and benchmarks. */
export interface RedisStoreStats extends RunnerStats, GrantStats {
  /** Decisions answered from the deny cache. */
  cacheHits: number;
  /** Decisions answered by `onStoreError`. */
  degraded: number;
}

/**
 * A store in Redis or Valkey, shared by every process that uses the same server and prefix. Each decision
 * is one atomic Lua script (all policies of an identifier checked and charged together), decided on the
 * server's clock; decisions made while a call is outstanding travel together in the next calls. Every key
 * expires when its state stops mattering. Keys of one identifier share a hash tag, so it works on a Redis
 * Cluster.
 *
 * The store itself is options, routing and outage policy; its parts: `ScriptRunner` (batches, codec,
 * timeout, breaker, NOSCRIPT), `RedisDecisions` (a decision in Redis, or the outage policy's answer),
 * `QuotaGrants` (decisions from a slice of quota held locally), `DenyCache` (refusals remembered) and
 * `OutageAnswers` (`onStoreError`). Parts call the parts below them, never the store.
 */
export class RedisStore implements Store {
  readonly #runner: ScriptRunner;
  readonly #redis: RedisDecisions;
  readonly #targets: Targets;
  readonly #cluster: boolean;
  readonly #denied: DenyCache | undefined;
  readonly #grants: QuotaGrants | undefined;
  readonly stats: RedisStoreStats = {
    scripts: 0,
    decisions: 0,
    cacheHits: 0,
    degraded: 0,
    failures: 0,
    leases: 0,
    leasedUnits: 0,
    returnedUnits: 0,
    lapsedUnits: 0,
    localDecisions: 0,
  };

  constructor(options: RedisStoreOptions) {
    const o = resolveRedisOptions(options);
    this.#runner = new ScriptRunner(o.runner, this.stats);
    this.#cluster = o.runner.redis.cluster;
    this.#targets = new Targets(o.prefix);
    this.#denied = o.denyMax > 0 ? new DenyCache(o.denyMax, o.runner.timers) : undefined;
    const outage = new OutageAnswers(o.outage, o.local, o.runner.probeInterval, this.stats);
    this.#redis = new RedisDecisions(this.#runner, this.#targets, outage, this.#denied);
    this.#grants = o.grants && new QuotaGrants(o.grants, this.#redis, this.stats);
  }

  /** Gives back the units of lapsed quota grants now (each grant also gives them back at its end, on a timer). */
  sweep(): void {
    this.#grants?.sweep();
  }

  /** False while Redis is failing (after a failed call, until one succeeds). */
  get healthy(): boolean {
    return this.#runner.healthy;
  }

  apply(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): MaybePromise<readonly PolicyResult[]> {
    const denied = this.#denied;
    if (denied !== undefined) {
      if (mode === 'refund') denied.forget(key);
      else {
        const hit = denied.lookup(key, set, cost);
        if (hit !== undefined) {
          this.stats.cacheHits++;
          return hit;
        }
      }
    }
    if (mode === 'consume' && this.#grants?.covers(set)) return this.#grants.take(key, set, cost);
    return this.#redis.decide(key, set, cost, mode, lease);
  }

  /**
   * Several identifiers charged all or none, in one script call (on a Cluster, only when they share a hash
   * slot: otherwise undefined, and the Limiter charges each and gives back). Exact: no quota grant and no
   * deny cache answer for a group.
   */
  applyGroup(members: readonly GroupMember[]): Promise<(readonly PolicyResult[])[]> | undefined {
    if (this.#cluster) {
      const slots = members.map((m) => hashSlot(this.#targets.of(m.key, m.set).keys[0]!));
      if (slots.some((s) => s !== slots[0])) return undefined;
    }
    return this.#redis.group(members);
  }

  /** Deletes the identifier's state. Rejects if Redis cannot be reached within the timeout. */
  async reset(key: string, set: PolicySet): Promise<void> {
    this.#denied?.forget(key);
    await this.#redis.reset(key, set);
  }

  /**
   * Gives back the units of quota grants still held and stops the background probe; from now on every
   * decision is the outage policy's. Resolves once what it gave back is in Redis or has failed (never
   * rejects): await it before closing the client, which is yours to close.
   */
  async close(): Promise<void> {
    // The give-backs are queued before the runner stops: they still go to Redis, the decisions after do not.
    const returned = this.#grants?.close();
    this.#runner.stop();
    await returned;
  }
}

import type { OutagePolicy, PolicyResult } from '../../core/algorithms/types.js';
import type { PolicySet } from '../../core/policy.js';
import type { GroupMember } from '../group.js';
import { MemoryStore } from '../memory.js';
import type { Store } from '../store.js';

/**
 * The outage policy's answers (`onStoreError`), for every decision Redis cannot make: each marked as
 * such (a decision's `reason` then says `store-open`...) and counted in `degraded`. `fallback` decides in
 * an in-memory store of this process, made the first time it is needed.
 */
export class OutageAnswers {
  #fallback: MemoryStore | undefined;

  constructor(
    private readonly policy: OutagePolicy,
    /** Wall time, for the times the answers report. */
    private readonly local: { now(): number },
    /** When Redis is next tried: a closed answer's retry. */
    private readonly retryIn: number,
    private readonly stats: { degraded: number },
  ) {}

  /** Forgets the identifier in the fallback store, if there is one. */
  async reset(key: string, set: PolicySet): Promise<void> {
    await this.#fallback?.reset(key, set);
  }

  /** The answer to one decision, asked as `Store.apply` is. */
  answer(...[key, set, cost, mode, lease]: Parameters<Store['apply']>): readonly PolicyResult[] {
    this.stats.degraded++;
    if (this.policy === 'fallback') {
      return this.#store()
        .applySync(key, set, cost, mode, lease)
        .map((r) => ({ ...r, outage: 'fallback' as const }));
    }
    const now = this.local.now();
    if (this.policy === 'open' || mode === 'refund') {
      return set.policies.map((p) => ({
        allowed: true,
        remaining: p.burst,
        resetAt: now,
        retryAfter: 0,
        resetAfter: 0,
        outage: this.policy,
      }));
    }
    const wait = this.retryIn;
    return set.policies.map(() => ({
      allowed: false,
      remaining: 0,
      resetAt: now + wait,
      retryAfter: wait,
      resetAfter: wait,
      outage: 'closed' as const,
    }));
  }

  /** A group's answers: the fallback store decides it all or none too. */
  group(members: readonly GroupMember[]): (readonly PolicyResult[])[] {
    if (this.policy !== 'fallback') return members.map((m) => this.answer(m.key, m.set, m.cost, 'consume'));
    this.stats.degraded += members.length;
    return this.#store()
      .applyGroup(members)
      .map((results) => results.map((r) => ({ ...r, outage: 'fallback' as const })));
  }

  #store(): MemoryStore {
    this.#fallback ??= new MemoryStore({ clock: this.local, maxKeys: 100_000 });
    return this.#fallback;
  }
}

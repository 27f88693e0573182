import type { PolicyResult } from '../../core/algorithms/types.js';
import type { PolicySet } from '../../core/policy.js';
import type { GroupMember } from '../group.js';
import type { Store } from '../store.js';
import type { Operation } from './codec.js';
import type { DenyCache } from './deny-cache.js';
import type { OutageAnswers } from './outage.js';
import type { ScriptRunner } from './runner.js';
import type { Targets } from './targets.js';

/**
 * Decisions made in Redis, each answered by the outage policy when Redis cannot make it (the breaker is
 * tripped, or the call failed): what the store and the quota grants both ask for. Never rejects, except
 * `reset`, which says so when Redis could not be reached.
 */
export class RedisDecisions {
  constructor(
    private readonly runner: ScriptRunner,
    private readonly targets: Targets,
    private readonly outage: OutageAnswers,
    private readonly denied: DenyCache | undefined,
  ) {}

  /** One decision, asked as `Store.apply` is. */
  decide(...[key, set, cost, mode, lease]: Parameters<Store['apply']>): Promise<readonly PolicyResult[]> {
    if (!this.runner.available) return Promise.resolve(this.outage.answer(key, set, cost, mode, lease));
    const target = this.targets.of(key, set);
    const op: Operation =
      mode === 'peek'
        ? { kind: 'peek', target, cost }
        : lease === undefined
          ? { kind: mode, target, cost }
          : { kind: mode, target, cost, lease };
    return this.runner.run(op).then(
      (answer) => {
        const results = answer.results[0]!;
        if (mode === 'consume') this.denied?.remember(key, set, cost, results);
        return results;
      },
      () => this.outage.answer(key, set, cost, mode, lease),
    );
  }

  /** A consume that also takes up to `ask` units of quota, answered with the units granted (0 in an outage). */
  grant(
    key: string,
    set: PolicySet,
    cost: number,
    ask: number,
  ): Promise<{ readonly results: readonly PolicyResult[]; readonly granted: number }> {
    const outage = () => ({ results: this.outage.answer(key, set, cost, 'consume'), granted: 0 });
    if (!this.runner.available) return Promise.resolve(outage());
    return this.runner.run({ kind: 'grant', target: this.targets.of(key, set), cost, ask }).then((answer) => {
      const results = answer.results[0]!;
      this.denied?.remember(key, set, cost, results);
      return { results, granted: answer.granted };
    }, outage);
  }

  /** The outage policy's own answer for one consume decision (charged in the fallback store, counted). */
  outageAnswer(key: string, set: PolicySet, cost: number): readonly PolicyResult[] {
    return this.outage.answer(key, set, cost, 'consume');
  }

  /**
   * Gives granted units back while the earliest window they were charged in is open (`until`, Redis time).
   * Resolves whether Redis took them or not: units that cannot go back are lost, never an error.
   */
  giveBack(key: string, set: PolicySet, units: number, until: number): Promise<void> {
    return this.runner.run({ kind: 'return', target: this.targets.of(key, set), units, until }).then(
      () => undefined,
      () => undefined,
    );
  }

  /** Several identifiers charged all or none in one call. */
  group(members: readonly GroupMember[]): Promise<(readonly PolicyResult[])[]> {
    if (!this.runner.available) return Promise.resolve(this.outage.group(members));
    const op: Operation = {
      kind: 'group',
      members: members.map((m) => ({ target: this.targets.of(m.key, m.set), cost: m.cost })),
    };
    return this.runner.run(op).then(
      (answer) => [...answer.results],
      () => this.outage.group(members),
    );
  }

  /** Deletes the identifier's state; rejects if Redis could not be reached. */
  async reset(key: string, set: PolicySet): Promise<void> {
    await this.outage.reset(key, set);
    await this.runner.run({ kind: 'reset', target: this.targets.of(key, set) });
  }
}

import type { PolicySet } from '../../core/policy.js';
import { encodeKeys, encodePolicies, type Target } from './codec.js';

/** Where an identifier's state lives: its keys under the store's prefix, and its set's script arguments (encoded once per set). */
export class Targets {
  readonly #policies = new WeakMap<PolicySet, readonly string[]>();

  constructor(private readonly prefix: string) {}

  of(key: string, set: PolicySet): Target {
    let policies = this.#policies.get(set);
    if (policies === undefined) {
      policies = encodePolicies(set);
      this.#policies.set(set, policies);
    }
    return { keys: encodeKeys(this.prefix, key, set), policies };
  }
}

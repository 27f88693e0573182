import type { PolicyResult } from '../core/algorithms/types.js';
import type { PolicySet } from '../core/policy.js';
import type { StoreMode } from './store.js';

/** One identifier's part in a group decision: its policies, and what it costs. */
export interface GroupMember {
  readonly key: string;
  readonly set: PolicySet;
  readonly cost: number;
}

const allow = (results: readonly PolicyResult[]) => results.every((r) => r.allowed);

/**
 * A group decided all or nothing by a store that answers at once: every member is looked at, and all are
 * charged only if all would allow; otherwise none is, and those that would have allowed report their state
 * as it stays (a zero-cost look), those that refuse their refusal. The Redis script does the same in Lua.
 */
export function decideGroup(
  members: readonly GroupMember[],
  apply: (member: GroupMember, cost: number, mode: StoreMode) => readonly PolicyResult[],
): (readonly PolicyResult[])[] {
  const looks = members.map((m) => apply(m, m.cost, 'peek'));
  const oks = looks.map(allow);
  if (!oks.every(Boolean)) return members.map((m, i) => (oks[i] ? apply(m, 0, 'peek') : looks[i]!));
  const charged: (readonly PolicyResult[])[] = [];
  for (const member of members) {
    const results = apply(member, member.cost, 'consume');
    if (!allow(results)) {
      // The clock moved between the look and the charge (stepped back, as a system clock may be): give back
      // what was charged, in the same turn, so that nobody saw it.
      for (let i = 0; i < charged.length; i++) apply(members[i]!, members[i]!.cost, 'refund');
      const refused = charged.length;
      return members.map((m, i) => (i === refused ? results : apply(m, 0, 'peek')));
    }
    charged.push(results);
  }
  return charged;
}

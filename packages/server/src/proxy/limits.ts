import type { IncomingMessage } from 'node:http';
import {
  type Decision,
  type GroupRequest,
  Limiter,
  type Priority,
  type Shedder,
  type Store,
} from 'floodgate';
import {
  allOf,
  andThen,
  attempt,
  groupIp,
  HttpGuard,
  type HttpLimitOptions,
  limited,
  type MaybePromise,
  problem,
  type RequestView,
  type ResolvedHttpOptions,
  rateLimitHeaders,
  resolveHttpOptions,
  unavailable,
  type Verdict,
} from 'floodgate/http';
import { describeKey, type RequestKey } from './keys.js';

/** One of a rule's limits, as configured (its key made ready). */
export interface LimitSpec {
  readonly name: string;
  readonly key: RequestKey;
  readonly onMissingKey: 'ip' | 'skip' | 'reject';
  readonly policies: unknown;
  readonly cost: number;
}

/** What a rule's limits share: the guard options that are not one limit's own. */
export type SharedOptions = Pick<
  HttpLimitOptions<IncomingMessage>,
  'trustProxy' | 'ipv6Prefix' | 'countOnly' | 'isFailure' | 'allow' | 'deny' | 'headers'
> & {
  readonly onError?: (error: unknown) => void;
  readonly shed?: Shedder;
  readonly priority?: () => Priority;
};

interface Limit {
  readonly name: string;
  readonly limiter: Limiter;
  readonly key: RequestKey;
  readonly onMissingKey: 'ip' | 'skip' | 'reject';
  readonly cost: number;
  /** Keeps this limit's identifiers apart from the other limits' in the rule's store. */
  readonly prefix: string;
}

// Never charged: the options are resolved once for the lists, the client address and the fields only.
const UNUSED = { limit: 1, window: 1_000 };
const PASS: Verdict = { kind: 'pass', headers: [] };

const respond = (response: ReturnType<typeof problem>): Verdict => ({ kind: 'respond', ...response });

/**
 * A rule with several limits, each with its own key (per API key, and per client IP as a backstop, say):
 * every limit is decided, and all are charged or none, by the library's `Limiter.consumeAll` over the
 * rule's store: in one step on the memory store and on Redis, so a request refused by one limit spends
 * nothing of the others. The steps are the guard's: the shedder first (a guard of the library does it),
 * then the address lists, the keys, the decision, the verdict, and with `countOnly` the charges given back
 * once the upstream's answer says they do not count.
 */
export class LimitGroup {
  readonly #limits: Limit[];
  readonly #o: ResolvedHttpOptions<IncomingMessage>;
  readonly #report: (error: unknown) => void;
  /** The server's own protection, as a guard of the library with no limit of its own (every key missing). */
  readonly #shed: HttpGuard<IncomingMessage> | undefined;

  /** Each limit's limiter by its name, for the admin API. */
  get limiters(): (readonly [string, Limiter])[] {
    return this.#limits.map((l) => [l.name, l.limiter] as const);
  }

  constructor(limits: readonly LimitSpec[], store: Store, shared: SharedOptions) {
    const { shed, priority, onError, ...options } = shared;
    this.#o = resolveHttpOptions({ ...options, policies: UNUSED });
    this.#report = (error) => {
      try {
        onError?.(error);
      } catch {}
    };
    this.#limits = limits.map((l) => ({
      name: l.name,
      limiter: new Limiter({ policies: l.policies as never, store, traffic: true }),
      key: l.key,
      onMissingKey: l.onMissingKey,
      cost: l.cost,
      prefix: `${l.name}|`,
    }));
    this.#shed =
      shed === undefined
        ? undefined
        : new HttpGuard({
            policies: UNUSED,
            key: () => undefined,
            onMissingKey: 'skip',
            shed,
            ...(priority === undefined ? {} : { priority }),
          });
  }

  decide(req: IncomingMessage, view: RequestView): MaybePromise<Verdict> {
    if (this.#shed === undefined) return this.#limit(req, view);
    return andThen(this.#shed.decide(req, view), (slot) => {
      if (slot.kind === 'respond') return slot;
      return attempt(
        () => this.#limit(req, view),
        (verdict) => holding(verdict, slot),
        (error) => {
          slot.settle?.(undefined);
          throw error;
        },
      );
    });
  }

  #limit(req: IncomingMessage, view: RequestView): MaybePromise<Verdict> {
    const o = this.#o;
    const address = o.clientIp(view.peer, o.trustsProxies ? view.header('x-forwarded-for') : undefined);
    // Deny first: "always refused" holds even for an address inside an allowed block.
    if (!o.deny.empty && o.deny.addresses.has(address)) return forbidden();
    if (!o.allow.empty && o.allow.addresses.has(address)) return PASS;
    const ip = groupIp(address, o.ipv6Prefix);
    const keys = allOf(
      this.#limits.map((l) => (typeof l.key === 'function' ? l.key(req) : l.key.extract(view, ip))),
    );
    return andThen(keys, (extracted) => {
      const requests: GroupRequest[] = [];
      const names: string[] = [];
      for (const [i, limit] of this.#limits.entries()) {
        let key = extracted[i];
        if (key === undefined || key === '') {
          if (limit.onMissingKey === 'skip') continue;
          if (limit.onMissingKey === 'reject')
            return respond(problem(400, 'Bad Request', `This request carries no ${describeKey(limit.key)}.`));
          key = ip === '' ? 'ip:unknown' : `ip:${ip}`;
        }
        if (!o.deny.empty && o.deny.keys.has(key)) return forbidden();
        if (!o.allow.empty && o.allow.keys.has(key)) return PASS;
        requests.push({ limiter: limit.limiter, key: limit.prefix + key, cost: limit.cost });
        names.push(limit.name);
      }
      if (requests.length === 0) return PASS;
      return attempt(
        () => Limiter.consumeAll(requests),
        (decisions) => this.#verdict(requests, names, decisions),
        (error) => {
          // As the guard's passOnStoreError (its default): a store that rejects lets the request through.
          this.#report(error);
          return PASS;
        },
      );
    });
  }

  #verdict(requests: readonly GroupRequest[], names: readonly string[], decisions: Decision[]): Verdict {
    const o = this.#o;
    const now = o.clock.now();
    const refused = decisions.findIndex((d) => !d.allowed);
    if (refused !== -1) {
      const decision = decisions[refused]!;
      if (decision.reason === 'store-closed')
        return respond(unavailable(Math.max(1, Math.ceil(decision.retryAfter / 1000))));
      const headers = rateLimitHeaders(decision, now, o.headers, o.legacyHeaders);
      return respond(limited(decision, headers, { limit: names[refused] }));
    }
    // The fields tell of the limit nearest to refusing.
    let nearest = decisions[0]!;
    for (const d of decisions) if (d.remaining / d.limit < nearest.remaining / nearest.limit) nearest = d;
    const headers = rateLimitHeaders(nearest, now, o.headers, o.legacyHeaders);
    const countOnly = o.countOnly;
    if (countOnly === undefined) return { kind: 'pass', headers, decision: nearest };
    let settled = false;
    const settle = (status: number | undefined) => {
      if (settled) return;
      settled = true;
      // An answer that never reached the client is no success; a broken isFailure never refunds.
      let failed = true;
      try {
        failed = status === undefined || o.isFailure(status) === true;
      } catch (error) {
        this.#report(error);
      }
      if ((countOnly === 'failed') === failed) return;
      for (const r of requests) r.limiter.refund(r.key, r.cost).catch(this.#report);
    };
    return { kind: 'pass', headers, decision: nearest, settle };
  }
}

function forbidden(): Verdict {
  return respond(problem(403, 'Forbidden', 'This client is not allowed.'));
}

/** A verdict that also gives the shed slot back when it is settled (or at once, when it refuses). */
function holding(verdict: Verdict, slot: Extract<Verdict, { kind: 'pass' }>): Verdict {
  if (verdict.kind === 'respond') {
    slot.settle?.(undefined);
    return verdict;
  }
  const inner = verdict.settle;
  return {
    ...verdict,
    settle: (status) => {
      slot.settle?.(status);
      inner?.(status);
    },
    ...(slot.switched === undefined ? {} : { switched: slot.switched }),
  };
}

import { type Decision, isInvalidOption, Limiter, resolvePolicy, type Store } from 'floodgate';
import { allOf, andThen, type MaybePromise } from 'floodgate/http';
import { alignDecision, alignedWindow } from './aligned.js';
import {
  answer,
  type Code,
  counted,
  type DescriptorStatus,
  type Limited,
  type Matched,
  OK_NO_LIMIT,
  type Outcome,
  type RlsResponse,
  refusesAll,
} from './answer.js';
import { type DescriptorNode, type Level, type Limit, type RlsConfig, UNITS } from './config.js';
import { counterKey, digest } from './keys.js';
import { checkRequest, costOf, InvalidRequest, type RequestDescriptor, type RlsRequest } from './request.js';
import { matchesWildcard } from './wildcard.js';

// The decision of a ShouldRateLimit call, apart from gRPC: which node of the domain's tree each descriptor
// ends on, then every limited descriptor charged together, all or nothing.

export {
  BOUNDS,
  type Entry,
  InvalidRequest,
  MAX_COST,
  type RequestDescriptor,
  type RlsRequest,
} from './request.js';
export type { Code, DescriptorStatus, Outcome, RlsResponse };

/** The store is down and its outage policy (`onStoreError: closed`) refuses: gRPC's UNAVAILABLE. */
export class StoreClosed extends Error {
  constructor() {
    super('the rate-limit store is unavailable (onStoreError: closed)');
  }
}

/** Limiters kept, one per distinct limit (configured, or sent with requests). */
const MAX_LIMITERS = 10_000;

/**
 * The nodes a descriptor's entries walk through, the last the one it ends on: at each level an exact value
 * first, then a value with `*`s, then any value (envoyproxy/ratelimit's order). Undefined when it leaves the tree.
 */
function walk(root: Level, entries: RequestDescriptor['entries']): DescriptorNode[] | undefined {
  let level = root;
  const chain: DescriptorNode[] = [];
  for (const { key, value } of entries) {
    const slot = level.get(key);
    const node =
      slot?.exact.get(value) ??
      slot?.wildcards.find((w) => matchesWildcard(w.parts, value))?.node ??
      slot?.any;
    if (node === undefined) return undefined;
    chain.push(node);
    level = node.children;
  }
  return chain;
}

/**
 * The service: the configuration (swapped whole on a reload) and a limiter per limit, over one store.
 * A limit's counters are kept under its name and size, so a reload that keeps a limit keeps its counts.
 */
export class RateLimitService {
  #config: RlsConfig;
  readonly #store: Store;
  readonly #limiters = new Map<string, Limiter>();
  readonly #now: () => number;

  /** Every descriptor in shadow mode, sent limits included (upstream's SHADOW_MODE): counted, never refusing. */
  readonly #shadow: boolean;

  constructor(
    config: RlsConfig,
    store: Store,
    now: () => number = Date.now,
    { shadow = false }: { readonly shadow?: boolean } = {},
  ) {
    this.#config = config;
    this.#store = store;
    this.#now = now;
    this.#shadow = shadow;
  }

  get config(): RlsConfig {
    return this.#config;
  }

  swap(config: RlsConfig): void {
    this.#config = config;
    this.#limiters.clear();
  }

  /** Decides a request; throws `InvalidRequest` for one that cannot be. `outcomes` hears of each descriptor. */
  decide(request: RlsRequest, outcomes?: (outcome: Outcome) => void): MaybePromise<RlsResponse> {
    checkRequest(request);
    const domain = this.#config.get(request.domain);
    if (domain === undefined) {
      // A domain the configuration lacks is answered OK, as upstream answers it, limits sent with it included.
      for (const _ of request.descriptors)
        outcomes?.({ domain: request.domain, descriptor: 'unmatched', code: 'OK', shadow: false });
      const statuses = request.descriptors.map(() => OK_NO_LIMIT);
      return { overallCode: 'OK', statuses, responseHeadersToAdd: [] };
    }
    const now = this.#now();
    const matched = request.descriptors.map((d, i) =>
      this.#match(request.domain, domain.root, d, costOf(request, d), i, now),
    );
    // Enforced descriptors are decided together, all or nothing; shadow-mode ones are counted on their own,
    // since what they would refuse must not refuse the request. A limit of 0 refuses the request without
    // asking the store: the others are only looked at, so that none is charged.
    const enforced: number[] = [];
    const shadowed: number[] = [];
    matched.forEach((m, i) => {
      if (counted(m)) (m.shadow ? shadowed : enforced).push(i);
    });
    const blocked = matched.some((m) => !m.shadow && refusesAll(m));
    const asked = (i: number) => {
      const m = matched[i] as Matched & { limit: Limited };
      return { limiter: this.#limiter(m.limit), key: m.key, cost: m.cost };
    };
    const decided = allOf<Decision[]>([
      blocked
        ? allOf(enforced.map(asked).map((a) => a.limiter.peek(a.key, { cost: a.cost })))
        : Limiter.consumeAll(enforced.map(asked)),
      allOf(shadowed.map(asked).map((a) => a.limiter.decide(a.key, { cost: a.cost }))),
    ]);
    return andThen(decided, ([group, shadows]) => {
      const decisions: (Decision | undefined)[] = new Array(matched.length);
      enforced.forEach((i, j) => {
        decisions[i] = group![j];
      });
      shadowed.forEach((i, j) => {
        decisions[i] = shadows![j];
      });
      decisions.forEach((d, i) => {
        const window = matched[i]!.aligned;
        if (d !== undefined && window !== undefined) decisions[i] = alignDecision(d, window, now);
      });
      if (group!.some((d) => d.reason === 'store-closed')) throw new StoreClosed();
      return answer(request.domain, matched, decisions, blocked, now, outcomes);
    });
  }

  #match(
    domain: string,
    root: Level,
    descriptor: RequestDescriptor,
    cost: number,
    at: number,
    now: number,
  ): Matched {
    const chain = walk(root, descriptor.entries);
    const node = chain?.at(-1);
    const override = descriptor.limit;
    const limit: Limit | undefined =
      override !== undefined ? this.#override(node, override, at) : node?.limit;
    const metric =
      node === undefined
        ? 'unmatched'
        : node.detailed
          ? descriptor.entries
              .map((e, i) => `${e.key}_${chain![i]!.literal ? e.value : `#${digest(e.value).slice(0, 8)}`}`)
              .join('.')
          : node.path;
    const aligned =
      limit !== undefined && !limit.unlimited && limit.algorithm === 'fixed-window'
        ? alignedWindow(now, UNITS[limit.unit])
        : undefined;
    const key =
      limit === undefined || limit.unlimited
        ? ''
        : `${counterKey({ domain, entries: descriptor.entries }, limit)}${aligned === undefined ? '' : `@${aligned.index}`}`;
    return {
      node,
      limit,
      shadow: this.#shadow || (override === undefined && node?.shadow === true),
      cost,
      key,
      metric,
      detailedOf: node?.detailed === true ? node.path : undefined,
      aligned,
    };
  }

  /** A limit sent with a descriptor, over the algorithm its node has; one that cannot be is `InvalidRequest`. */
  #override(
    node: DescriptorNode | undefined,
    override: NonNullable<RequestDescriptor['limit']>,
    at: number,
  ): Limit {
    const configured = node?.limit;
    const limit: Limited = {
      unlimited: false,
      name: configured?.name ?? 'override',
      unit: override.unit,
      requestsPerUnit: override.requests_per_unit,
      algorithm: configured?.unlimited === false ? configured.algorithm : 'fixed-window',
      sent: true,
    };
    if (limit.requestsPerUnit === 0) return limit;
    try {
      resolvePolicy(
        { algorithm: limit.algorithm, limit: limit.requestsPerUnit, window: UNITS[limit.unit] },
        'limit',
      );
    } catch (error) {
      if (!isInvalidOption(error)) throw error;
      throw new InvalidRequest(
        `descriptors[${at}].limit.requests_per_unit must be ${error.expected} for the "${limit.algorithm}" algorithm of ${node?.path ?? 'no descriptor'}; got ${error.got}`,
      );
    }
    return limit;
  }

  /** The limiters made so far, each named by its limit (`name: N per unit`), for the admin API. */
  *limiters(): Iterable<readonly [string, Limiter]> {
    for (const [id, limiter] of this.#limiters) {
      if (limiter.traffic === undefined) continue;
      const [name, , requests, unit] = JSON.parse(id) as [string, string, number, string];
      yield [`${name}: ${requests} per ${unit.toLowerCase()}`, limiter];
    }
  }

  #limiter(limit: Limited): Limiter {
    // Limits sent with requests are chosen by clients: the id is an encoding no part can forge.
    const id = JSON.stringify([
      limit.name,
      limit.algorithm,
      limit.requestsPerUnit,
      limit.unit,
      limit.sent === true,
    ]);
    let limiter = this.#limiters.get(id);
    if (limiter === undefined) {
      // Limits sent with requests make limiters too: bounded, and cheap to make again (the counts are in the store).
      if (this.#limiters.size >= MAX_LIMITERS) this.#limiters.clear();
      limiter = new Limiter({
        policies: {
          name: limit.name,
          algorithm: limit.algorithm,
          limit: limit.requestsPerUnit,
          window: UNITS[limit.unit],
        },
        store: this.#store,
        // Who is limited, for the admin API: by the configured limits only. Sent limits are as many as
        // clients choose (up to MAX_LIMITERS), and each limiter that keeps traffic costs tens of kilobytes.
        traffic: limit.sent !== true,
      });
      // As the configuration refuses one (its algorithms), so does an override the admin API sets later.
      limiter.refuseConcurrency(
        "a request's descriptors are decided together, at once, and a concurrency policy holds a slot for a request's duration, which the RLS protocol never tells",
      );
      this.#limiters.set(id, limiter);
    }
    return limiter;
  }
}

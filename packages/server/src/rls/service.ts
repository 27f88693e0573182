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
  quotaRefuses,
  type RlsResponse,
  refusesAll,
} from './answer.js';
import { type DescriptorNode, type Level, type Limit, nameOf, type RlsConfig, UNITS } from './config.js';
import { dynamicMetadata } from './dynamic-metadata.js';
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

/** The switches that apply to every descriptor, as upstream's environment variables of the same meaning. */
export interface ServiceModes {
  /** SHADOW_MODE: every descriptor counted, none refusing. */
  readonly shadow?: boolean;
  /** QUOTA_MODE: every descriptor in quota mode. */
  readonly quota?: boolean;
  /** RESPONSE_DYNAMIC_METADATA: answers carry dynamic_metadata. */
  readonly dynamicMetadata?: boolean;
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
 * A descriptor's stats label, in upstream's shape: the node's path, or with `detailed_metric` on the node it
 * ends on, every entry with its value; else each level with `value_to_metric` shows the value sent there.
 * A `share_threshold` wildcard shows as itself, its values sharing one count. A value that is not the
 * configuration's is shown as a digest, never itself (it may be a token), and `bounded` says the label is
 * one of as many as clients send, for the metrics to cap.
 */
function metricOf(
  entries: RequestDescriptor['entries'],
  chain: readonly DescriptorNode[],
): { metric: string; bounded: boolean } {
  const node = chain.at(-1)!;
  if (!node.detailed && !node.above.valueToMetric) return { metric: node.path, bounded: false };
  let bounded = false;
  const sent = (value: string) => {
    bounded = true;
    return `#${digest(value).slice(0, 8)}`;
  };
  const parts = entries.map((e, i) => {
    const at = chain[i]!;
    if (at.shared !== undefined) return `${e.key}_${at.shared}`;
    if (node.detailed) return `${e.key}_${at.literal ? e.value : sent(e.value)}`;
    if (at.literal || !at.valueToMetric) return at.value === undefined ? e.key : `${e.key}_${at.value}`;
    return `${e.key}_${sent(e.value)}`;
  });
  return { metric: parts.join('.'), bounded };
}

/**
 * `replaces`, as upstream: a limit whose `name` another matched descriptor's limit replaces no longer
 * decides anything in this request (its descriptor is answered as if it had no limit, and is not charged).
 */
function replace(matched: Matched[]): Matched[] {
  if (!matched.some((m) => m.limit?.replaces !== undefined)) return matched;
  const replaced = new Set(matched.flatMap((m) => m.limit?.replaces ?? []));
  return matched.map((m) =>
    m.limit?.named === true && !m.limit.unlimited && replaced.has(m.limit.name)
      ? { ...m, limit: undefined, key: '', aligned: undefined, quota: false, metadata: undefined }
      : m,
  );
}

/**
 * The service: the configuration (swapped whole on a reload) and a limiter per limit, over one store.
 * A limit's counters are kept under its name and size, so a reload that keeps a limit keeps its counts.
 */
export class RateLimitService {
  #config: RlsConfig;
  readonly #store: Store;
  readonly #limiters = new Map<string, Limiter>();
  /** The limiter of each configured limit, found without making its id at every call. */
  #byLimit = new WeakMap<Limited, Limiter>();
  readonly #now: () => number;

  /** Every descriptor in shadow mode, sent limits included (upstream's SHADOW_MODE): counted, never refusing. */
  readonly #shadow: boolean;
  /** Every descriptor in quota mode, sent limits included (upstream's QUOTA_MODE). */
  readonly #quota: boolean;
  /** Answers carry dynamic_metadata (upstream's RESPONSE_DYNAMIC_METADATA). */
  readonly #metadata: boolean;

  constructor(
    config: RlsConfig,
    store: Store,
    now: () => number = Date.now,
    { shadow = false, quota = false, dynamicMetadata = false }: ServiceModes = {},
  ) {
    this.#config = config;
    this.#store = store;
    this.#now = now;
    this.#shadow = shadow;
    this.#quota = quota;
    this.#metadata = dynamicMetadata;
  }

  get config(): RlsConfig {
    return this.#config;
  }

  swap(config: RlsConfig): void {
    this.#config = config;
    this.#limiters.clear();
    this.#byLimit = new WeakMap();
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
      const response: RlsResponse = { overallCode: 'OK', statuses, responseHeadersToAdd: [] };
      return this.#metadata
        ? { ...response, dynamicMetadata: dynamicMetadata(request, [], statuses) }
        : response;
    }
    const now = this.#now();
    const matched = replace(
      request.descriptors.map((d, i) =>
        this.#match(request.domain, domain.root, d, costOf(request, d), i, now),
      ),
    );
    // Enforced descriptors are decided together, all or nothing; shadow-mode ones are counted on their own,
    // since what they would refuse must not refuse the request; quota-mode ones on their own too, first:
    // when every one of them is over, the request is refused, and the enforced ones are then only looked
    // at. A limit of 0 refuses the request without asking the store: the others are only looked at, so
    // that none is charged.
    const enforced: number[] = [];
    const shadowed: number[] = [];
    const quotas: number[] = [];
    matched.forEach((m, i) => {
      if (counted(m)) (m.shadow ? shadowed : m.quota ? quotas : enforced).push(i);
    });
    const blocked = matched.some((m) => !m.shadow && !m.quota && refusesAll(m));
    const asked = (i: number) => {
      const m = matched[i] as Matched & { limit: Limited };
      return { limiter: this.#limiter(m.limit), key: m.key, cost: m.cost };
    };
    const spread = (decisions: (Decision | undefined)[], at: readonly number[], got: readonly Decision[]) => {
      at.forEach((i, j) => {
        decisions[i] = got[j];
      });
      return decisions;
    };
    // A request a limit of 0 refuses charges no quota either.
    const byQuota: MaybePromise<(Decision | undefined)[]> =
      quotas.length === 0
        ? new Array(matched.length)
        : andThen(
            allOf(
              quotas
                .map(asked)
                .map((a) =>
                  blocked
                    ? a.limiter.peek(a.key, { cost: a.cost })
                    : a.limiter.decide(a.key, { cost: a.cost }),
                ),
            ),
            (got) => spread(new Array(matched.length), quotas, got),
          );
    const decided = allOf<unknown>([
      andThen(byQuota, (quota) =>
        blocked || quotaRefuses(matched, quota)
          ? allOf(enforced.map(asked).map((a) => a.limiter.peek(a.key, { cost: a.cost })))
          : Limiter.consumeAll(enforced.map(asked)),
      ),
      allOf(shadowed.map(asked).map((a) => a.limiter.decide(a.key, { cost: a.cost }))),
      byQuota,
    ]) as MaybePromise<[Decision[], Decision[], (Decision | undefined)[]]>;
    return andThen(decided, ([group, shadows, quota]) => {
      const decisions = spread(spread([...quota], enforced, group), shadowed, shadows);
      decisions.forEach((d, i) => {
        const window = matched[i]!.aligned;
        if (d !== undefined && window !== undefined) decisions[i] = alignDecision(d, window, now);
      });
      const closed = (d: Decision | undefined) => d?.reason === 'store-closed';
      if (group.some(closed) || quota.some(closed)) throw new StoreClosed();
      const response = answer(request.domain, matched, decisions, blocked, now, outcomes);
      return this.#metadata
        ? { ...response, dynamicMetadata: dynamicMetadata(request, matched, response.statuses) }
        : response;
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
    const { metric, bounded } =
      chain === undefined ? { metric: 'unmatched', bounded: false } : metricOf(descriptor.entries, chain);
    const aligned =
      limit !== undefined && !limit.unlimited && limit.algorithm === 'fixed-window'
        ? alignedWindow(now, UNITS[limit.unit])
        : undefined;
    // share_threshold: each entry a sharing wildcard matched is counted as the wildcard, whatever its value.
    const entries =
      node?.above.sharing === true
        ? descriptor.entries.map((e, i) => {
            const shared = chain![i]!.shared;
            return shared === undefined ? e : { ...e, shared };
          })
        : descriptor.entries;
    const key =
      limit === undefined || limit.unlimited
        ? ''
        : `${counterKey({ domain, entries }, limit)}${aligned === undefined ? '' : `@${aligned.index}`}`;
    const shadow = this.#shadow || (override === undefined && node?.shadow === true);
    return {
      node,
      limit,
      shadow,
      // As upstream: a limit sent with the descriptor is in quota mode only by QUOTA_MODE.
      quota:
        !shadow &&
        limit?.unlimited !== true &&
        (this.#quota || (override === undefined && node?.quota === true && limit !== undefined)),
      metadata: override === undefined && limit !== undefined ? node?.metadata : undefined,
      cost,
      key,
      metric,
      detailedOf: bounded ? node!.path : undefined,
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
    const known = this.#byLimit.get(limit);
    if (known !== undefined) return known;
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
      if (this.#limiters.size >= MAX_LIMITERS) {
        this.#limiters.clear();
        this.#byLimit = new WeakMap();
      }
      limiter = new Limiter({
        policies: {
          name: nameOf(limit.name),
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
    // A sent limit is a new object at each call: only the configured ones are worth remembering.
    if (limit.sent !== true) this.#byLimit.set(limit, limiter);
    return limiter;
  }
}

import { type Decision, isInvalidOption, Limiter, resolvePolicy, type Store } from 'floodgate';
import { allOf, andThen, type HeaderList, type MaybePromise, rateLimitHeaders } from 'floodgate/http';
import { type DescriptorNode, type Level, type Limit, type RlsConfig, UNITS, type Unit } from './config.js';
import { counterKey, digest } from './keys.js';

// The decision of a ShouldRateLimit call, apart from gRPC: which node of the domain's tree each descriptor
// ends on, then every limited descriptor charged together, all or nothing.

export interface Entry {
  readonly key: string;
  readonly value: string;
}

export interface RequestDescriptor {
  readonly entries: readonly Entry[];
  /** A limit the proxy sends with the descriptor, which replaces the configured one (envoyproxy/ratelimit's). */
  readonly limit?: { readonly requests_per_unit: number; readonly unit: Unit } | undefined;
}

export interface RlsRequest {
  readonly domain: string;
  readonly descriptors: readonly RequestDescriptor[];
  /** The cost; 0 means 1, as in Envoy. */
  readonly hitsAddend: number;
}

export type Code = 'OK' | 'OVER_LIMIT';

export interface DescriptorStatus {
  readonly code: Code;
  readonly currentLimit?: { readonly name: string; readonly requestsPerUnit: number; readonly unit: Unit };
  readonly limitRemaining: number;
  /** ms until the limit is whole again. */
  readonly durationUntilReset?: number;
}

export interface RlsResponse {
  readonly overallCode: Code;
  readonly statuses: readonly DescriptorStatus[];
  readonly responseHeadersToAdd: HeaderList;
}

/** A request that cannot be decided as sent: gRPC's INVALID_ARGUMENT, with this message. */
export class InvalidRequest extends Error {}

/** The store is down and its outage policy (`onStoreError: closed`) refuses: gRPC's UNAVAILABLE. */
export class StoreClosed extends Error {
  constructor() {
    super('the rate-limit store is unavailable (onStoreError: closed)');
  }
}

/** Bounds on what one request may carry: far past any real proxy's, short of what could hurt the server. */
export const BOUNDS = { domain: 256, descriptors: 64, entries: 32, key: 256, value: 4096 } as const;

/**
 * The largest cost charged: above every limit (a uint32), so a larger `hits_addend` is refused just the
 * same, and a safe integer, which the library requires of a cost.
 */
export const MAX_COST = 2 ** 32;

/** Limiters kept, one per distinct limit (configured, or sent with requests). */
const MAX_LIMITERS = 10_000;

/** What became of one descriptor, for metrics. */
export interface Outcome {
  readonly domain: string;
  /** The node's path, or with `detailed_metric` the descriptor's own values (wildcard values digested). */
  readonly descriptor: string;
  /** With `detailed_metric`, the node's path: its distinct values are bounded under it. */
  readonly detailedOf?: string;
  readonly code: Code;
  readonly shadow: boolean;
}

type Limited = Extract<Limit, { unlimited: false }>;

interface Matched {
  readonly node: DescriptorNode | undefined;
  readonly limit: Limit | undefined;
  readonly key: string;
  readonly metric: string;
  readonly detailedOf: string | undefined;
}

const OK_UNLIMITED: DescriptorStatus = { code: 'OK', limitRemaining: 2 ** 32 - 1 };
const OK_NO_LIMIT: DescriptorStatus = { code: 'OK', limitRemaining: 0 };

/**
 * The nodes a descriptor's entries walk through, the last the one it ends on: at each level an exact value
 * first, then a prefix, then any value (envoyproxy/ratelimit's order). Undefined when it leaves the tree.
 */
function walk(root: Level, entries: readonly Entry[]): DescriptorNode[] | undefined {
  let level = root;
  const chain: DescriptorNode[] = [];
  for (const { key, value } of entries) {
    const slot = level.get(key);
    const node =
      slot?.exact.get(value) ?? slot?.prefixes.find((p) => value.startsWith(p.prefix))?.node ?? slot?.any;
    if (node === undefined) return undefined;
    chain.push(node);
    level = node.children;
  }
  return chain;
}

function check(request: RlsRequest): void {
  if (request.domain === '') throw new InvalidRequest('domain must not be empty');
  // Digested once per descriptor: unbounded, one request could cost as much hashing as it likes.
  if (request.domain.length > BOUNDS.domain)
    throw new InvalidRequest(`domain is longer than ${BOUNDS.domain} characters`);
  if (!Number.isInteger(request.hitsAddend) || request.hitsAddend < 0)
    throw new InvalidRequest(`hits_addend must be a non-negative integer; got ${request.hitsAddend}`);
  if (request.descriptors.length === 0) throw new InvalidRequest('descriptors must not be empty');
  if (request.descriptors.length > BOUNDS.descriptors)
    throw new InvalidRequest(`at most ${BOUNDS.descriptors} descriptors per request`);
  request.descriptors.forEach((d, i) => {
    if (d.entries.length === 0) throw new InvalidRequest(`descriptors[${i}]: entries must not be empty`);
    if (d.entries.length > BOUNDS.entries)
      throw new InvalidRequest(`descriptors[${i}]: at most ${BOUNDS.entries} entries`);
    d.entries.forEach((e, j) => {
      const at = `descriptors[${i}].entries[${j}]`;
      if (e.key === '') throw new InvalidRequest(`${at}.key must not be empty`);
      if (e.key.length > BOUNDS.key)
        throw new InvalidRequest(`${at}.key is longer than ${BOUNDS.key} characters`);
      if (e.value.length > BOUNDS.value)
        throw new InvalidRequest(`${at}.value is longer than ${BOUNDS.value} characters`);
    });
    const limit = d.limit;
    if (limit !== undefined) {
      try {
        resolvePolicy(
          { algorithm: 'fixed-window', limit: limit.requests_per_unit, window: UNITS[limit.unit] },
          'limit',
        );
      } catch (error) {
        if (!isInvalidOption(error)) throw error;
        throw new InvalidRequest(
          `descriptors[${i}].limit.requests_per_unit must be ${error.expected}; got ${error.got}`,
        );
      }
    }
  });
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

  constructor(config: RlsConfig, store: Store, now: () => number = Date.now) {
    this.#config = config;
    this.#store = store;
    this.#now = now;
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
    check(request);
    const domain = this.#config.get(request.domain);
    const matched = request.descriptors.map((d) => this.#match(request.domain, domain?.root, d));
    const cost = request.hitsAddend === 0 ? 1 : Math.min(request.hitsAddend, MAX_COST);
    // Enforced descriptors are decided together, all or nothing; shadow-mode ones are counted on their own,
    // since what they would refuse must not refuse the request.
    const enforced: number[] = [];
    const shadowed: number[] = [];
    matched.forEach((m, i) => {
      if (m.limit !== undefined && !m.limit.unlimited)
        (m.node?.shadow === true ? shadowed : enforced).push(i);
    });
    const asked = (i: number) => ({
      limiter: this.#limiter(matched[i]!.limit as Limited),
      key: matched[i]!.key,
      cost,
    });
    const decided = allOf<Decision[]>([
      Limiter.consumeAll(enforced.map(asked)),
      allOf(
        shadowed.map((i) => this.#limiter(matched[i]!.limit as Limited).decide(matched[i]!.key, { cost })),
      ),
    ]);
    return andThen(decided, ([group, shadows]) => {
      const decisions: (Decision | undefined)[] = new Array(matched.length);
      enforced.forEach((i, j) => {
        decisions[i] = group![j];
      });
      shadowed.forEach((i, j) => {
        decisions[i] = shadows![j];
      });
      if (group!.some((d) => d.reason === 'store-closed')) throw new StoreClosed();
      const refused = group!.some((d) => !d.allowed);
      const now = this.#now();
      const headers: HeaderList = [];
      let retryAfter = 0;
      const about = (m: Matched) => ({
        domain: request.domain,
        descriptor: m.metric,
        ...(m.detailedOf === undefined ? {} : { detailedOf: m.detailedOf }),
      });
      const statuses = matched.map((m, i): DescriptorStatus => {
        const d = decisions[i];
        const shadow = m.node?.shadow === true;
        if (m.limit === undefined) {
          outcomes?.({ ...about(m), code: 'OK', shadow });
          return OK_NO_LIMIT;
        }
        if (m.limit.unlimited || d === undefined) {
          outcomes?.({ ...about(m), code: 'OK', shadow });
          return OK_UNLIMITED;
        }
        const over = !d.allowed;
        outcomes?.({ ...about(m), code: over ? 'OVER_LIMIT' : 'OK', shadow });
        for (const header of rateLimitHeaders(d, now, 'draft-10', false)) merge(headers, header);
        if (over && !shadow && Number.isFinite(d.retryAfter)) retryAfter = Math.max(retryAfter, d.retryAfter);
        return {
          code: over && !shadow ? 'OVER_LIMIT' : 'OK',
          currentLimit: { name: m.limit.name, requestsPerUnit: m.limit.requestsPerUnit, unit: m.limit.unit },
          limitRemaining: d.remaining,
          durationUntilReset: d.resetAfter,
        };
      });
      if (refused) headers.push(['Retry-After', String(Math.max(1, Math.ceil(retryAfter / 1000)))]);
      return { overallCode: refused ? 'OVER_LIMIT' : 'OK', statuses, responseHeadersToAdd: headers };
    });
  }

  #match(domain: string, root: Level | undefined, descriptor: RequestDescriptor): Matched {
    const chain = root === undefined ? undefined : walk(root, descriptor.entries);
    const node = chain?.at(-1);
    const override = descriptor.limit;
    const limit: Limit | undefined = override !== undefined ? this.#override(node, override) : node?.limit;
    const metric =
      node === undefined
        ? 'unmatched'
        : node.detailed
          ? descriptor.entries
              .map((e, i) => `${e.key}_${chain![i]!.literal ? e.value : `#${digest(e.value).slice(0, 8)}`}`)
              .join('.')
          : node.path;
    const key =
      limit === undefined || limit.unlimited
        ? ''
        : counterKey({ domain, entries: descriptor.entries }, limit);
    return { node, limit, key, metric, detailedOf: node?.detailed === true ? node.path : undefined };
  }

  #override(node: DescriptorNode | undefined, override: NonNullable<RequestDescriptor['limit']>): Limit {
    const configured = node?.limit;
    return {
      unlimited: false,
      name: configured?.name ?? 'override',
      unit: override.unit,
      requestsPerUnit: override.requests_per_unit,
      algorithm: configured?.unlimited === false ? configured.algorithm : 'fixed-window',
    };
  }

  /** The limiters made so far, each named by its limit (`name: N per unit`), for the admin API. */
  *limiters(): Iterable<readonly [string, Limiter]> {
    for (const [id, limiter] of this.#limiters) {
      const [name, , requests, unit] = JSON.parse(id) as [string, string, number, string];
      yield [`${name}: ${requests} per ${unit.toLowerCase()}`, limiter];
    }
  }

  #limiter(limit: Limited): Limiter {
    // Limits sent with requests are chosen by clients: the id is an encoding no part can forge.
    const id = JSON.stringify([limit.name, limit.algorithm, limit.requestsPerUnit, limit.unit]);
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
      });
      this.#limiters.set(id, limiter);
    }
    return limiter;
  }
}

/** Adds a header field, the RateLimit lists of several descriptors joined into one field each. */
function merge(headers: HeaderList, [name, value]: [string, string]): void {
  const at = headers.findIndex(([n]) => n === name);
  if (at === -1) headers.push([name, value]);
  else headers[at] = [name, `${headers[at]![1]}, ${value}`];
}

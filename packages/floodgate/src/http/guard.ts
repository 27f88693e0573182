import { systemClock } from '../core/clock.js';
import type { Decision } from '../core/decision.js';
import { invalidOption } from '../core/errors.js';
import { andThen, attempt, type MaybePromise, promised } from '../core/maybe.js';
import type { PolicySpec } from '../core/policy.js';
import { type CostOptions, Limiter } from '../limiter/limiter.js';
import type { Store } from '../stores/store.js';
import { AddressSet, clientIpResolver, groupIp, type TrustProxy } from './client-ip.js';
import { type HeaderList, type HeaderMode, rateLimitHeaders } from './headers.js';
import { byIp, type KeyExtractor } from './keys.js';
import type { RequestView } from './request.js';

/** A response the middleware sends itself (429, 403...). `body` is sent as is. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: HeaderList;
  readonly body: string;
}

export interface DecisionEvent<Req> {
  readonly request: Req;
  readonly key: string;
  readonly decision: Decision;
}

/** Options shared by every framework adapter; `Req` is the framework's request (or context). */
export interface HttpLimitOptions<Req> {
  /** The limiter to use; or give `policies` (and optionally `store`) to have one made. */
  readonly limiter?: Limiter;
  readonly policies?: PolicySpec | readonly PolicySpec[];
  readonly store?: Store;
  /** Who a request counts against: a built-in extractor (`byIp()`, the default) or a function. */
  readonly key?: KeyExtractor | ((request: Req) => string | undefined | Promise<string | undefined>);
  /** When the key cannot be made (no header, garbled credentials): limit by IP, skip limiting, or answer 400. */
  readonly onMissingKey?: 'ip' | 'skip' | 'reject';
  /** Which proxies may tell the client address through `X-Forwarded-For`. Default `false`. */
  readonly trustProxy?: TrustProxy;
  /** IPv6 clients are limited per block of this prefix length. Default 64. */
  readonly ipv6Prefix?: number;
  /** Cost of a request: a number or a function of the request. Default: the limiter's (1). */
  readonly cost?: number | ((request: Req) => number | Promise<number>);
  /** Requests for which this returns true are not limited at all (no headers either). */
  readonly skip?: (request: Req) => boolean | Promise<boolean>;
  /** Never limited: client addresses, CIDR blocks, or keys. */
  readonly allow?: readonly string[];
  /** Always refused with 403: client addresses, CIDR blocks, or keys. */
  readonly deny?: readonly string[];
  /**
   * Count only failed responses (e.g. failed logins) or only successful ones. The cost is charged before
   * the request runs, so concurrent requests cannot overshoot, and given back after the response when it
   * does not count.
   */
  readonly countOnly?: 'failed' | 'successful';
  /** What a failed response is, for `countOnly`. Default: status >= 400. */
  readonly isFailure?: (status: number) => boolean;
  /** Rate-limit header fields on every limited route's responses. Default `"draft-10"`. */
  readonly headers?: HeaderMode;
  /** Also send `X-RateLimit-Limit/Remaining/Reset`. Default false. */
  readonly legacyHeaders?: boolean;
  /** Replaces the 429 response; return undefined to keep the default one. */
  readonly onLimited?: (request: Req, decision: Decision) => HttpResponse | undefined;
  /** Called with every decision, allowed or not (metrics, logs). */
  readonly onDecision?: (event: DecisionEvent<Req>) => void;
  /** When the store fails (it rejected): let the request through (`"open"`, default) or answer 503. */
  readonly onStoreError?: 'open' | 'closed';
  /** Called with a store failure. */
  readonly onError?: (error: unknown, request: Req) => void;
  /** Time for the header fields' relative seconds. Default: `Date.now`. */
  readonly clock?: { now(): number };
}

/** What an adapter does with a request. */
export type Verdict =
  | {
      readonly kind: 'pass';
      readonly headers: HeaderList;
      /** The limiter's decision, for the handler (`req.rateLimit`...); none when nothing was decided (skipped, allowed by a list). */
      readonly decision?: Decision;
      /** Call once the response status is known (charges back what does not count, releases leases). */
      readonly settle?: (status: number) => void;
    }
  | ({ readonly kind: 'respond' } & HttpResponse);

const PASS: Verdict = { kind: 'pass', headers: [] };

function problem(
  status: number,
  title: string,
  detail: string,
  extra: object = {},
  headers: HeaderList = [],
) {
  return {
    kind: 'respond' as const,
    status,
    headers: [...headers, ['Content-Type', 'application/problem+json']] as HeaderList,
    body: JSON.stringify({ type: 'about:blank', title, status, detail, ...extra }),
  };
}

/** The detail of a 429: how long to wait, in the words of the tutorial this project started from. */
export function waitMessage(decision: Decision): string {
  if (!Number.isFinite(decision.retryAfter)) return 'This request costs more than the limit allows.';
  const s = Math.max(1, Math.ceil(decision.retryAfter / 1000));
  return `Wait ${s} second${s === 1 ? '' : 's'} before trying again.`;
}

/** Peers (with their forwarded chains) whose resolved address is remembered. */
const IP_CACHE_SIZE = 4096;

function lists(option: string, entries: readonly string[] | undefined) {
  const addresses = new AddressSet();
  const keys = new Set<string>();
  if (entries === undefined) return { addresses, keys, empty: true };
  if (!Array.isArray(entries))
    throw invalidOption(option, 'a list of addresses, CIDR blocks or keys', entries, 'type');
  for (const [i, entry] of entries.entries()) {
    if (typeof entry !== 'string' || entry === '') {
      throw invalidOption(`${option}[${i}]`, 'a non-empty string', entry, 'type');
    }
    if (!addresses.add(entry)) keys.add(entry);
  }
  return { addresses, keys, empty: entries.length === 0 };
}

function fn(option: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function')
    throw invalidOption(option, 'a function', value, 'type');
}

/**
 * The framework-independent half of every HTTP adapter: from a request to a verdict. Options are checked
 * here, once, when the middleware is created.
 */
export class HttpGuard<Req> {
  readonly limiter: Limiter;
  readonly #options: HttpLimitOptions<Req>;
  readonly #ip: (peer: string | undefined, forwarded: string | undefined) => string;
  readonly #trustsProxies: boolean;
  /** Whether `decide` can answer without a promise (see there). */
  /** The limiter's consume, chosen once: without a promise when its store answers at once. */
  readonly #consume: (key: string, options: CostOptions | undefined) => MaybePromise<Decision>;
  readonly #ips = new Map<string, string>();
  readonly #prefix: number;
  readonly #key: KeyExtractor | ((request: Req) => string | undefined | Promise<string | undefined>);
  readonly #fallbackKey = byIp();
  readonly #allow: ReturnType<typeof lists>;
  readonly #deny: ReturnType<typeof lists>;
  readonly #headers: HeaderMode;
  readonly #clock: { now(): number };

  constructor(options: HttpLimitOptions<Req>) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption(
        'options',
        'an object such as { policies: { limit: 100, window: "1m" } }',
        options,
        'type',
      );
    }
    this.#options = options;
    if (options.limiter !== undefined) {
      if (!(options.limiter instanceof Limiter))
        throw invalidOption('limiter', 'a Limiter', options.limiter, 'type');
      if (options.policies !== undefined || options.store !== undefined) {
        throw invalidOption(
          'policies',
          'absent when a limiter is given (configure the limiter)',
          options.policies,
        );
      }
      this.limiter = options.limiter;
    } else {
      if (options.policies === undefined) {
        throw invalidOption('policies', 'given (or a limiter), e.g. { limit: 100, window: "1m" }', undefined);
      }
      this.limiter = new Limiter({
        policies: options.policies,
        ...(options.store === undefined ? {} : { store: options.store }),
        ...(options.clock === undefined
          ? {}
          : { clock: { ...systemClock, now: () => options.clock!.now() } }),
      });
    }
    this.#ip = clientIpResolver(options.trustProxy ?? false);
    this.#trustsProxies = (options.trustProxy ?? false) !== false;
    const prefix = options.ipv6Prefix ?? 64;
    if (!Number.isInteger(prefix) || prefix < 1 || prefix > 128) {
      throw invalidOption('ipv6Prefix', 'an integer from 1 to 128', prefix);
    }
    this.#prefix = prefix;
    const key = options.key ?? byIp();
    if (
      typeof key !== 'function' &&
      (typeof key !== 'object' || key === null || key.kind !== 'floodgate-key')
    ) {
      throw invalidOption('key', 'a key extractor such as byIp(), or a function of the request', key, 'type');
    }
    this.#key = key;
    const missing = options.onMissingKey ?? 'ip';
    if (!['ip', 'skip', 'reject'].includes(missing)) {
      throw invalidOption('onMissingKey', 'one of "ip", "skip", "reject"', missing);
    }
    const cost = options.cost;
    if (cost !== undefined && typeof cost !== 'function' && (!Number.isSafeInteger(cost) || cost < 0)) {
      throw invalidOption('cost', 'a non-negative integer or a function of the request', cost);
    }
    if (options.countOnly !== undefined && !['failed', 'successful'].includes(options.countOnly)) {
      throw invalidOption('countOnly', 'one of "failed", "successful"', options.countOnly);
    }
    if (
      options.countOnly !== undefined &&
      this.limiter.policiesFor('').some((p) => p.algorithm === 'concurrency')
    ) {
      // Giving back a charge would also free a concurrency slot that the response's own release frees.
      throw invalidOption('countOnly', 'absent when a policy is a concurrency limit', options.countOnly);
    }
    const headers = options.headers ?? 'draft-10';
    if (!['draft-10', 'draft-7', 'draft-6', false].includes(headers)) {
      throw invalidOption('headers', 'one of "draft-10", "draft-7", "draft-6", false', headers);
    }
    this.#headers = headers;
    if (options.legacyHeaders !== undefined && typeof options.legacyHeaders !== 'boolean') {
      throw invalidOption('legacyHeaders', 'a boolean', options.legacyHeaders, 'type');
    }
    if (options.onStoreError !== undefined && !['open', 'closed'].includes(options.onStoreError)) {
      throw invalidOption('onStoreError', 'one of "open", "closed"', options.onStoreError);
    }
    for (const name of ['skip', 'isFailure', 'onLimited', 'onDecision', 'onError'] as const)
      fn(name, options[name]);
    if (options.clock !== undefined && typeof options.clock?.now !== 'function') {
      throw invalidOption('clock', 'an object with a now() method', options.clock, 'type');
    }
    this.#clock = options.clock ?? systemClock;
    this.#allow = lists('allow', options.allow);
    this.#deny = lists('deny', options.deny);
    const limiter = this.limiter;
    this.#consume = limiter.synchronous
      ? (k, o) => limiter.consumeSync(k, o)
      : (k, o) => limiter.consume(k, o);
  }

  /** Decides what to do with a request. Never rejects for a malformed request; rejects only if a callback throws. */
  check(request: Req, view: RequestView): Promise<Verdict> {
    return promised(() => this.decide(request, view));
  }

  /**
   * The pipeline, written once: skip hook, client address and lists, key, cost, the limiter, the verdict.
   * Each step waits only for what is promised: with a memory store, no `skip` hook, a key extractor and a
   * fixed cost, nothing is, and the verdict comes back at once. Throws (or rejects) only if a callback throws.
   */
  decide(request: Req, view: RequestView): MaybePromise<Verdict> {
    const o = this.#options;
    return andThen(o.skip === undefined ? false : o.skip(request), (skipped) => {
      if (skipped) return PASS;
      const ip = this.#clientIp(view);
      const listed = this.#byAddress(ip);
      if (listed !== undefined) return listed;
      const key = this.#key;
      return andThen(typeof key === 'function' ? key(request) : key.extract(view, ip), (extracted) => {
        const counted = this.#keyOf(view, ip, extracted);
        if (typeof counted !== 'string') return counted;
        return andThen(typeof o.cost === 'function' ? o.cost(request) : o.cost, (cost) =>
          attempt(
            () => this.#consume(counted, cost === undefined ? undefined : { cost }),
            (decision) => this.#verdict(request, counted, cost, decision),
            (error) => this.#storeFailed(request, error),
          ),
        );
      });
    });
  }

  /** The allow and deny lists' answer for a client address, if they have one. */
  #byAddress(ip: string): Verdict | undefined {
    if (!this.#allow.empty && this.#allow.addresses.has(ip)) return PASS;
    if (!this.#deny.empty && this.#deny.addresses.has(ip)) return this.#forbidden();
    return undefined;
  }

  /** The key to count under, or the verdict for a request without one, or for a listed key. */
  #keyOf(view: RequestView, ip: string, extracted: string | undefined): string | Verdict {
    let key = extracted;
    if (key === undefined || key === '') {
      const missing = this.#options.onMissingKey ?? 'ip';
      if (missing === 'skip') return PASS;
      if (missing === 'reject') {
        const what = typeof this.#key === 'function' ? 'rate-limit key' : this.#key.describes;
        return problem(400, 'Bad Request', `This request carries no ${what}.`);
      }
      key = this.#fallbackKey.extract(view, ip) ?? 'ip:unknown';
    }
    if (!this.#allow.empty && this.#allow.keys.has(key)) return PASS;
    if (!this.#deny.empty && this.#deny.keys.has(key)) return this.#forbidden();
    return key;
  }

  /** The store failed: the documented policy decides (`onStoreError`: open lets the request through). */
  #storeFailed(request: Req, error: unknown): Verdict {
    this.#options.onError?.(error, request);
    if (this.#options.onStoreError === 'closed') {
      return problem(503, 'Service Unavailable', 'Rate limiting is unavailable; try again shortly.', {}, [
        ['Retry-After', '1'],
      ]);
    }
    return PASS;
  }

  #verdict(request: Req, key: string, cost: number | undefined, decision: Decision): Verdict {
    const o = this.#options;
    o.onDecision?.({ request, key, decision });
    const headers = rateLimitHeaders(decision, this.#clock.now(), this.#headers, o.legacyHeaders ?? false);
    if (!decision.allowed) {
      const custom = o.onLimited?.(request, decision);
      if (custom !== undefined)
        return { kind: 'respond', ...custom, headers: [...headers, ...custom.headers] };
      const retryAfter = Number.isFinite(decision.retryAfter)
        ? Math.max(1, Math.ceil(decision.retryAfter / 1000))
        : null;
      return problem(
        429,
        'Too Many Requests',
        waitMessage(decision),
        { retryAfter, policy: decision.policy },
        headers,
      );
    }
    const settle = this.#settler(request, key, decision, cost);
    return settle === undefined
      ? { kind: 'pass', headers, decision }
      : { kind: 'pass', headers, decision, settle };
  }

  /** The client's address, grouped: resolved once per peer (and forwarded chain), not per request. */
  #clientIp(view: RequestView): string {
    const forwarded = this.#trustsProxies ? view.header('x-forwarded-for') : undefined;
    const peer = view.peer ?? '';
    const seen = forwarded === undefined ? peer : `${peer}\n${forwarded}`;
    let ip = this.#ips.get(seen);
    if (ip === undefined) {
      ip = groupIp(this.#ip(view.peer, forwarded), this.#prefix);
      // Bounded, and cheap to refill: a flood of new addresses only costs the resolving it saved.
      if (this.#ips.size >= IP_CACHE_SIZE) this.#ips.clear();
      this.#ips.set(seen, ip);
    }
    return ip;
  }

  #forbidden(): Verdict {
    return problem(403, 'Forbidden', 'This client is not allowed.');
  }

  #settler(
    request: Req,
    key: string,
    decision: Decision,
    cost: number | undefined,
  ): ((status: number) => void) | undefined {
    const lease = decision.leaseId;
    if (this.#options.countOnly === undefined && lease === undefined) return undefined;
    const { countOnly, isFailure = (status: number) => status >= 400, onError } = this.#options;
    let settled = false;
    return (status) => {
      if (settled) return;
      settled = true;
      const failed = isFailure(status);
      const refund = countOnly !== undefined && (countOnly === 'failed') !== failed;
      // After the response: nobody awaits these, so a failure is reported, never thrown.
      const report = (error: unknown) => onError?.(error, request);
      if (lease !== undefined) this.limiter.release(key, lease).catch(report);
      if (refund) this.limiter.refund(key, cost).catch(report);
    };
  }
}

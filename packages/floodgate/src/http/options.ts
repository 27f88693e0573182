import { systemClock } from '../core/clock.js';
import type { Decision } from '../core/decision.js';
import { invalidOption, knownKeys } from '../core/errors.js';
import type { PolicySpec } from '../core/policy.js';
import { Limiter } from '../limiter/limiter.js';
import { type Priority, Shedder, type ShedderOptions } from '../limiter/shedder.js';
import type { Store } from '../stores/store.js';
import { AddressSet, clientIpResolver, type TrustProxy } from './client-ip.js';
import type { HeaderMode } from './headers.js';
import { byIp, type KeyExtractor } from './keys.js';
import type { HttpResponse } from './problem.js';

export interface DecisionEvent<Req> {
  readonly request: Req;
  readonly key: string;
  readonly decision: Decision;
}

/** Options shared by every framework adapter; `Req` is the framework's request (or context). */
export interface HttpLimitOptions<Req> {
  /**
   * The limiter to use; or give `policies` (and optionally `store`) to have one made. Neither, with `shed`:
   * the middleware only sheds (no per-client limits, no store call).
   */
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
  /**
   * When the store rejects (a store of your own that throws; Floodgate's stores answer an outage by their
   * own `onStoreError` policy instead): let the request through (`true`, default) or answer 503 (`false`).
   */
  readonly passOnStoreError?: boolean;
  /** Called with a store failure. */
  readonly onError?: (error: unknown, request: Req) => void;
  /** Time for the header fields' relative seconds. Default: `Date.now`. */
  readonly clock?: { now(): number };
  /**
   * Load shedding: an adaptive concurrency limit for the server itself (a `Shedder`, or its options).
   * Checked before the rate limits; a request past it gets 503 with `Retry-After`. Its slot is released
   * when the response ends, however it ends.
   */
  readonly shed?: Shedder | ShedderOptions;
  /** The class of a request for the shedder: `critical`, `default` or `sheddable`. Default: all `default`. */
  readonly priority?: (request: Req) => Priority | string | Promise<Priority | string>;
}

/** Options of per-client limits: without policies or a limiter (shedding alone) they would do nothing. */
const LIMITS_ONLY = [
  'cost',
  'countOnly',
  'isFailure',
  'headers',
  'legacyHeaders',
  'onLimited',
  'onDecision',
  'passOnStoreError',
  'clock',
] as const;

const KNOWN: readonly (keyof HttpLimitOptions<unknown>)[] = [
  'limiter',
  'policies',
  'store',
  'key',
  'onMissingKey',
  'trustProxy',
  'ipv6Prefix',
  'skip',
  'allow',
  'deny',
  'onError',
  'shed',
  'priority',
  ...LIMITS_ONLY,
];

/** Addresses and CIDR blocks, and keys, of an `allow` or `deny` list. */
export interface Lists {
  readonly addresses: AddressSet;
  readonly hasAddresses: boolean;
  readonly keys: ReadonlySet<string>;
  readonly empty: boolean;
}

/** The options, checked and with their defaults, made once when the middleware is: the request path only reads them. */
export interface ResolvedHttpOptions<Req> {
  /** None when the middleware only sheds. */
  readonly limiter: Limiter | undefined;
  readonly key: KeyExtractor | ((request: Req) => string | undefined | Promise<string | undefined>);
  readonly onMissingKey: 'ip' | 'skip' | 'reject';
  /** The client's address from the socket's peer and X-Forwarded-For, by `trustProxy`. */
  readonly clientIp: (peer: string | undefined, forwarded: string | undefined) => string;
  /** Whether X-Forwarded-For is read at all. */
  readonly trustsProxies: boolean;
  readonly ipv6Prefix: number;
  readonly cost: number | ((request: Req) => number | Promise<number>) | undefined;
  readonly skip: ((request: Req) => boolean | Promise<boolean>) | undefined;
  readonly allow: Lists;
  readonly deny: Lists;
  /** Whether `allow` or `deny` lists any address or block (then a request needs a client address). */
  readonly listsAddresses: boolean;
  readonly countOnly: 'failed' | 'successful' | undefined;
  readonly isFailure: (status: number) => boolean;
  readonly headers: HeaderMode;
  readonly legacyHeaders: boolean;
  readonly onLimited: ((request: Req, decision: Decision) => HttpResponse | undefined) | undefined;
  readonly onDecision: ((event: DecisionEvent<Req>) => void) | undefined;
  readonly passOnStoreError: boolean;
  readonly onError: ((error: unknown, request: Req) => void) | undefined;
  readonly clock: { now(): number };
  readonly shedder: Shedder | undefined;
  readonly priority: ((request: Req) => Priority | string | Promise<Priority | string>) | undefined;
}

function lists(option: string, entries: readonly string[] | undefined): Lists {
  const addresses = new AddressSet();
  const keys = new Set<string>();
  if (entries === undefined) return { addresses, hasAddresses: false, keys, empty: true };
  if (!Array.isArray(entries))
    throw invalidOption(option, 'a list of addresses, CIDR blocks or keys', entries, 'type');
  for (const [i, entry] of entries.entries()) {
    if (typeof entry !== 'string' || entry === '') {
      throw invalidOption(`${option}[${i}]`, 'a non-empty string', entry, 'type');
    }
    const added = addresses.add(entry);
    if (added === 'invalid') {
      throw invalidOption(`${option}[${i}]`, 'a valid address or CIDR block (or a key without "/")', entry);
    }
    if (!added) keys.add(entry);
  }
  return { addresses, hasAddresses: keys.size < entries.length, keys, empty: entries.length === 0 };
}

function fn(option: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function')
    throw invalidOption(option, 'a function', value, 'type');
}

/**
 * The `shed` option as a `Shedder`: the one given, or one made of its options. Made once per middleware
 * (or per application, by the adapters whose routes have guards of their own), so every route shares it.
 */
export function shedderOf(shed: Shedder | ShedderOptions | undefined): Shedder | undefined {
  if (shed !== undefined && (typeof shed !== 'object' || shed === null)) {
    throw invalidOption('shed', 'a Shedder or its options', shed, 'type');
  }
  return shed === undefined || shed instanceof Shedder ? shed : new Shedder(shed, 'shed.');
}

/** The limiter given, or made of `policies`; none when the middleware only sheds. */
function limiterOf<Req>(options: HttpLimitOptions<Req>): Limiter | undefined {
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
    return options.limiter;
  }
  if (options.policies === undefined) {
    if (options.shed !== undefined && options.store === undefined) return undefined;
    throw invalidOption(
      'policies',
      'given (or a limiter, or only shed), e.g. { limit: 100, window: "1m" }',
      undefined,
    );
  }
  return new Limiter({
    policies: options.policies,
    // Who is limited, for floodgate/admin: a request's handling hides its cost (a limiter given whole
    // keeps what its own options say).
    traffic: true,
    ...(options.store === undefined ? {} : { store: options.store }),
    ...(options.clock === undefined ? {} : { clock: { ...systemClock, now: () => options.clock!.now() } }),
  });
}

/**
 * Shedding alone: refuses the options only per-client limits read, as they would be ignored in silence.
 * `key` and `onMissingKey` stay for `allow` and `deny` lists of keys.
 */
function onlyShedding<Req>(options: HttpLimitOptions<Req>): void {
  const lists = options.allow !== undefined || options.deny !== undefined;
  for (const name of [...LIMITS_ONLY, ...(lists ? [] : (['key', 'onMissingKey'] as const))]) {
    if (options[name] !== undefined) {
      throw invalidOption(
        name,
        'absent without policies or a limiter (it belongs to per-client limits; this middleware only sheds)',
        options[name],
      );
    }
  }
}

/**
 * Checks every option, naming the bad one, and fills in the defaults: once, when the middleware is made,
 * so a misconfiguration fails at start and a request never validates anything. Keys nothing reads are
 * refused too (an adapter takes its own, such as Hono's `address`, out first).
 */
export function resolveHttpOptions<Req>(options: HttpLimitOptions<Req>): ResolvedHttpOptions<Req> {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption(
      'options',
      'an object such as { policies: { limit: 100, window: "1m" } }',
      options,
      'type',
    );
  }
  if ('onStoreError' in options) {
    // The stores' outage policy has this name; the HTTP layer's knob for a store that rejects is another one.
    throw invalidOption(
      'onStoreError',
      'given to the store (RedisStore({ onStoreError })); for a store that rejects, use passOnStoreError',
      (options as { onStoreError?: unknown }).onStoreError,
      'range',
      'ERR_FLOODGATE_UNKNOWN_OPTION',
    );
  }
  knownKeys(options, KNOWN);
  const limiter = limiterOf(options);
  if (limiter === undefined) onlyShedding(options);
  const prefix = options.ipv6Prefix ?? 64;
  if (!Number.isInteger(prefix) || prefix < 1 || prefix > 128) {
    throw invalidOption('ipv6Prefix', 'an integer from 1 to 128', prefix);
  }
  const key = options.key ?? byIp();
  if (
    typeof key !== 'function' &&
    (typeof key !== 'object' || key === null || key.kind !== 'floodgate-key')
  ) {
    throw invalidOption('key', 'a key extractor such as byIp(), or a function of the request', key, 'type');
  }
  const onMissingKey = options.onMissingKey ?? 'ip';
  if (!['ip', 'skip', 'reject'].includes(onMissingKey)) {
    throw invalidOption('onMissingKey', 'one of "ip", "skip", "reject"', onMissingKey);
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
    limiter?.policiesFor('').some((p) => p.algorithm === 'concurrency')
  ) {
    // Giving back a charge would also free a concurrency slot that the response's own release frees.
    throw invalidOption('countOnly', 'absent when a policy is a concurrency limit', options.countOnly);
  }
  // Nor may an override set later (the admin API's) bring one in.
  if (options.countOnly !== undefined)
    limiter?.refuseConcurrency(
      'with countOnly a charge is given back after the response, which would free the slot a second time',
    );
  const headers = options.headers ?? 'draft-10';
  if (!['draft-10', 'draft-7', 'draft-6', false].includes(headers)) {
    throw invalidOption('headers', 'one of "draft-10", "draft-7", "draft-6", false', headers);
  }
  if (options.legacyHeaders !== undefined && typeof options.legacyHeaders !== 'boolean') {
    throw invalidOption('legacyHeaders', 'a boolean', options.legacyHeaders, 'type');
  }
  if (options.passOnStoreError !== undefined && typeof options.passOnStoreError !== 'boolean') {
    throw invalidOption('passOnStoreError', 'a boolean', options.passOnStoreError, 'type');
  }
  for (const name of ['skip', 'isFailure', 'onLimited', 'onDecision', 'onError', 'priority'] as const)
    fn(name, options[name]);
  const shedder = shedderOf(options.shed);
  if (options.clock !== undefined && typeof options.clock?.now !== 'function') {
    throw invalidOption('clock', 'an object with a now() method', options.clock, 'type');
  }
  const trustProxy = options.trustProxy ?? false;
  const allow = lists('allow', options.allow);
  const deny = lists('deny', options.deny);
  return Object.freeze({
    limiter,
    key,
    onMissingKey,
    clientIp: clientIpResolver(trustProxy),
    trustsProxies: trustProxy !== false,
    ipv6Prefix: prefix,
    cost,
    skip: options.skip,
    allow,
    deny,
    listsAddresses: allow.hasAddresses || deny.hasAddresses,
    countOnly: options.countOnly,
    isFailure: options.isFailure ?? ((status: number) => status >= 400),
    headers,
    legacyHeaders: options.legacyHeaders ?? false,
    onLimited: options.onLimited,
    onDecision: options.onDecision,
    passOnStoreError: options.passOnStoreError ?? true,
    onError: options.onError,
    clock: options.clock ?? systemClock,
    shedder,
    priority: options.priority,
  });
}

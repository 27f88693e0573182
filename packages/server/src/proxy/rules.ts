import type { IncomingMessage } from 'node:http';
import type { Shedder } from 'floodgate';
import { type Limiter, MemoryStore, type Store } from 'floodgate';
import {
  HttpGuard,
  type KeyExtractor,
  type MaybePromise,
  type RequestView,
  type Verdict,
} from 'floodgate/http';
import { match as pathMatcher } from 'path-to-regexp';
import { concurrencyRefusal, type ProxyConfig, type RuleConfig } from './config.js';
import { ruleHostName } from './host.js';
import type { JwtFailure, JwtVerifier } from './jwt.js';
import { keyOf } from './keys.js';
import { LimitGroup } from './limits.js';

/** What decides a rule's requests: the library's guard for one limit, a `LimitGroup` for several. */
export interface Decider {
  decide(req: IncomingMessage, view: RequestView): MaybePromise<Verdict>;
}

/** One rule, ready to decide: the first rule whose `match` fits a request applies to it. */
export interface Rule {
  readonly name: string;
  readonly shadow: boolean;
  matches(method: string, host: string, path: string): boolean;
  readonly guard: Decider;
  /** The rule's limiters by name (one, or one per limit of its list), for the admin API. */
  readonly limiters: readonly (readonly [string, Limiter])[];
}

/** A view of a shared store under a prefix: each rule counts in its own key space, whatever its key. */
export function namespaced(inner: Store, prefix: string): Store {
  const group = inner.applyGroup?.bind(inner);
  return {
    apply: (key, set, cost, mode, lease) => inner.apply(prefix + key, set, cost, mode, lease),
    reset: (key, set) => inner.reset(prefix + key, set),
    // A rule's several limits decided in one step, as the store decides them (see LimitGroup).
    ...(group === undefined
      ? {}
      : { applyGroup: (members) => group(members.map((m) => ({ ...m, key: prefix + m.key }))) }),
    // The shared store's counters (RedisStore's script calls and grants), for the dashboard.
    get stats() {
      return (inner as { stats?: unknown }).stats;
    },
  } as Store;
}

/**
 * Where each rule keeps its counts, by rule name, so a rule's state outlives a reload that keeps it: in
 * memory a store of its own (the memory store's own fast path then applies), in a shared store a prefix.
 */
export function ruleStores(shared: Store | undefined): (rule: string) => Store {
  if (shared !== undefined) return (rule) => namespaced(shared, `${rule}|`);
  const stores = new Map<string, MemoryStore>();
  return (rule) => {
    let store = stores.get(rule);
    if (store === undefined) {
      store = new MemoryStore();
      stores.set(rule, store);
    }
    return store;
  };
}

/**
 * `*.example.com` matches one or more labels in front of `example.com`. Configured names are normalised as
 * requests' hosts are (`hostName`: case, trailing dot, brackets), so the two always compare alike; the
 * configuration has checked them.
 */
function hostMatcher(hosts: readonly string[]): (host: string) => boolean {
  const exact = new Set<string>();
  const suffixes: string[] = [];
  for (const h of hosts) {
    const name = ruleHostName(h) ?? h;
    if (name.startsWith('*.')) suffixes.push(name.slice(1));
    else exact.add(name);
  }
  return (host) => exact.has(host) || suffixes.some((s) => host.endsWith(s));
}

/**
 * A path prefix matches on segment boundaries: `/api` matches `/api` and `/api/users`, not `/apiary`.
 * A pattern uses path-to-regexp syntax: `/users/:id`, `/files/*rest`. Unless `sensitive`, case is
 * ignored: most upstreams (Express, ASP.NET, anything on a case-insensitive file system) route `/LOGIN`
 * to the `/login` handler, so a rule that cared about case could be walked around.
 */
function pathMatcherOf(
  match: RuleConfig['match'],
  sensitive: boolean,
): ((path: string) => boolean) | undefined {
  if (match?.path !== undefined) {
    const given = match.path.endsWith('/') ? match.path.slice(0, -1) : match.path;
    if (given === '') return undefined;
    const prefix = sensitive ? given : given.toLowerCase();
    return (path) => {
      const p = sensitive ? path : path.toLowerCase();
      return p === prefix || p.startsWith(`${prefix}/`);
    };
  }
  if (match?.pattern !== undefined) {
    const test = pathMatcher(match.pattern, { decode: false, sensitive });
    return (path) => test(path) !== false;
  }
  return undefined;
}

/**
 * A rule's `failedStatuses` as the guard's `isFailure`; undefined for the library's default (from 400). A
 * 502 or 504 is always a failure: the proxy writes them when the upstream gave no answer, and an attempt
 * whose answer never arrived counts (a login guess the upstream was too slow for is still a guess). An
 * answer cut short, a client gone first, or the proxy's own 400 for a cut body settles with no status at
 * all, a failure too (see ForwardResult).
 */
export function failureOf(statuses: RuleConfig['failedStatuses']): ((status: number) => boolean) | undefined {
  if (statuses === undefined) return undefined;
  const failed = new Set<number>([502, 504]);
  for (const s of statuses) {
    if (typeof s === 'number') failed.add(s);
    else for (let code = Number(s[0]) * 100; code < Number(s[0]) * 100 + 100; code++) failed.add(code);
  }
  return (status) => failed.has(status);
}

export interface RuleHooks {
  onError(error: unknown, rule: string): void;
  /** A `{ jwt }` key found no claim in the request: why (never the token). */
  onKeyFailure(rule: string, failure: JwtFailure, req: IncomingMessage): void;
}

/** Builds the rules of a validated configuration, each counting in the store `storeFor` gives it. */
export function compileRules(
  config: ProxyConfig,
  storeFor: (rule: string) => Store,
  jwt: JwtVerifier | undefined,
  hooks: RuleHooks,
  shedder?: Shedder,
): Rule[] {
  return config.rules.map((rule): Rule => {
    const methods = rule.match?.method?.map((m) => m.toUpperCase());
    const hosts = rule.match?.host === undefined ? undefined : hostMatcher(rule.match.host);
    const path = pathMatcherOf(rule.match, config.caseSensitive);
    const isFailure = failureOf(rule.failedStatuses);
    const failed = (req: IncomingMessage, failure: JwtFailure) => hooks.onKeyFailure(rule.name, failure, req);
    const common = {
      trustProxy: config.trustProxy,
      ipv6Prefix: config.ipv6Prefix,
      allow: [...config.allow, ...(rule.allow ?? [])],
      deny: [...config.deny, ...(rule.deny ?? [])],
      onError: (error: unknown) => hooks.onError(error, rule.name),
      ...(shedder === undefined ? {} : { shed: shedder, priority: () => rule.priority }),
    };
    // What only a rule with limits takes: a rule without policies only sheds (the configuration allows it
    // only with a shedder), with no store and no per-client fields.
    const perClient = {
      ...(rule.countOnly === undefined ? {} : { countOnly: rule.countOnly }),
      ...(isFailure === undefined ? {} : { isFailure }),
      headers: config.headers,
    };
    const group =
      rule.limits === undefined
        ? undefined
        : new LimitGroup(
            rule.limits.map((limit) => ({ ...limit, key: keyOf(limit.key, jwt, failed) })),
            storeFor(rule.name),
            { ...common, ...perClient },
          );
    const guard: HttpGuard<IncomingMessage> | LimitGroup =
      group ??
      new HttpGuard<IncomingMessage>(
        rule.policies === undefined
          ? common
          : {
              ...common,
              ...perClient,
              policies: rule.policies as never,
              store: storeFor(rule.name),
              key: keyOf(rule.key ?? 'ip', jwt, failed) as KeyExtractor,
              onMissingKey: rule.onMissingKey ?? 'ip',
              cost: rule.cost ?? 1,
            },
      );
    const limiters =
      guard instanceof LimitGroup
        ? guard.limiters.map(([name, limiter]) => [`${rule.name} ${name}`, limiter] as const)
        : guard.limiter === undefined
          ? []
          : [[rule.name, guard.limiter] as const];
    // The configuration's own refusal holds for the overrides the admin API sets later.
    const refusal = concurrencyRefusal(rule);
    if (refusal !== undefined) for (const [, limiter] of limiters) limiter.refuseConcurrency(refusal);
    return {
      name: rule.name,
      shadow: rule.shadow ?? config.shadow,
      guard,
      limiters,
      matches: (method, host, p) =>
        (methods === undefined || methods.includes(method)) &&
        (hosts === undefined || hosts(host)) &&
        (path === undefined || path(p)),
    };
  });
}

/** The path a rule is matched against: dot segments resolved, repeated slashes folded, unreserved escapes decoded. */
export function matchPath(pathname: string): string {
  return pathname
    .replace(/\/{2,}/g, '/')
    .replace(/%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g, (_, hex: string) =>
      String.fromCharCode(Number.parseInt(hex, 16)),
    );
}

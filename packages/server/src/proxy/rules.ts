import type { IncomingMessage } from 'node:http';
import type { Shedder } from 'floodgate';
import { MemoryStore, type Store } from 'floodgate';
import { byApiKey, byBasicUser, byHeader, byIp, HttpGuard, type KeyExtractor } from 'floodgate/http';
import { match as pathMatcher } from 'path-to-regexp';
import type { ProxyConfig, RuleConfig } from './config.js';
import { ruleHostName } from './host.js';
import { claimOf, type JwtFailure, type JwtVerifier } from './jwt.js';

/** One rule, ready to decide: the first rule whose `match` fits a request applies to it. */
export interface Rule {
  readonly name: string;
  readonly shadow: boolean;
  matches(method: string, host: string, path: string): boolean;
  readonly guard: HttpGuard<IncomingMessage>;
}

/** A view of a shared store under a prefix: each rule counts in its own key space, whatever its key. */
export function namespaced(inner: Store, prefix: string): Store {
  return {
    apply: (key, set, cost, mode, lease) => inner.apply(prefix + key, set, cost, mode, lease),
    reset: (key, set) => inner.reset(prefix + key, set),
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

function keyOf(rule: RuleConfig, jwt: JwtVerifier | undefined, hooks: RuleHooks) {
  const key = rule.key;
  if (key === 'ip') return byIp();
  if (key === 'basic-user') return byBasicUser();
  if (key === 'api-key') return byApiKey();
  if ('header' in key) return byHeader(key.header);
  if ('apiKey' in key) return byApiKey({ header: key.apiKey });
  const claim = key.jwt;
  const verify = jwt!;
  return async (req: IncomingMessage): Promise<string | undefined> => {
    const result = await verify(req.headers.authorization);
    const value = 'claims' in result ? claimOf(result.claims, claim) : undefined;
    if (value !== undefined) return `jwt:${claim}:${value}`;
    hooks.onKeyFailure(rule.name, 'failure' in result ? result.failure : 'claim', req);
    return undefined;
  };
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
    const guard = new HttpGuard<IncomingMessage>({
      policies: rule.policies as never,
      store: storeFor(rule.name),
      key: keyOf(rule, jwt, hooks) as KeyExtractor,
      onMissingKey: rule.onMissingKey,
      trustProxy: config.trustProxy,
      ipv6Prefix: config.ipv6Prefix,
      cost: rule.cost,
      allow: [...config.allow, ...(rule.allow ?? [])],
      deny: [...config.deny, ...(rule.deny ?? [])],
      headers: config.headers,
      onError: (error) => hooks.onError(error, rule.name),
      ...(shedder === undefined ? {} : { shed: shedder, priority: () => rule.priority }),
    });
    return {
      name: rule.name,
      shadow: rule.shadow ?? config.shadow,
      guard,
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

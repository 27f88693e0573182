import { isIP } from 'node:net';
import { Shedder, type ShedderOptions } from 'floodgate';
import { match as pathMatch } from 'path-to-regexp';
import { z } from 'zod';
import { DEFAULT_GRACE } from '../shared/drain.js';
import { usageError } from '../shared/errors.js';
import { OUTAGE_POLICIES } from '../shared/redis.js';
import { duration, issueText, pathOf, policies } from '../shared/schema.js';
import { readSettingsFile } from '../shared/yaml.js';
import { ruleHostName } from './host.js';

const DEFAULT_PORT = 8080;
const DEFAULT_ADMIN_PORT = 9464;

const port = z
  .number({ error: 'must be a port number' })
  .int()
  .min(0, 'must be a port from 0 to 65535')
  .max(65535, 'must be a port from 0 to 65535');

/** `"host:port"`, `":port"`, a port number, or `{ host, port }`. */
const address = (defaultHost: string) =>
  z
    .union([port, z.string(), z.strictObject({ host: z.string().min(1).optional(), port })], {
      error: 'must be a port, "host:port", or { host, port }',
    })
    .transform((value, ctx) => {
      if (typeof value === 'number') return { host: defaultHost, port: value };
      if (typeof value === 'object') return { host: value.host ?? defaultHost, port: value.port };
      const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
      const n = Number(match?.[3]);
      if (match === null || n > 65535) {
        ctx.addIssue({
          code: 'custom',
          message: `must be "host:port" (e.g. "0.0.0.0:8080"); got "${value}"`,
        });
        return z.NEVER;
      }
      return { host: match[1] ?? (match[2] || defaultHost), port: n };
    });

const url = (protocols: readonly string[], example: string) =>
  z.string().refine(
    (value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    },
    { error: (issue) => `must be a URL like ${example}; got ${JSON.stringify(issue.input)}` },
  );

const stringList = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
  .transform((v) => (Array.isArray(v) ? v : [v]));

/** Addresses, CIDR blocks, or keys: checked once more (and better) by the library when the rules are built. */
const lists = z.array(z.string().min(1));

const trustProxy = z.union([z.boolean(), z.number().int().min(0), z.array(z.string().min(1))], {
  error: 'must be true, false, a number of hops, or a list of addresses/CIDR blocks',
});

const keySpec = z.union(
  [
    z.enum(['ip', 'basic-user', 'api-key']),
    z.strictObject({ header: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a header name') }),
    z.strictObject({ apiKey: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a header name') }),
    z.strictObject({
      jwt: z.string().regex(/^[^.\s]+(\.[^.\s]+)*$/, 'must be a claim name such as "sub" or "org.id"'),
    }),
  ],
  {
    error: 'must be "ip", "basic-user", "api-key", { header: NAME }, { apiKey: HEADER } or { jwt: CLAIM }',
  },
);

/** One of a rule's several limits: its own key and policies, decided together with the others. */
const limitSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, "_", "." or "-"'),
  key: keySpec.default('ip'),
  onMissingKey: z.enum(['ip', 'skip', 'reject']).default('ip'),
  policies,
  cost: z.number().int().min(0).default(1),
});

const ruleSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, "_", "." or "-"'),
  match: z
    .strictObject({
      method: stringList.optional(),
      host: stringList
        .refine((hosts) => hosts.every((h) => ruleHostName(h) !== undefined), {
          error: 'must be host names ("api.example.com", "*.example.com", "::1"), without a port',
        })
        .optional(),
      path: z.string().startsWith('/', 'must start with "/"').optional(),
      pattern: z.string().startsWith('/', 'must start with "/"').optional(),
    })
    .refine((m) => m.path === undefined || m.pattern === undefined, {
      error: 'give "path" (a prefix) or "pattern", not both',
    })
    .optional(),
  /** Default: 'ip'. */
  key: keySpec.optional(),
  /** Default: 'ip'. */
  onMissingKey: z.enum(['ip', 'skip', 'reject']).optional(),
  policies: policies.optional(),
  /** Default: 1. */
  cost: z.number().int().min(0).optional(),
  /** Several limits, each with its own key, instead of `key` and `policies`: all are charged, or none. */
  limits: z.array(limitSchema).min(1).optional(),
  /** Count only the requests the upstream failed (or only those it served), from its answer's status. */
  countOnly: z.enum(['failed', 'successful']).optional(),
  /** What a failed answer is, for countOnly: codes and classes ("4xx"). Default: every status from 400. */
  failedStatuses: z
    .array(
      z.union([
        z
          .number()
          .int()
          .min(100, 'must be a status from 100 to 599')
          .max(599, 'must be a status from 100 to 599'),
        z.string().regex(/^[1-5]xx$/, 'must be a status class such as "4xx"'),
      ]),
    )
    .min(1)
    .optional(),
  priority: z.enum(['critical', 'default', 'sheddable']).default('default'),
  shadow: z.boolean().optional(),
  allow: lists.optional(),
  deny: lists.optional(),
});

const limitNumbers = {
  initialLimit: z.number().int().min(1).optional(),
  minLimit: z.number().int().min(1).optional(),
  maxLimit: z.number().int().min(1).optional(),
};
/** The server's own protection: the library's Shedder options, as YAML. */
const shedSchema = z.strictObject({
  limit: z
    .union([
      z.enum(['gradient2', 'aimd']),
      z.strictObject({
        algorithm: z.literal('gradient2'),
        ...limitNumbers,
        smoothing: z.number().optional(),
        tolerance: z.number().optional(),
      }),
      z.strictObject({ algorithm: z.literal('aimd'), ...limitNumbers, backoff: z.number().optional() }),
    ])
    .optional(),
  latencyObjective: duration.optional(),
  shares: z.strictObject({ default: z.number().optional(), sheddable: z.number().optional() }).optional(),
  eventLoop: z
    .union([z.literal(false), z.strictObject({ target: duration.optional(), interval: duration.optional() })])
    .optional(),
  retryAfter: duration.optional(),
});

const jwtSchema = z
  .strictObject({
    secret: z.string().min(16, 'must be at least 16 characters').optional(),
    secretEnv: z.string().min(1).optional(),
    publicKey: z
      .string()
      .includes('-----BEGIN PUBLIC KEY-----', { error: 'must be a PEM public key (SPKI)' })
      .optional(),
    publicKeyFile: z.string().min(1).optional(),
    algorithms: z
      .array(
        z.enum(['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA']),
      )
      .min(1)
      .optional(),
    issuer: stringList.optional(),
    audience: stringList.optional(),
    clockTolerance: duration.optional(),
  })
  .refine(
    (j) => [j.secret, j.secretEnv, j.publicKey, j.publicKeyFile].filter((v) => v !== undefined).length === 1,
    { error: 'give exactly one of secret, secretEnv, publicKey, publicKeyFile' },
  );

/** Passive ejection and optional active health checks of the upstreams (see upstreams.ts). */
const failoverSchema = z
  .strictObject({
    failures: z.number().int().min(1).default(3),
    ejectFor: duration.default(10_000),
    maxEjectFor: duration.default(300_000),
    healthCheck: z
      .strictObject({
        path: z.string().startsWith('/', 'must start with "/"'),
        interval: duration.default(5_000),
        timeout: duration.default(2_000),
      })
      .optional(),
  })
  .refine((f) => f.maxEjectFor >= f.ejectFor, {
    error: 'maxEjectFor must be at least ejectFor',
    path: ['maxEjectFor'],
  });

const schema = z.strictObject({
  listen: address('127.0.0.1').default({ host: '127.0.0.1', port: DEFAULT_PORT }),
  upstream: z
    .union(
      [
        url(['http:', 'https:'], '"http://127.0.0.1:8000"'),
        z.array(url(['http:', 'https:'], '"http://127.0.0.1:8000"')).min(1),
      ],
      {
        error: 'must be a URL like "http://127.0.0.1:8000", or a list of them',
      },
    )
    .transform((v) => (Array.isArray(v) ? v : [v])),
  /** Trusted for https:// upstreams instead of Node's bundled CAs: a PEM file (a private CA, a self-signed cert). */
  upstreamCa: z.string().min(1).optional(),
  /** Listen with TLS: PEM files, read again when they change. */
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  failover: failoverSchema.default({ failures: 3, ejectFor: 10_000, maxEjectFor: 300_000 }),
  store: z
    .string({ error: 'must be "memory" or a Redis URL' })
    .refine((v) => v === 'memory' || /^(rediss?|redis-cluster):\/\/[^\s]+$/.test(v), {
      error: (issue) =>
        `must be "memory", redis://host:port, rediss://host:port or redis-cluster://host:port,host:port; got ${JSON.stringify(issue.input)}`,
    })
    .default('memory'),
  leases: z.boolean().default(false),
  shed: shedSchema.optional(),
  admin: z
    .union([z.literal(false), address('127.0.0.1')])
    .default({ host: '127.0.0.1', port: DEFAULT_ADMIN_PORT }),
  trustProxy: trustProxy.default(false),
  ipv6Prefix: z.number().int().min(1).max(128).default(64),
  headers: z.enum(['draft-10', 'draft-7', 'draft-6']).or(z.literal(false)).default('draft-10'),
  shadow: z.boolean().default(false),
  caseSensitive: z.boolean().default(false),
  preserveHost: z.boolean().default(true),
  forwarded: z.enum(['x-forwarded', 'forwarded', 'both', 'none']).default('x-forwarded'),
  /** Tell the upstream of the decision: the rule's name and its RateLimit fields, on the forwarded request. */
  forwardDecision: z.boolean().default(false),
  timeouts: z
    .strictObject({
      connect: duration.default(5_000),
      response: duration.default(30_000),
      idle: duration.default(60_000),
    })
    .default({ connect: 5_000, response: 30_000, idle: 60_000 }),
  maxSockets: z.number().int().min(1).default(256),
  grace: duration.default(DEFAULT_GRACE),
  /** The Redis store's outage policy; only with a Redis store (refused with memory, which has no outage). */
  onStoreError: z.enum(OUTAGE_POLICIES).optional(),
  allow: lists.default([]),
  deny: lists.default([]),
  jwt: jwtSchema.optional(),
  rules: z.array(ruleSchema).default([]),
});

export type ProxyConfig = z.output<typeof schema>;
export type RuleConfig = ProxyConfig['rules'][number];

function isCidr(entry: string): boolean {
  const [ip = '', bits = '', extra] = entry.split('/');
  const family = isIP(ip);
  return (
    family !== 0 && extra === undefined && /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)
  );
}

/** A rule's policies as a list (the configuration accepts one policy or a list). */
function policyList(policies: unknown): { algorithm?: string }[] {
  if (policies === undefined) return [];
  return (Array.isArray(policies) ? policies : [policies]) as { algorithm?: string }[];
}

/**
 * Why a rule's limiters take no concurrency policy, in the configuration or in an override the admin API
 * sets later (see compileRules); undefined when they may. One answer for both, so the two refuse alike.
 */
export function concurrencyRefusal(rule: Pick<RuleConfig, 'limits' | 'countOnly'>): string | undefined {
  if (rule.limits !== undefined)
    return "several limits are decided together, at once, and a concurrency policy holds a slot for the request's duration; give it a rule of its own";
  if (rule.countOnly !== undefined)
    return "a concurrency policy holds a slot for the request's duration, so it cannot count by outcome (countOnly)";
  return undefined;
}

/** Whether a rule's policies (one or a list, as configured) hold a concurrency policy. */
function hasConcurrency(policies: unknown): boolean {
  return policyList(policies).some((p) => p.algorithm === 'concurrency');
}

function checkKey(key: RuleConfig['key'], at: string, source: string, hasJwt: boolean): void {
  if (typeof key === 'object' && 'jwt' in key && !hasJwt) {
    throw usageError(
      `${source}: ${at}.key.jwt: needs a top-level "jwt" section (secret or public key) to verify tokens`,
    );
  }
}

/** A rule has either one limit (`policies`, with `key`, `onMissingKey`, `cost`) or a list (`limits`). */
function checkLimits(rule: RuleConfig, at: string, source: string, config: ProxyConfig): void {
  const hasJwt = config.jwt !== undefined;
  if (rule.limits === undefined) {
    if (rule.policies === undefined) {
      if (config.shed === undefined) {
        throw usageError(
          `${source}: ${at}.policies: required, e.g. [{ limit: 100, window: 1m }] (only with a top-level "shed" may a rule have none: it then only sheds)`,
        );
      }
      // A rule that only sheds: nothing of a per-client limit applies to it.
      for (const field of ['key', 'onMissingKey', 'cost', 'countOnly', 'failedStatuses'] as const) {
        if (rule[field] !== undefined) {
          throw usageError(
            `${source}: ${at}.${field}: applies to a rule's limits, and this rule has none (it only sheds); give it policies, or remove ${field}`,
          );
        }
      }
      return;
    }
    checkKey(rule.key, at, source, hasJwt);
    // The single limit's defaults, as a limit of a list has them.
    Object.assign(rule, {
      key: rule.key ?? 'ip',
      onMissingKey: rule.onMissingKey ?? 'ip',
      cost: rule.cost ?? 1,
    });
    return;
  }
  for (const field of ['policies', 'key', 'onMissingKey', 'cost'] as const) {
    if (rule[field] !== undefined) {
      throw usageError(
        `${source}: ${at}.${field}: give it in each of "limits", which replaces the rule's own ${field}`,
      );
    }
  }
  const names = new Set<string>();
  for (const [j, limit] of rule.limits.entries()) {
    if (names.has(limit.name))
      throw usageError(`${source}: ${at}.limits[${j}].name: "${limit.name}" is used by an earlier limit`);
    names.add(limit.name);
    checkKey(limit.key, `${at}.limits[${j}]`, source, hasJwt);
    if (hasConcurrency(limit.policies))
      throw usageError(`${source}: ${at}.limits[${j}].policies: ${concurrencyRefusal(rule)}`);
  }
}

/** The proxy's shedder, as its `shed` section describes it (none without one). */
export function shedderOf(config: ProxyConfig): Shedder | undefined {
  return config.shed === undefined ? undefined : new Shedder(config.shed as ShedderOptions);
}

/** Validates plain configuration data (parsed YAML or JSON). `source` names it in errors. */
export function validateProxyConfig(data: unknown, source = 'config'): ProxyConfig {
  const parsed = schema.safeParse(data ?? {});
  if (!parsed.success) {
    const lines = parsed.error.issues
      .slice(0, 5)
      .map((issue) => `${pathOf(issue.path)}: ${issueText(issue)}`);
    throw usageError(`${source}: ${lines.join('; ')}`);
  }
  const config = parsed.data;
  if (config.leases && config.store === 'memory') {
    throw usageError(
      `${source}: leases: quota leases share a Redis store's quota; set "store" to a Redis URL`,
    );
  }
  if (config.onStoreError !== undefined && config.store === 'memory') {
    throw usageError(
      `${source}: onStoreError: the memory store never fails, so it has no outage policy; set "store" to a Redis URL, or remove onStoreError`,
    );
  }
  if (config.shed !== undefined) {
    try {
      shedderOf(config)?.close();
    } catch (error) {
      // The library names the option; here it sits under "shed".
      const option = (error as { option?: string }).option;
      const reason = (error as Error).message.replace(/^floodgate: option "[^"]*" /, '');
      throw usageError(`${source}: shed.${option}: ${reason}`);
    }
  }
  const names = new Set<string>();
  for (const [i, rule] of config.rules.entries()) {
    const at = `rules[${i}]`;
    if (names.has(rule.name))
      throw usageError(`${source}: ${at}.name: "${rule.name}" is used by an earlier rule`);
    names.add(rule.name);
    checkLimits(rule, at, source, config);
    if (rule.failedStatuses !== undefined && rule.countOnly === undefined) {
      throw usageError(
        `${source}: ${at}.failedStatuses: says which answers count for countOnly; set countOnly: failed (or successful), or remove failedStatuses`,
      );
    }
    if (rule.countOnly !== undefined && hasConcurrency(rule.policies)) {
      throw usageError(
        `${source}: ${at}.countOnly: ${concurrencyRefusal(rule)}; remove countOnly or the concurrency policy`,
      );
    }
    if (typeof rule.key === 'object' && 'jwt' in rule.key && config.jwt === undefined) {
      throw usageError(
        `${source}: ${at}.key.jwt: needs a top-level "jwt" section (secret or public key) to verify tokens`,
      );
    }
    if (rule.match?.pattern !== undefined) {
      try {
        pathMatch(rule.match.pattern);
      } catch (error) {
        const reason = (error as Error).message.replace(/; visit .*$/, '');
        throw usageError(
          `${source}: ${at}.match.pattern: ${reason} (name wildcards and parameters: /files/*path, /users/:id)`,
        );
      }
    }
    for (const method of rule.match?.method ?? []) {
      if (!/^[A-Za-z]+$/.test(method))
        throw usageError(`${source}: ${at}.match.method: "${method}" is not an HTTP method`);
    }
  }
  for (const [field, list] of [
    ['allow', config.allow],
    ['deny', config.deny],
  ] as const) {
    for (const [i, entry] of list.entries()) {
      if (entry.includes('/') && !isCidr(entry)) {
        throw usageError(
          `${source}: ${field}[${i}]: "${entry}" is neither an address, a CIDR block, nor a key`,
        );
      }
    }
  }
  return config;
}

/** Reads and validates a YAML (or JSON) configuration file. */
export function loadProxyConfig(file: string): ProxyConfig {
  return validateProxyConfig(readSettingsFile(file, 'listen, upstream, rules'), file);
}

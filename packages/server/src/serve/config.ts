import { isInvalidOption, type PolicySpec } from 'floodgate';
import { clientIpResolver, type TrustProxy } from 'floodgate/http';
import { z } from 'zod';
import { DEFAULT_GRACE } from '../shared/drain.js';
import { usageError } from '../shared/errors.js';
import { flagOfPolicyOption, policyFromFlags } from '../shared/policy-flags.js';
import { OUTAGE_POLICIES, type OutagePolicy } from '../shared/redis.js';
import { duration, issueText, policies } from '../shared/schema.js';
import { readSettingsFile } from '../shared/yaml.js';

/** Settings of `floodgate serve`: each from a flag, else an environment variable, else the config file, else the default. */
export interface ServeConfig {
  port: number;
  host: string;
  db: string;
  redis: string | undefined;
  /** With Redis: how the limits are decided while it is down (the store's outage policy; fallback if unset). */
  onStoreError: OutagePolicy | undefined;
  limit: number;
  window: string;
  algorithm: string;
  /** Longest wait for requests in flight at a stop, in ms. */
  grace: number;
  /** Which proxies may say who the client is (X-Forwarded-For), as the middleware's `trustProxy`. */
  trustProxy: TrustProxy;
  /** IPv6 clients are grouped by this prefix, as the middleware's `ipv6Prefix`. */
  ipv6Prefix: number;
  /** The port of the admin listener (`/metrics`, `/health`), on loopback. */
  adminPort: number;
  /** False with `--no-admin`: no admin listener. */
  admin: boolean;
  /** The token the admin API needs for actions (and anything not from loopback). */
  adminToken: string | undefined;
  /** Whether the database was chosen (a flag, a variable, the file) rather than the embedded default. */
  dbGiven: boolean;
}

/** Each message says what the setting takes and what it got. */
const got = (expected: string) => (issue: { input?: unknown }) =>
  `${expected}; got ${JSON.stringify(issue.input)}`;

/** A whole number from a flag or variable (text) or a file (a number), within a range. */
const integer = (min: number, max: number) => {
  const error = got(`must be an integer from ${min} to ${max}`);
  return z
    .union([z.number(), z.string().regex(/^\d+$/).transform(Number)], { error })
    .pipe(z.number().int({ error }).min(min, { error }).max(max, { error }));
};
const text = z.union([z.string(), z.number().transform(String)], { error: got('must be a string') });

/**
 * A trust-proxy setting: `false`, `true`, a number of hops, or addresses and CIDR blocks (a list in the file,
 * comma-separated in a flag or variable), as the proxy's `trustProxy`. The library's own check runs later.
 */
const trustProxy = z.union(
  [
    z.boolean(),
    z.number(),
    z.array(z.string()),
    z.string().transform((v): TrustProxy => {
      const value = v.trim();
      if (value === 'true' || value === 'false') return value === 'true';
      if (/^\d+$/.test(value)) return Number(value);
      return value.split(',').map((entry) => entry.trim());
    }),
  ],
  { error: got('must be true, false, a number of hops, or addresses and CIDR blocks') },
);

/** One schema per setting; where the value came from (a flag, a variable, the file) is said around it. */
const FIELDS = {
  port: integer(0, 65535).default(8080),
  host: text.default('127.0.0.1'),
  db: text.default('sqlite:./floodgate.db'),
  redis: text
    .refine((v) => /^(rediss?|redis-cluster):\/\/./.test(v), {
      error: got('must be redis://host:port, rediss://host:port or redis-cluster://host:port,host:port'),
    })
    .optional(),
  onStoreError: z
    .enum(OUTAGE_POLICIES, { error: got(`must be one of ${OUTAGE_POLICIES.join(', ')}`) })
    .optional(),
  limit: integer(1, 1_000_000_000).default(5),
  window: text.default('60s'),
  algorithm: text.default('fixed-window'),
  grace: duration.default(DEFAULT_GRACE),
  trustProxy: trustProxy.default(false),
  ipv6Prefix: integer(1, 128).default(64),
  adminPort: integer(0, 65535).default(9463),
  adminToken: z
    .string({ error: 'must be a string' })
    .min(16, { error: 'must be at least 16 characters' })
    .optional(),
};
type Key = keyof typeof FIELDS;
const KEYS = Object.keys(FIELDS) as Key[];
/** adminPort → FLOODGATE_ADMIN_PORT and --admin-port; the file says adminPort, as the proxy's does. */
const words = (key: Key) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const env = (key: Key) => `FLOODGATE_${words(key).replaceAll('-', '_').toUpperCase()}`;
const flag = (key: Key) => `--${words(key)}`;

/** Merges flags, environment and config file, and validates the result; errors name where the bad value came from. */
export function resolveConfig(
  flags: Partial<Record<Key | 'config', string>> & { admin?: boolean },
  environment: NodeJS.ProcessEnv = process.env,
): ServeConfig {
  const file = flags.config ?? environment.FLOODGATE_CONFIG;
  const fromFile = file === undefined ? {} : readSettingsFile(file, 'port, host, db');
  for (const key of Object.keys(fromFile)) {
    if (!(KEYS as string[]).includes(key)) {
      throw usageError(`${file}: unknown setting "${key}" (known: ${KEYS.join(', ')})`);
    }
  }
  const pick = (key: Key): { value: unknown; source: string } | undefined => {
    if (flags[key] !== undefined) return { value: flags[key], source: flag(key) };
    const e = environment[env(key)];
    if (e !== undefined && e !== '') return { value: e, source: env(key) };
    if (fromFile[key] !== undefined) return { value: fromFile[key], source: `"${key}" in ${file}` };
    return undefined;
  };
  const values: Record<string, unknown> = {};
  for (const key of KEYS) {
    const given = pick(key);
    const parsed = FIELDS[key].safeParse(given?.value);
    if (!parsed.success) {
      throw usageError(`${given?.source ?? key} ${issueText(parsed.error.issues[0]!)}`);
    }
    values[key] = parsed.data;
  }
  try {
    clientIpResolver(values.trustProxy as TrustProxy, pick('trustProxy')?.source ?? 'trustProxy');
  } catch (error) {
    if (!isInvalidOption(error)) throw error;
    throw usageError(`${error.option} must be ${error.expected}; got ${error.got}`);
  }
  if (flags.admin === false && flags.adminPort !== undefined) {
    throw usageError('--admin-port cannot be combined with --no-admin');
  }
  const config = {
    ...values,
    admin: flags.admin !== false,
    dbGiven: pick('db') !== undefined,
  } as unknown as ServeConfig;
  if (config.onStoreError !== undefined && config.redis === undefined) {
    // The memory store never fails: an outage policy for it would be a setting that does nothing.
    throw usageError(
      `${pick('onStoreError')!.source} needs --redis (FLOODGATE_REDIS): only a Redis store has outages`,
    );
  }
  // The policy the settings make, checked by the library; a complaint names the setting it came from.
  const policy = policies.safeParse(policyOf(config));
  if (!policy.success) {
    const issue = policy.error.issues[0]!;
    const flag = flagOfPolicyOption(issue.path.join('.')) as Key | undefined;
    const source = (flag === undefined ? undefined : pick(flag)?.source) ?? `the ${flag ?? 'policy'}`;
    throw usageError(`${source} ${issue.message}`);
  }
  return config;
}

/** The per-user policy: the tutorial's 5 per 60 s by default. */
export function policyOf(config: ServeConfig): PolicySpec {
  return policyFromFlags(config, 'per-user');
}

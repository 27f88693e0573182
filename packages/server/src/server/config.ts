import { readFileSync } from 'node:fs';
import { isInvalidOption, type PolicySpec, parseDuration, resolvePolicies } from 'floodgate';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_GRACE } from '../shared/drain.js';
import { UsageError } from '../shared/errors.js';
import { flagOfPolicyOption, policyFromFlags } from '../shared/policy-flags.js';

/** Settings of `floodgate serve`: each from a flag, else an environment variable, else the config file, else the default. */
export interface ServeConfig {
  port: number;
  host: string;
  db: string;
  redis: string | undefined;
  limit: number;
  window: string;
  algorithm: string;
  /** Longest wait for requests in flight at a stop, in ms. */
  grace: number;
}

export class ConfigError extends UsageError {}

const DEFAULTS: Omit<ServeConfig, 'redis' | 'grace'> & { redis?: string } = {
  port: 8080,
  host: '127.0.0.1',
  db: 'sqlite:./floodgate.db',
  limit: 5,
  window: '60s',
  algorithm: 'fixed-window',
};
const KEYS = ['port', 'host', 'db', 'redis', 'limit', 'window', 'algorithm', 'grace'] as const;
type Key = (typeof KEYS)[number];
const env = (key: Key) => `FLOODGATE_${key.toUpperCase()}`;

/** Merges flags, environment and config file, and validates the result; errors name where the bad value came from. */
export function resolveConfig(
  flags: Partial<Record<Key | 'config', string>>,
  environment: NodeJS.ProcessEnv = process.env,
): ServeConfig {
  const file = flags.config ?? environment.FLOODGATE_CONFIG;
  let fromFile: Record<string, unknown> = {};
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(
        `cannot read config file "${file}": ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (error) {
      throw new ConfigError(
        `config file "${file}" is not valid YAML: ${(error as Error).message.split('\n')[0]}`,
      );
    }
    if (parsed !== null && parsed !== undefined && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw new ConfigError(`config file "${file}" must be a mapping of settings (port, host, db, ...)`);
    }
    fromFile = (parsed ?? {}) as Record<string, unknown>;
    for (const key of Object.keys(fromFile)) {
      if (!(KEYS as readonly string[]).includes(key)) {
        throw new ConfigError(`config file "${file}": unknown setting "${key}" (known: ${KEYS.join(', ')})`);
      }
    }
  }
  const pick = (key: Key): { value: unknown; source: string } | undefined => {
    if (flags[key] !== undefined) return { value: flags[key], source: `--${key}` };
    const e = environment[env(key)];
    if (e !== undefined && e !== '') return { value: e, source: env(key) };
    if (fromFile[key] !== undefined) return { value: fromFile[key], source: `"${key}" in ${file}` };
    return undefined;
  };
  const str = (key: Key): string | undefined => {
    const got = pick(key);
    if (got === undefined) return undefined;
    if (typeof got.value !== 'string' && typeof got.value !== 'number') {
      throw new ConfigError(`${got.source} must be a string; got ${JSON.stringify(got.value)}`);
    }
    return String(got.value);
  };
  const int = (key: Key, min: number, max: number, fallback: number): number => {
    const got = pick(key);
    if (got === undefined) return fallback;
    const n =
      typeof got.value === 'number'
        ? got.value
        : typeof got.value === 'string'
          ? Number(got.value)
          : Number.NaN;
    if (
      !Number.isInteger(n) ||
      n < min ||
      n > max ||
      (typeof got.value === 'string' && !/^\d+$/.test(got.value))
    ) {
      throw new ConfigError(
        `${got.source} must be an integer from ${min} to ${max}; got ${JSON.stringify(got.value)}`,
      );
    }
    return n;
  };
  const config: ServeConfig = {
    port: int('port', 0, 65535, DEFAULTS.port),
    host: str('host') ?? DEFAULTS.host,
    db: str('db') ?? DEFAULTS.db,
    redis: str('redis'),
    limit: int('limit', 1, 1_000_000_000, DEFAULTS.limit),
    window: str('window') ?? DEFAULTS.window,
    algorithm: str('algorithm') ?? DEFAULTS.algorithm,
    grace: DEFAULT_GRACE,
  };
  const grace = pick('grace');
  if (grace !== undefined) {
    try {
      config.grace = parseDuration(grace.value, 'grace');
    } catch {
      throw new ConfigError(
        `${grace.source} must be a duration such as "10s" or "500ms"; got ${JSON.stringify(grace.value)}`,
      );
    }
  }
  try {
    resolvePolicies(policyOf(config), 'policy');
  } catch (error) {
    if (!isInvalidOption(error)) throw error;
    // Said in the operator's terms: the flag, variable or file key the bad value came from.
    const flag = flagOfPolicyOption(error.option) as Key | undefined;
    const source = (flag === undefined ? undefined : pick(flag)?.source) ?? `the ${flag ?? 'policy'}`;
    throw new ConfigError(`${source} must be ${error.expected}; got ${error.got}`);
  }
  if (config.redis !== undefined && !/^(rediss?|redis-cluster):\/\/./.test(config.redis)) {
    throw new ConfigError(
      `--redis must be redis://host:port, rediss://host:port or redis-cluster://host:port,host:port; got "${config.redis}"`,
    );
  }
  return config;
}

/** The per-user policy: the tutorial's 5 per 60 s by default. */
export function policyOf(config: ServeConfig): PolicySpec {
  return policyFromFlags(config, 'per-user');
}

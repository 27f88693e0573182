import { ALGORITHM_CODES } from './algorithms/codes.js';
import { algorithmNames, algorithms } from './algorithms/index.js';
import type { Algorithm, AlgorithmName, AlgorithmParams } from './algorithms/types.js';
import { type Duration, formatDuration, parseDuration } from './duration.js';
import { invalidOption } from './errors.js';

/** A rate policy: `limit` per `window`. */
export interface RatePolicySpec {
  /** Names the policy in decisions and headers; defaults to e.g. `token-bucket-5-per-10s`. */
  readonly name?: string;
  /** Defaults to `"token-bucket"`. */
  readonly algorithm?: Exclude<AlgorithmName, 'concurrency'>;
  /** Requests (cost units) per window: a positive integer. */
  readonly limit: number;
  /** The window: ms or a string such as `"10s"`. For token bucket and GCRA, the time to refill `limit`. */
  readonly window: Duration;
  /** Token bucket and GCRA only: the bucket's capacity, the largest burst (defaults to `limit`). */
  readonly burst?: number;
}

/** A concurrency policy: at most `limit` requests in flight; a lease lapses after `leaseTimeout`. */
export interface ConcurrencyPolicySpec {
  readonly name?: string;
  readonly algorithm: 'concurrency';
  readonly limit: number;
  readonly leaseTimeout: Duration;
}

/** A policy as declared by users, in code or in a JSON/YAML configuration. */
export type PolicySpec = RatePolicySpec | ConcurrencyPolicySpec;

/** A validated policy: integer parameters, a stable storage id, and its algorithm. */
export interface Policy extends AlgorithmParams {
  readonly name: string;
  readonly algorithm: AlgorithmName;
  /**
   * Identifies the policy's state in a store. It changes whenever the parameters change, because state
   * kept under other parameters means something else (a GCRA remainder is in units of 1/limit ms).
   */
  readonly id: string;
  readonly impl: Algorithm<unknown>;
  /** The declaration it came from, normalised (durations in ms), e.g. for exporting a configuration. */
  readonly spec: PolicySpec;
}

/** The policies applied to one identifier, all or nothing. */
export interface PolicySet {
  readonly policies: readonly Policy[];
  /** True when a policy is a concurrency limit, so requests need a lease id. */
  readonly concurrent: boolean;
}

/**
 * 2^51, a quarter of the integers a double holds exactly. The algorithms that scale a count by the window
 * (token bucket, GCRA, sliding window counter) keep `max(limit, burst) × window (ms)` below it; the others
 * only add counts and times, and keep each of limit and window below it, so sums stay exact.
 */
const MAX_EXACT = Number.MAX_SAFE_INTEGER / 4;
const SCALED: ReadonlySet<AlgorithmName> = new Set(['token-bucket', 'gcra', 'sliding-window-counter']);
const RATE_KEYS = new Set(['name', 'algorithm', 'limit', 'window', 'burst']);
const CONCURRENCY_KEYS = new Set(['name', 'algorithm', 'limit', 'leaseTimeout']);
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

function positiveInteger(value: unknown, option: string): number {
  if (typeof value !== 'number') throw invalidOption(option, 'a positive integer', value, 'type');
  if (!Number.isSafeInteger(value) || value < 1) throw invalidOption(option, 'a positive integer', value);
  return value;
}

/** Validates one policy declaration; `path` names it in errors (e.g. `policies[1]`). */
export function resolvePolicy(spec: unknown, path: string): Policy {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw invalidOption(path, 'a policy object such as { limit: 5, window: "10s" }', spec, 'type');
  }
  const raw = spec as Record<string, unknown>;
  const algorithm = raw.algorithm ?? 'token-bucket';
  if (typeof algorithm !== 'string' || !algorithmNames.includes(algorithm as AlgorithmName)) {
    throw invalidOption(
      `${path}.algorithm`,
      `one of ${algorithmNames.map((n) => `"${n}"`).join(', ')}`,
      algorithm,
    );
  }
  const name = algorithm as AlgorithmName;
  const allowed = name === 'concurrency' ? CONCURRENCY_KEYS : RATE_KEYS;
  for (const key of Object.keys(raw)) {
    if (!allowed.has(key)) {
      const accepted = [...allowed].map((k) => `"${k}"`).join(', ');
      throw invalidOption(
        `${path}.${key}`,
        `absent: a "${name}" policy takes only ${accepted}`,
        raw[key],
        'range',
        'ERR_FLOODGATE_UNKNOWN_OPTION',
      );
    }
  }
  if (raw.burst !== undefined && name !== 'token-bucket' && name !== 'gcra') {
    throw invalidOption(`${path}.burst`, 'absent except for "token-bucket" and "gcra" policies', raw.burst);
  }
  const limit = positiveInteger(raw.limit, `${path}.limit`);
  const window =
    name === 'concurrency'
      ? parseDuration(raw.leaseTimeout, `${path}.leaseTimeout`)
      : parseDuration(raw.window, `${path}.window`);
  const burst = raw.burst === undefined ? limit : positiveInteger(raw.burst, `${path}.burst`);
  const windowOption = name === 'concurrency' ? 'leaseTimeout' : 'window';
  // Scaled integer arithmetic must stay exact: the larger of limit and burst, times the window in ms, below
  // 2^51 (the option blamed is the one that is larger). Unscaled, each factor alone.
  if (SCALED.has(name) && Math.max(limit, burst) * window > MAX_EXACT) {
    const [option, value] = burst > limit ? ['burst', burst] : ['limit', limit];
    throw invalidOption(
      `${path}.${option}`,
      `small enough that ${option} × ${windowOption} in ms (${value} × ${window}) stays below 2^51`,
      value,
    );
  }
  if (limit > MAX_EXACT) throw invalidOption(`${path}.limit`, 'a positive integer below 2^51', limit);
  if (window > MAX_EXACT)
    throw invalidOption(`${path}.${windowOption}`, 'a duration below 2^51 ms', raw[windowOption]);
  const label = name === 'concurrency' ? `${limit}` : `${limit}-per-${formatDuration(window)}`;
  const policyName = raw.name ?? `${name}-${label}`;
  if (typeof policyName !== 'string' || !NAME.test(policyName)) {
    throw invalidOption(
      `${path}.name`,
      'up to 64 letters, digits, ".", "_", ":" or "-", starting with a letter or digit',
      policyName,
    );
  }
  const normalised: PolicySpec =
    name === 'concurrency'
      ? { name: policyName, algorithm: name, limit, leaseTimeout: window }
      : { name: policyName, algorithm: name, limit, window, ...(raw.burst === undefined ? {} : { burst }) };
  return {
    name: policyName,
    algorithm: name,
    limit,
    window,
    burst,
    id: `${policyName}:${ALGORITHM_CODES[name].state}:${limit}:${window}${burst === limit ? '' : `:${burst}`}`,
    impl: algorithms[name],
    spec: normalised,
  };
}

/** Validates a list of policies (or one), with unique names. */
export function resolvePolicies(specs: unknown, path: string, { allowEmpty = false } = {}): Policy[] {
  const list = Array.isArray(specs) ? specs : specs === undefined ? [] : [specs];
  if (list.length === 0 && !allowEmpty) {
    throw invalidOption(path, 'at least one policy, e.g. [{ limit: 5, window: "10s" }]', specs);
  }
  const policies = list.map((spec, i) => resolvePolicy(spec, Array.isArray(specs) ? `${path}[${i}]` : path));
  const seen = new Set<string>();
  policies.forEach((p, i) => {
    if (seen.has(p.name)) throw invalidOption(`${path}[${i}].name`, 'unique within its list', p.name);
    seen.add(p.name);
  });
  return policies;
}

/** Builds a policy set; an override replaces the default of the same name and adds the others. */
export function policySet(defaults: readonly Policy[], override: readonly Policy[] = []): PolicySet {
  const names = new Set(override.map((p) => p.name));
  const policies = [...defaults.filter((p) => !names.has(p.name)), ...override];
  return { policies, concurrent: policies.some((p) => p.algorithm === 'concurrency') };
}

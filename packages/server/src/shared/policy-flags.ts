import type { PolicySpec } from 'floodgate';

/** The policy flags the commands share: `--algorithm`, `--limit`, `--window`. */
export interface PolicyFlags {
  readonly algorithm: string;
  readonly limit: number;
  readonly window: string;
}

/**
 * The policy the flags describe. A concurrency limit has no window: `--window` is its lease timeout, the
 * longest a request may hold its slot (a slot is given back when the request ends).
 */
export function policyFromFlags(flags: PolicyFlags, name?: string): PolicySpec {
  const named = name === undefined ? {} : { name };
  if (flags.algorithm === 'concurrency') {
    return { ...named, algorithm: 'concurrency', limit: flags.limit, leaseTimeout: flags.window as never };
  }
  return { ...named, algorithm: flags.algorithm as never, limit: flags.limit, window: flags.window as never };
}

/** The flag behind an option of a policy built by `policyFromFlags`, e.g. `policy.leaseTimeout` → `--window`. */
export function flagOfPolicyOption(option: string): string | undefined {
  const field = option.slice(option.lastIndexOf('.') + 1);
  if (field === 'limit' || field === 'algorithm' || field === 'window') return field;
  if (field === 'leaseTimeout') return 'window';
  return undefined;
}

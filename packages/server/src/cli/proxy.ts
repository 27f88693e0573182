import { availableParallelism } from 'node:os';
import { parseDuration } from 'floodgate';
import { loadProxyConfig, type ProxyConfig, validateProxyConfig } from '../proxy/config.js';
import { jwtVerifier } from '../proxy/jwt.js';
import { checkTlsFiles } from '../proxy/tls.js';
import { configWarnings } from '../proxy/warnings.js';
import { CliError, ENVIRONMENT, usageError } from '../shared/errors.js';
import { policyFromFlags } from '../shared/policy-flags.js';

/** `floodgate proxy`'s flags as parsed; `admin` is false for `--no-admin`. */
export interface ProxyFlags {
  readonly config?: string;
  readonly upstream?: string;
  readonly port?: string;
  readonly host?: string;
  readonly redis?: string;
  readonly leases?: boolean;
  readonly onStoreError?: string;
  readonly limit?: string;
  readonly window?: string;
  readonly algorithm?: string;
  readonly shadow?: boolean;
  readonly grace?: string;
  readonly check?: string;
  readonly adminPort?: string;
  readonly admin?: boolean;
  readonly workers?: string;
}

/** Flags that describe the simple case only; with --config the file says these. */
const SIMPLE = [
  'upstream',
  'redis',
  'leases',
  'onStoreError',
  'limit',
  'window',
  'algorithm',
  'shadow',
] as const;

function graceOf(value: string): number {
  try {
    return parseDuration(value, 'grace');
  } catch {
    throw usageError(`--grace: must be a duration such as "500ms", "10s" or "1m"; got "${value}"`);
  }
}

/**
 * `floodgate proxy --check FILE`, as `nginx -t`: the file validated, and what it would never limit said;
 * exit 0 when it would start, 1 when it would not (a CI step's answer, whatever the reason).
 */
export function checkProxyFile(file: string): string[] {
  let config: ProxyConfig;
  try {
    config = loadProxyConfig(file);
    // What is read only at start (a key file, a secret's variable, the TLS files) is checked too.
    if (config.jwt !== undefined) jwtVerifier(config.jwt);
    checkTlsFiles(config);
  } catch (error) {
    if (error instanceof CliError) throw new CliError(ENVIRONMENT, error.message);
    throw error;
  }
  return [
    ...configWarnings(config).map((w) => `warning: ${w}`),
    `${file}: the configuration is valid (${config.rules.length} rules)`,
  ];
}

function port(value: string, flag: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
    throw usageError(`--${flag} must be a port number from 0 to 65535; got "${value}"`);
  }
  return Number(value);
}

/** The admin listener the flags ask for, over `base` (the file's, or the default). */
function adminOf(flags: ProxyFlags, base: ProxyConfig['admin'] | undefined) {
  if (flags.admin === false) {
    if (flags.adminPort !== undefined) throw usageError('--admin-port cannot be combined with --no-admin');
    return false;
  }
  if (flags.adminPort === undefined) return base;
  return {
    host: base === false || base === undefined ? '127.0.0.1' : base.host,
    port: port(flags.adminPort, 'admin-port'),
  };
}

/**
 * The proxy's configuration from the command line: a file (`--config`, where `--port`/`--host` and the admin
 * flags may still override the file), or flags for the simple case: one upstream, one limit per client IP.
 */
export function proxyConfigFromFlags(flags: ProxyFlags): {
  config: ProxyConfig;
  file: string | undefined;
  /** `--grace` over the file's (it also holds after a reload). */
  grace?: number;
} {
  const listen = (base: { host: string; port: number }) => ({
    host: flags.host ?? base.host,
    port: flags.port === undefined ? base.port : port(flags.port, 'port'),
  });
  if (flags.config !== undefined) {
    const given = SIMPLE.filter((flag) => flags[flag] !== undefined);
    if (given.length > 0) {
      const flag = given[0] === 'onStoreError' ? 'on-store-error' : given[0];
      throw usageError(`--${flag} cannot be combined with --config; set it in ${flags.config}`);
    }
    const config = loadProxyConfig(flags.config);
    const admin = adminOf(flags, config.admin)!;
    const grace = flags.grace === undefined ? undefined : graceOf(flags.grace);
    return {
      config: { ...config, listen: listen(config.listen), admin, ...(grace === undefined ? {} : { grace }) },
      file: flags.config,
      ...(grace === undefined ? {} : { grace }),
    };
  }
  if (flags.upstream === undefined) {
    throw usageError('give --config FILE.yaml, or --upstream URL (with --port, --limit, --window...)');
  }
  const admin = adminOf(flags, undefined);
  const policy = policyFromFlags({
    algorithm: flags.algorithm ?? 'token-bucket',
    limit: flags.limit === undefined ? 100 : Number(flags.limit),
    window: flags.window ?? '1m',
  });
  const data = {
    listen: listen({ host: '127.0.0.1', port: 8080 }),
    upstream: flags.upstream,
    ...(flags.redis === undefined ? {} : { store: flags.redis }),
    ...(flags.leases === undefined ? {} : { leases: flags.leases }),
    ...(flags.onStoreError === undefined ? {} : { onStoreError: flags.onStoreError }),
    ...(admin === undefined ? {} : { admin }),
    shadow: flags.shadow ?? false,
    ...(flags.grace === undefined ? {} : { grace: flags.grace }),
    rules: [{ name: 'per-ip', key: 'ip', policies: [policy] }],
  };
  try {
    return { config: validateProxyConfig(data, 'flags'), file: undefined };
  } catch (error) {
    // Name the flag, not the generated configuration's field.
    throw usageError(
      (error as Error).message
        .replace(/^flags: rules\[0\]\.policies\[0\]\.(limit|window|algorithm)/, '--$1')
        .replace(/^flags: rules\[0\]\.policies\[0\]\.leaseTimeout/, '--window')
        .replace(/^flags: upstream/, '--upstream')
        .replace(/^flags: store/, '--redis')
        .replace(
          /^flags: leases: quota leases share a Redis store's quota; set "store" to a Redis URL/,
          '--leases needs --redis',
        )
        .replace(/^flags: onStoreError: the memory store never fails.*$/, '--on-store-error needs --redis')
        .replace(/^flags: onStoreError/, '--on-store-error')
        .replace(/^flags: grace/, '--grace'),
    );
  }
}

/**
 * How many processes serve (`--workers`): a positive integer, or `auto` for one per core. The default is
 * `auto` with a Redis store and 1 with the memory store, where more are refused: each worker would count in
 * its own memory, so N workers would admit N times every limit.
 */
export function workersOf(value: string | undefined, store: string, cores = availableParallelism()): number {
  const memory = store === 'memory';
  if (value === undefined) return memory ? 1 : cores;
  if (value !== 'auto' && !/^[1-9]\d{0,3}$/.test(value))
    throw usageError(`--workers must be a whole number from 1 to 9999, or "auto"; got "${value}"`);
  const n = value === 'auto' ? (memory ? 1 : cores) : Number(value);
  if (n > 1 && memory)
    throw usageError(
      `--workers ${n}: with the memory store each worker would count alone, admitting ${n} times every limit; share the limits through Redis (--redis, or "store" in the file), or run one worker`,
    );
  return n;
}

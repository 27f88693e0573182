import type { RlsSettings } from '../rls/rls.js';
import { usageError } from '../shared/errors.js';
import { OUTAGE_POLICIES, type OutagePolicy } from '../shared/redis.js';
import type { TlsFiles } from '../shared/tls.js';

/** `floodgate rls`'s flags as parsed; `admin` is false for `--no-admin`. */
export interface RlsFlags {
  readonly config?: string;
  readonly port?: string;
  readonly host?: string;
  readonly redis?: string;
  readonly leases?: boolean;
  readonly onStoreError?: string;
  readonly adminPort?: string;
  readonly admin?: boolean;
  readonly shadow?: boolean;
  readonly quotaMode?: boolean;
  readonly dynamicMetadata?: boolean;
  readonly mergeDomains?: boolean;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsClientCa?: string;
}

// The spellings Go's strconv.ParseBool accepts, as envoyproxy/ratelimit reads its variables: a deployment's
// SHADOW_MODE=1 must not silently mean off.
const TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** A switch, or envoyproxy/ratelimit's variable of the same meaning, so that a deployment that sets it keeps it. */
export function switched(flag: boolean | undefined, variable: string, env = process.env): boolean {
  const value = env[variable];
  if (value === undefined || value === '' || FALSE.has(value)) return flag === true;
  if (TRUE.has(value)) return true;
  throw usageError(`${variable} must be true or false (or 1, 0, t, f); got "${value.slice(0, 32)}"`);
}

function port(value: string, flag: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
    throw usageError(`--${flag} must be a port number from 0 to 65535; got "${value}"`);
  }
  return Number(value);
}

/**
 * The gRPC listener's TLS files: the flags, else envoyproxy/ratelimit's variables (read only with
 * GRPC_SERVER_USE_TLS=true, as it reads them), so that a deployment that sets them keeps their meaning.
 * A flag beats its variable; undefined for plain gRPC.
 */
export function tlsFromFlags(flags: RlsFlags, env: NodeJS.ProcessEnv = process.env): TlsFiles | undefined {
  const fromEnv = env.GRPC_SERVER_USE_TLS === 'true';
  const pick = (flag: string | undefined, variable: string) =>
    flag ?? (fromEnv && env[variable] !== '' ? env[variable] : undefined);
  const cert = pick(flags.tlsCert, 'GRPC_SERVER_TLS_CERT');
  const key = pick(flags.tlsKey, 'GRPC_SERVER_TLS_KEY');
  const clientCa = pick(flags.tlsClientCa, 'GRPC_CLIENT_TLS_CACERT');
  const named = (flag: string, variable: string) => (fromEnv ? `${flag} (or ${variable})` : flag);
  if (cert === undefined && key === undefined) {
    if (clientCa !== undefined)
      throw usageError(
        `${named('--tls-client-ca', 'GRPC_CLIENT_TLS_CACERT')} needs --tls-cert and --tls-key`,
      );
    if (fromEnv)
      throw usageError(
        'GRPC_SERVER_USE_TLS=true needs GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY (or --tls-cert and --tls-key)',
      );
    return undefined;
  }
  if (cert === undefined) throw usageError(`--tls-key needs ${named('--tls-cert', 'GRPC_SERVER_TLS_CERT')}`);
  if (key === undefined) throw usageError(`--tls-cert needs ${named('--tls-key', 'GRPC_SERVER_TLS_KEY')}`);
  return { cert, key, ...(clientCa === undefined ? {} : { clientCa }) };
}

/** The service's settings from its flags; the limits themselves come from the `--config` file or folder. */
export function rlsSettingsFromFlags(flags: RlsFlags): { path: string; settings: RlsSettings } {
  if (flags.config === undefined) {
    throw usageError('give --config: an envoyproxy/ratelimit configuration file, or a folder of them');
  }
  if (flags.leases === true && flags.redis === undefined) throw usageError('--leases needs --redis');
  const onStoreError = flags.onStoreError;
  if (onStoreError !== undefined) {
    if (!(OUTAGE_POLICIES as readonly string[]).includes(onStoreError)) {
      throw usageError(
        `--on-store-error must be one of ${OUTAGE_POLICIES.join(', ')}; got "${onStoreError}"`,
      );
    }
    // The memory store never fails: an outage policy for it would be a setting that does nothing.
    if (flags.redis === undefined) throw usageError('--on-store-error needs --redis');
  }
  if (flags.admin === false && flags.adminPort !== undefined) {
    throw usageError('--admin-port cannot be combined with --no-admin');
  }
  const host = flags.host ?? '127.0.0.1';
  const tls = tlsFromFlags(flags);
  return {
    path: flags.config,
    settings: {
      listen: { host, port: flags.port === undefined ? 8081 : port(flags.port, 'port') },
      admin:
        flags.admin === false
          ? false
          : {
              host: '127.0.0.1',
              port: flags.adminPort === undefined ? 9465 : port(flags.adminPort, 'admin-port'),
            },
      store: flags.redis ?? 'memory',
      leases: flags.leases ?? false,
      ...(onStoreError === undefined ? {} : { onStoreError: onStoreError as OutagePolicy }),
      shadow: switched(flags.shadow, 'SHADOW_MODE'),
      quota: switched(flags.quotaMode, 'QUOTA_MODE'),
      dynamicMetadata: switched(flags.dynamicMetadata, 'RESPONSE_DYNAMIC_METADATA'),
      mergeDomains: switched(flags.mergeDomains, 'MERGE_DOMAIN_CONFIG'),
      ...(tls === undefined ? {} : { tls }),
    },
  };
}

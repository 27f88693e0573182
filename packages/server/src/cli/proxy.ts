import { parseArgs } from 'node:util';
import { loadProxyConfig, type ProxyConfig, ProxyConfigError, validateProxyConfig } from '../proxy/config.js';

export const PROXY_OPTIONS = {
  config: { type: 'string' },
  upstream: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  redis: { type: 'string' },
  limit: { type: 'string' },
  window: { type: 'string' },
  algorithm: { type: 'string' },
  'admin-port': { type: 'string' },
  shadow: { type: 'boolean' },
  grace: { type: 'string' },
} as const;

const SIMPLE = ['upstream', 'redis', 'limit', 'window', 'algorithm', 'shadow', 'grace'] as const;

function port(value: string, flag: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
    throw new ProxyConfigError(`--${flag} must be a port number from 0 to 65535; got "${value}"`);
  }
  return Number(value);
}

/**
 * The proxy's configuration from the command line: a file (`--config`, where `--port`/`--host` may still
 * override the listen address), or flags for the simple case: one upstream, one limit per client IP.
 */
export function proxyConfigFromArgs(args: string[]): { config: ProxyConfig; file: string | undefined } {
  const { values } = parseArgs({ args, options: PROXY_OPTIONS, strict: true });
  const listen = (base: { host: string; port: number }) => ({
    host: values.host ?? base.host,
    port: values.port === undefined ? base.port : port(values.port, 'port'),
  });
  if (values.config !== undefined) {
    const given = SIMPLE.filter((flag) => values[flag] !== undefined);
    if (given.length > 0) {
      throw new ProxyConfigError(
        `--${given[0]} cannot be combined with --config; set it in ${values.config}`,
      );
    }
    const config = loadProxyConfig(values.config);
    const admin =
      values['admin-port'] === undefined
        ? config.admin
        : {
            host: config.admin === false ? '127.0.0.1' : config.admin.host,
            port: port(values['admin-port'], 'admin-port'),
          };
    return { config: { ...config, listen: listen(config.listen), admin }, file: values.config };
  }
  if (values.upstream === undefined) {
    throw new ProxyConfigError(
      'give --config FILE.yaml, or --upstream URL (with --port, --limit, --window...)',
    );
  }
  const limit = values.limit === undefined ? 100 : Number(values.limit);
  const data = {
    listen: listen({ host: '127.0.0.1', port: 8080 }),
    upstream: values.upstream,
    ...(values.redis === undefined ? {} : { store: values.redis }),
    ...(values['admin-port'] === undefined
      ? {}
      : { admin: { port: port(values['admin-port'], 'admin-port') } }),
    shadow: values.shadow ?? false,
    ...(values.grace === undefined ? {} : { grace: values.grace }),
    rules: [
      {
        name: 'per-ip',
        key: 'ip',
        policies: [{ algorithm: values.algorithm ?? 'token-bucket', limit, window: values.window ?? '1m' }],
      },
    ],
  };
  try {
    return { config: validateProxyConfig(data, 'flags'), file: undefined };
  } catch (error) {
    // Name the flag, not the generated configuration's field.
    throw new ProxyConfigError(
      (error as Error).message
        .replace(/^flags: rules\[0\]\.policies\[0\]\.(limit|window|algorithm)/, '--$1')
        .replace(/^flags: upstream/, '--upstream')
        .replace(/^flags: store/, '--redis')
        .replace(/^flags: grace/, '--grace'),
    );
  }
}

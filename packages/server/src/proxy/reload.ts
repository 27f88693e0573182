import type { Logger } from 'pino';
import { loadProxyConfig, type ProxyConfig } from './config.js';
import { configWarnings } from './warnings.js';

/** Settings that belong to resources made once at start; a reload that changes them is applied without them. */
const RESTART_ONLY = [
  'listen',
  'admin',
  'store',
  'leases',
  'onStoreError',
  'shed',
  'maxSockets',
  'tls',
  'upstreamCa',
] as const;

/**
 * The configuration a reload of `file` gives, over `current`: validated (it throws when it is not), with
 * the settings that only a restart can change kept as they are, each such change logged.
 */
export function reloadedConfig(file: string, current: ProxyConfig, log: Logger): ProxyConfig {
  const loaded = loadProxyConfig(file);
  for (const warning of configWarnings(loaded)) log.warn({ file }, warning);
  const kept = { ...loaded };
  for (const field of RESTART_ONLY) {
    if (JSON.stringify(loaded[field]) !== JSON.stringify(current[field])) {
      log.warn({ field }, `"${field}" changed: it takes effect at the next restart`);
      (kept as Record<string, unknown>)[field] = current[field];
    }
  }
  return kept;
}

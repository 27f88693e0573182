import { Counter, collectDefaultMetrics, Registry } from 'prom-client';
import type { RlsConfig } from './config.js';
import type { Outcome } from './service.js';

/**
 * Series kept per `detailed_metric` descriptor: each distinct value of a wildcard would otherwise be a
 * series of its own, never freed, as many as clients choose to send. The first this many values seen keep
 * theirs; later ones are all counted under `<the descriptor's path>#other`, so totals stay exact.
 */
export const DETAILED_METRIC_VALUES = 100;

export interface RlsMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'domain' | 'code'>;
  readonly descriptors: Counter<'domain' | 'descriptor' | 'code' | 'shadow'>;
  readonly invalid: Counter;
  readonly reloads: Counter<'result'>;
  /** Counts a descriptor's outcome; a domain the configuration does not have is labelled "unknown". */
  outcome(config: RlsConfig, outcome: Outcome): void;
}

export function createRlsMetrics(): RlsMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'floodgate_rls_requests_total',
    help: 'ShouldRateLimit calls answered, by domain and overall code',
    labelNames: ['domain', 'code'] as const,
    registers: [registry],
  });
  const descriptors = new Counter({
    name: 'floodgate_rls_descriptors_total',
    help: 'Descriptors decided, by domain, descriptor (its configuration path, or its values with detailed_metric) and code; shadow="true" counts what shadow mode let through',
    labelNames: ['domain', 'descriptor', 'code', 'shadow'] as const,
    registers: [registry],
  });
  const invalid = new Counter({
    name: 'floodgate_rls_invalid_requests_total',
    help: 'Calls refused with INVALID_ARGUMENT',
    registers: [registry],
  });
  const reloads = new Counter({
    name: 'floodgate_rls_reloads_total',
    help: 'Configuration reloads, applied or rejected',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const detailed = detailedLabels();
  return {
    registry,
    requests,
    descriptors,
    invalid,
    reloads,
    outcome(config, { domain, descriptor, detailedOf, code, shadow }) {
      const known = config.has(domain);
      descriptors.inc({
        domain: known ? domain : 'unknown',
        descriptor: !known
          ? 'unmatched'
          : detailedOf === undefined
            ? descriptor
            : detailed.label(domain, detailedOf, descriptor),
        code,
        shadow: String(shadow && code === 'OVER_LIMIT'),
      });
    },
  };
}

/**
 * The labels of `detailed_metric` descriptors, at most `DETAILED_METRIC_VALUES` per descriptor. What was
 * seen is kept across reloads (the series outlive them too), by domain and path, which the configuration bounds.
 */
function detailedLabels(): { label(domain: string, path: string, descriptor: string): string } {
  const seen = new Map<string, Map<string, Set<string>>>();
  return {
    label(domain, path, descriptor) {
      let paths = seen.get(domain);
      if (paths === undefined) {
        paths = new Map();
        seen.set(domain, paths);
      }
      let labels = paths.get(path);
      if (labels === undefined) {
        labels = new Set();
        paths.set(path, labels);
      }
      if (labels.has(descriptor)) return descriptor;
      if (labels.size >= DETAILED_METRIC_VALUES) return `${path}#other`;
      labels.add(descriptor);
      return descriptor;
    },
  };
}

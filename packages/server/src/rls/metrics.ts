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
  /** envoyproxy/ratelimit's `config_load_success` and `config_load_error`, beside `reloads`. */
  readonly configLoads: { readonly success: Counter; readonly error: Counter };
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
  const upstream = upstreamStats(registry);
  const configLoads = {
    success: new Counter({
      name: 'ratelimit_service_config_load_success',
      help: "Configurations loaded, at start and by reloads (envoyproxy/ratelimit's stat)",
      registers: [registry],
    }),
    error: new Counter({
      name: 'ratelimit_service_config_load_error',
      help: "Configurations refused by a reload (envoyproxy/ratelimit's stat)",
      registers: [registry],
    }),
  };
  const detailed = detailedLabels();
  return {
    registry,
    requests,
    descriptors,
    invalid,
    reloads,
    configLoads,
    outcome(config, { domain, descriptor, detailedOf, code, shadow, hits }) {
      const known = config.has(domain);
      const labels = {
        domain: known ? domain : 'unknown',
        descriptor: !known
          ? 'unmatched'
          : detailedOf === undefined
            ? descriptor
            : detailed.label(domain, detailedOf, descriptor),
      };
      descriptors.inc({ ...labels, code, shadow: String(shadow && code === 'OVER_LIMIT') });
      if (hits !== undefined) upstream(labels, code === 'OVER_LIMIT', shadow, hits);
    },
  };
}

/** upstream's near_limit threshold: 80% of the limit (its NEAR_LIMIT_RATIO default). */
const NEAR_LIMIT_RATIO = 0.8;

/**
 * envoyproxy/ratelimit's per-descriptor stats, counted in hits as it counts them, as Prometheus counters
 * labelled by domain and descriptor: `total_hits`; `over_limit` (and `shadow_mode` when a shadow-mode
 * descriptor let them through); `within_limit`, and of those `near_limit`, the hits past 80% of the limit.
 */
function upstreamStats(
  registry: Registry,
): (
  labels: { domain: string; descriptor: string },
  over: boolean,
  shadow: boolean,
  hits: NonNullable<Outcome['hits']>,
) => void {
  const counter = (stat: string, help: string) =>
    new Counter({
      name: `ratelimit_service_rate_limit_${stat}`,
      help: `${help}, in hits (envoyproxy/ratelimit's stat)`,
      labelNames: ['domain', 'descriptor'] as const,
      registers: [registry],
    });
  const total = counter('total_hits', 'Hits asked of each descriptor');
  const overLimit = counter('over_limit', 'Hits over the limit');
  const shadowMode = counter('shadow_mode', 'Hits over the limit that shadow mode let through');
  const within = counter('within_limit', 'Hits within the limit');
  const near = counter('near_limit', 'Hits within the limit past 80% of it');
  return (labels, over, shadow, { cost, limit, used }) => {
    total.inc(labels, cost);
    if (over) {
      overLimit.inc(labels, cost);
      if (shadow) shadowMode.inc(labels, cost);
      return;
    }
    within.inc(labels, cost);
    const past = Math.min(cost, used - Math.floor(limit * NEAR_LIMIT_RATIO));
    if (past > 0) near.inc(labels, past);
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

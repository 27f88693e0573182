import { Counter, collectDefaultMetrics, Registry } from 'prom-client';
import type { RlsConfig } from './config.js';
import type { Code, Outcome } from './service.js';

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
  /** Counts a call's answer (`requests`); a domain the configuration does not have is labelled "unknown". */
  answered(config: RlsConfig, domain: string, code: Code): void;
  /** Counts a descriptor's outcome; a domain the configuration does not have is labelled "unknown". */
  outcome(config: RlsConfig, outcome: Outcome): void;
}

/**
 * One series' counts since `/metrics` was last read. prom-client hashes a label set at every `inc`, which
 * cost more than the decision itself; counted here in plain numbers and handed to the counters when they
 * are read. Undefined until counted: a series appears at its first count, as with `inc` (a cost of 0 too).
 */
interface Pending {
  ok?: number;
  over?: number;
  /** Over the limit, let through by shadow mode. */
  overShadow?: number;
  totalHits?: number;
  overLimitHits?: number;
  shadowModeHits?: number;
  withinHits?: number;
  nearHits?: number;
}

const add = (value: number | undefined, n: number) => (value ?? 0) + n;

export function createRlsMetrics(): RlsMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Every counter counted through `pending` hands it over before it is read (whichever is read first).
  const pending = new Map<string, Map<string, Pending>>();
  const answered = new Map<string, { OK?: number; OVER_LIMIT?: number }>();
  const collect = () => flush();
  const requests = new Counter({
    name: 'floodgate_rls_requests_total',
    help: 'ShouldRateLimit calls answered, by domain and overall code',
    labelNames: ['domain', 'code'] as const,
    registers: [registry],
    collect,
  });
  const descriptors = new Counter({
    name: 'floodgate_rls_descriptors_total',
    help: 'Descriptors decided, by domain, descriptor (its configuration path, or its values with detailed_metric) and code; shadow="true" counts what shadow mode let through',
    labelNames: ['domain', 'descriptor', 'code', 'shadow'] as const,
    registers: [registry],
    collect,
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
  const upstream = upstreamStats(registry, collect);
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

  function flush(): void {
    for (const [domain, counts] of answered) {
      if (counts.OK !== undefined) requests.inc({ domain, code: 'OK' }, counts.OK);
      if (counts.OVER_LIMIT !== undefined) requests.inc({ domain, code: 'OVER_LIMIT' }, counts.OVER_LIMIT);
    }
    answered.clear();
    for (const [domain, series] of pending)
      for (const [descriptor, p] of series) {
        const labels = { domain, descriptor };
        const count = (n: number | undefined, code: string, shadow: string) => {
          if (n !== undefined) descriptors.inc({ ...labels, code, shadow }, n);
        };
        count(p.ok, 'OK', 'false');
        count(p.over, 'OVER_LIMIT', 'false');
        count(p.overShadow, 'OVER_LIMIT', 'true');
        const hits = (counter: Counter<'domain' | 'descriptor'>, n: number | undefined) => {
          if (n !== undefined) counter.inc(labels, n);
        };
        hits(upstream.total, p.totalHits);
        hits(upstream.overLimit, p.overLimitHits);
        hits(upstream.shadowMode, p.shadowModeHits);
        hits(upstream.within, p.withinHits);
        hits(upstream.near, p.nearHits);
      }
    pending.clear();
  }

  function pendingOf(domain: string, descriptor: string): Pending {
    let series = pending.get(domain);
    if (series === undefined) {
      series = new Map();
      pending.set(domain, series);
    }
    let p = series.get(descriptor);
    if (p === undefined) {
      p = {};
      series.set(descriptor, p);
    }
    return p;
  }

  return {
    registry,
    requests,
    descriptors,
    invalid,
    reloads,
    configLoads,
    answered(config, domain, code) {
      const label = config.has(domain) ? domain : 'unknown';
      let counts = answered.get(label);
      if (counts === undefined) {
        counts = {};
        answered.set(label, counts);
      }
      counts[code] = add(counts[code], 1);
    },
    outcome(config, { domain, descriptor, detailedOf, code, shadow, hits }) {
      const known = config.has(domain);
      const p = pendingOf(
        known ? domain : 'unknown',
        !known
          ? 'unmatched'
          : detailedOf === undefined
            ? descriptor
            : detailed.label(domain, detailedOf, descriptor),
      );
      const over = code === 'OVER_LIMIT';
      if (!over) p.ok = add(p.ok, 1);
      else if (shadow) p.overShadow = add(p.overShadow, 1);
      else p.over = add(p.over, 1);
      if (hits === undefined) return;
      const { cost, limit, used } = hits;
      p.totalHits = add(p.totalHits, cost);
      if (over) {
        p.overLimitHits = add(p.overLimitHits, cost);
        if (shadow) p.shadowModeHits = add(p.shadowModeHits, cost);
        return;
      }
      p.withinHits = add(p.withinHits, cost);
      const past = Math.min(cost, used - Math.floor(limit * NEAR_LIMIT_RATIO));
      if (past > 0) p.nearHits = add(p.nearHits, past);
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
function upstreamStats(registry: Registry, collect: () => void) {
  const counter = (stat: string, help: string) =>
    new Counter({
      name: `ratelimit_service_rate_limit_${stat}`,
      help: `${help}, in hits (envoyproxy/ratelimit's stat)`,
      labelNames: ['domain', 'descriptor'] as const,
      registers: [registry],
      collect,
    });
  return {
    total: counter('total_hits', 'Hits asked of each descriptor'),
    overLimit: counter('over_limit', 'Hits over the limit'),
    shadowMode: counter('shadow_mode', 'Hits over the limit that shadow mode let through'),
    within: counter('within_limit', 'Hits within the limit'),
    near: counter('near_limit', 'Hits within the limit past 80% of it'),
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

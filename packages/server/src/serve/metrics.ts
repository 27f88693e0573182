import { Counter, Histogram, Registry } from 'prom-client';

/** The service's Prometheus metrics, on a registry of its own. */
export function createMetrics() {
  const registry = new Registry();
  return {
    registry,
    decisions: new Counter({
      name: 'floodgate_decisions_total',
      help: 'Rate-limit decisions, by policy and outcome',
      labelNames: ['policy', 'outcome'] as const,
      registers: [registry],
    }),
    storeLatency: new Histogram({
      name: 'floodgate_store_latency_seconds',
      help: 'Time to decide a request (store round trip included)',
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    requests: new Histogram({
      name: 'floodgate_http_request_duration_seconds',
      help: 'HTTP requests, by route and status',
      labelNames: ['route', 'status'] as const,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;

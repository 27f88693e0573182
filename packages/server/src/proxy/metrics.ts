import { PRIORITIES, type Shedder } from 'floodgate';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { UpstreamReport } from './upstreams.js';

/** A count kept in a plain number on the request path, handed to prom-client when scraped. */
interface Tally {
  readonly rule: string;
  readonly decision: string;
  n: number;
  exported: number;
}

/** The proxy's Prometheus metrics, on a registry of its own. */
export function createProxyMetrics() {
  const registry = new Registry();
  // prom-client's inc() validates and hashes the label set on every call, a labelled child's too: requests
  // are tallied in plain numbers and the counter catches up at each scrape.
  const tallies = new Map<string, Tally>();
  return {
    registry,
    requests: new Counter({
      name: 'floodgate_proxy_requests_total',
      help: 'Requests by rule ("" when none matched) and decision (allowed, limited, denied, rejected, unavailable; shadow_* when only logged)',
      labelNames: ['rule', 'decision'] as const,
      registers: [registry],
      collect() {
        for (const t of tallies.values()) {
          if (t.n === t.exported) continue;
          this.inc({ rule: t.rule, decision: t.decision }, t.n - t.exported);
          t.exported = t.n;
        }
      },
    }),
    /** Counts one request of `rule` with `decision`. */
    countRequest(rule: string, decision: string): void {
      const id = `${rule}\n${decision}`;
      const tally = tallies.get(id);
      if (tally !== undefined) tally.n++;
      else tallies.set(id, { rule, decision, n: 1, exported: 0 });
    },
    /** Requests counted so far, whatever their rule and decision. */
    decided(): number {
      let n = 0;
      for (const t of tallies.values()) n += t.n;
      return n;
    },
    upstreamErrors: new Counter({
      name: 'floodgate_proxy_upstream_errors_total',
      help: 'Requests the upstream failed, by kind (connect, connect-timeout, response-timeout, idle-timeout, reset)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    upstreamRetries: new Counter({
      name: 'floodgate_proxy_upstream_retries_total',
      help: 'Requests sent again (to the next upstream) after a failure before anything could have been processed, by kind',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    upstreamEjections: new Counter({
      name: 'floodgate_proxy_upstream_ejections_total',
      help: 'Times an upstream was taken out of the rotation after consecutive failures, by upstream',
      labelNames: ['upstream'] as const,
      registers: [registry],
    }),
    upstreamDuration: new Histogram({
      name: 'floodgate_proxy_upstream_duration_seconds',
      help: 'Time from the decision to the end of the upstream response, by rule',
      labelNames: ['rule'] as const,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    }),
    websockets: new Gauge({
      name: 'floodgate_proxy_upgraded_connections',
      help: 'Upgraded (WebSocket) connections open through the proxy',
      registers: [registry],
    }),
    reloads: new Counter({
      name: 'floodgate_proxy_config_reloads_total',
      help: 'Configuration reloads, by result (applied, rejected)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
  };
}
export type ProxyMetrics = ReturnType<typeof createProxyMetrics>;

/** Each upstream's state, read when scraped: 1 when in the rotation, 0 when ejected or failing its health check. */
export function registerUpstreamMetrics(registry: Registry, states: () => readonly UpstreamReport[]): void {
  new Gauge({
    name: 'floodgate_proxy_upstream_up',
    help: 'Whether an upstream is in the rotation (1) or out of it, ejected or failing its health check (0)',
    labelNames: ['upstream'] as const,
    registers: [registry],
    // Summed over workers (--workers), "up" would count them; an upstream is up where every worker says so.
    aggregator: 'min',
    collect() {
      this.reset();
      for (const s of states()) this.set({ upstream: s.upstream }, s.state === 'up' ? 1 : 0);
    },
  });
}

/** The shedder's state, read when scraped: its limit, requests in flight, and requests shed by class. */
export function registerShedMetrics(registry: Registry, shedder: Shedder): void {
  new Gauge({
    name: 'floodgate_proxy_shed_limit',
    help: 'The adaptive concurrency limit: requests the upstream may have in flight',
    registers: [registry],
    collect() {
      this.set(shedder.limit);
    },
  });
  new Gauge({
    name: 'floodgate_proxy_shed_inflight',
    help: 'Requests holding a slot of the concurrency limit',
    registers: [registry],
    collect() {
      this.set(shedder.inflight);
    },
  });
  new Counter({
    name: 'floodgate_proxy_shed_total',
    help: 'Requests shed (503), by class',
    labelNames: ['class'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const cls of PRIORITIES) this.inc({ class: cls }, shedder.stats.shed[cls]);
    },
  });
}

/** In a worker of several (`--workers`): the requests it decided, labelled with its number, to see the spread. */
export function registerWorkerMetrics(registry: Registry, worker: number, decided: () => number): void {
  new Counter({
    name: 'floodgate_proxy_worker_requests_total',
    help: 'Requests decided, by worker (with --workers)',
    labelNames: ['worker'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ worker: String(worker) }, decided());
    },
  });
}

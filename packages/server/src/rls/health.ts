import type { Server, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';

// grpc.health.v1.Health (Check, Watch and List), which Envoy's and Kubernetes' gRPC probes ask: SERVING
// while the service can answer ShouldRateLimit, NOT_SERVING once it is stopping, and while the store is
// down if the outage policy is `closed` (every call is UNAVAILABLE then; `fallback` and `open` still answer).

/** The names a probe may ask about: the server as a whole (""), and the rate-limit service. */
export const HEALTH_NAMES = ['', 'envoy.service.ratelimit.v3.RateLimitService'] as const;

export interface Health {
  /** The service's status, as every name answers it; watchers hear each change. */
  set(serving: boolean): void;
  /** NOT_SERVING to every watcher, then their streams ended, so that a shutdown need not wait for them. */
  stop(): void;
}

export function serveHealth(server: Server): Health {
  const health = new HealthImplementation();
  const watching = new Set<ServerWritableStream<unknown, unknown>>();
  // The library's handlers, with each Watch stream kept: a watch never ends by itself.
  health.addToServer({
    addService(definition, implementation: UntypedServiceImplementation) {
      const watch = implementation.watch as (call: ServerWritableStream<unknown, unknown>) => void;
      server.addService(definition, {
        ...implementation,
        watch: (call: ServerWritableStream<unknown, unknown>) => {
          watching.add(call);
          call.on('cancelled', () => watching.delete(call));
          watch(call);
        },
      });
    },
  } as Server);
  let stopped = false;
  const set = (serving: boolean) => {
    if (stopped) return;
    for (const name of HEALTH_NAMES) health.setStatus(name, serving ? 'SERVING' : 'NOT_SERVING');
  };
  set(true);
  return {
    set,
    stop() {
      set(false);
      stopped = true;
      for (const call of watching) call.end();
      watching.clear();
    },
  };
}

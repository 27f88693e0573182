import { Server, type ServerUnaryCall, type sendUnaryData, status } from '@grpc/grpc-js';
import type { Fleet } from 'floodgate/admin';
import { deliver } from 'floodgate/http';
import { type Logger, pino } from 'pino';
import { adminToken } from '../shared/dashboard.js';
import { environmentError } from '../shared/errors.js';
import { redact } from '../shared/redact.js';
import type { OutagePolicy } from '../shared/redis.js';
import { ServiceRuntime } from '../shared/runtime.js';
import type { TlsFiles } from '../shared/tls.js';
import { loadRlsConfig, type RlsConfig } from './config.js';
import { routeGrpcLog } from './grpc-log.js';
import { serveHealth } from './health.js';
import { createRlsMetrics, type RlsMetrics } from './metrics.js';
import { fromWire, serverDefinition, toWire, type WireRequest } from './protocol.js';
import { InvalidRequest, RateLimitService, StoreClosed } from './service.js';
import { grpcCredentials } from './tls.js';

export interface RlsSettings {
  /** Where the gRPC server listens. */
  readonly listen: { readonly host: string; readonly port: number };
  /** `/metrics` and `/health`, or false for none. */
  readonly admin: { readonly host: string; readonly port: number } | false;
  /** `memory`, or a Redis URL (`redis://`, `rediss://`, `redis-cluster://`). */
  readonly store: string;
  readonly leases?: boolean;
  /** The Redis store's outage policy (`fallback` by default); only with a Redis store. */
  readonly onStoreError?: OutagePolicy;
  /** Every descriptor in shadow mode (envoyproxy/ratelimit's SHADOW_MODE): counted, never refusing. */
  readonly shadow?: boolean;
  /** Every descriptor in quota mode (envoyproxy/ratelimit's QUOTA_MODE). */
  readonly quota?: boolean;
  /** Answers carry dynamic_metadata (envoyproxy/ratelimit's RESPONSE_DYNAMIC_METADATA). */
  readonly dynamicMetadata?: boolean;
  /** A domain in several files is merged (envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG), not refused. */
  readonly mergeDomains?: boolean;
  /** gRPC over TLS: PEM files, read again when they change; with `clientCa`, mutual TLS. */
  readonly tls?: TlsFiles | undefined;
}

export interface RunningRls {
  /** `host:port` of the gRPC server. */
  readonly address: string;
  readonly adminUrl: string | undefined;
  readonly metrics: RlsMetrics;
  readonly service: RateLimitService;
  /** With a Redis store: this process in the fleet sharing it (publishes every 5 s). */
  readonly fleet: Fleet | undefined;
  /** Reads the configuration again; false (the previous one kept) when it is invalid. */
  reload(): boolean;
  stop(): Promise<void>;
}

export interface RlsOptions {
  readonly log?: Logger;
  /** Reload when the configuration changes on disk (default true). */
  readonly watch?: boolean;
  /** The admin API's token (`--admin-token`); else `FLOODGATE_ADMIN_TOKEN`. */
  readonly adminToken?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** The time aligned windows are cut on (tests hold it still); default `Date.now`. */
  readonly now?: () => number;
}

/** Starts `floodgate rls`: the store, the gRPC service, the admin listener, reloads; resolves once it listens. */
export async function startRls(
  path: string,
  settings: RlsSettings,
  options: RlsOptions = {},
): Promise<RunningRls> {
  const log = options.log ?? pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime });
  routeGrpcLog(log);
  const load = { merge: settings.mergeDomains ?? false };
  const config = loadRlsConfig(path, load);
  // Read before anything opens: a bad file stops the start with nothing to undo.
  const tls = grpcCredentials(settings.tls);
  const metrics = createRlsMetrics();
  metrics.configLoads.success.inc();
  const server = new Server();
  const health = serveHealth(server);
  const runtime = await ServiceRuntime.open({
    log,
    registry: metrics.registry,
    store: {
      url: settings.store,
      leases: settings.leases ?? false,
      ...(settings.onStoreError === undefined ? {} : { onStoreError: settings.onStoreError }),
      // Only `closed` leaves calls unanswered while the store is down.
      ...(settings.onStoreError === 'closed' ? { onAvailability: (up: boolean) => health.set(up) } : {}),
    },
  });
  const service = new RateLimitService(config, runtime.stores.store, options.now ?? Date.now, {
    shadow: settings.shadow ?? false,
    quota: settings.quota ?? false,
    dynamicMetadata: settings.dynamicMetadata ?? false,
  });

  const shouldRateLimit = (call: ServerUnaryCall<WireRequest, object>, callback: sendUnaryData<object>) => {
    const invalid = (error: unknown) => {
      metrics.invalid.inc();
      callback({ code: status.INVALID_ARGUMENT, details: (error as Error).message });
    };
    let request: ReturnType<typeof fromWire>;
    try {
      request = fromWire(call.request);
    } catch (error) {
      invalid(error);
      return;
    }
    const current = service.config;
    deliver(
      () => service.decide(request, (outcome) => metrics.outcome(current, outcome)),
      (response) => {
        metrics.answered(current, request.domain, response.overallCode);
        callback(null, toWire(response));
      },
      (error) => {
        if (error instanceof InvalidRequest) return invalid(error);
        // onStoreError: closed, Redis away: an error, as envoyproxy/ratelimit answers then, so Envoy's
        // failure_mode_deny decides. Never OVER_LIMIT: no client is over its limit. Logged by the store.
        if (error instanceof StoreClosed) {
          callback({ code: status.UNAVAILABLE, details: error.message });
          return;
        }
        log.error({ err: redact((error as Error).message) }, 'a rate-limit decision failed');
        callback({ code: status.UNAVAILABLE, details: 'the rate-limit store is unavailable' });
      },
    );
  };

  server.addService(serverDefinition(), { shouldRateLimit });
  let address: string;
  try {
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        `${settings.listen.host.includes(':') ? `[${settings.listen.host}]` : settings.listen.host}:${settings.listen.port}`,
        tls.credentials,
        (error, bound) => (error === null ? resolve(bound) : reject(error)),
      ),
    );
    address = `${settings.listen.host}:${port}`;
    runtime.joinFleet(port, () => service.limiters());
    await runtime.startAdmin(
      settings.admin !== false && {
        address: settings.admin,
        health: () => ({ domains: [...service.config.keys()] }),
        names: { port: '--admin-port', host: '--admin-port' },
        more: runtime.dashboard({
          limiters: () => service.limiters(),
          token: adminToken(options.adminToken, options.env ?? process.env),
        }),
      },
    );
  } catch (error) {
    server.forceShutdown();
    runtime.abandon();
    if ((error as Error).message?.includes('No address added')) {
      throw environmentError(
        `cannot listen on ${settings.listen.host}:${settings.listen.port}: the port is in use or the address is not this machine's; choose another with --port or --host`,
      );
    }
    throw error;
  }

  const reload = runtime.reloader({
    counter: metrics.reloads,
    source: { path },
    apply: () => {
      let next: RlsConfig;
      try {
        next = loadRlsConfig(path, load);
      } catch (error) {
        metrics.configLoads.error.inc();
        throw error;
      }
      service.swap(next);
      metrics.configLoads.success.inc();
      return { domains: [...next.keys()] };
    },
  });
  if (options.watch !== false) runtime.watch(path, reload);
  const certificates = tls.watch(log);

  log.info(
    {
      url: `grpc://${address}`,
      admin: runtime.adminUrl,
      store: runtime.stores.kind,
      ...(settings.shadow === true ? { shadow: true } : {}),
      ...(settings.quota === true ? { quota: true } : {}),
      ...(settings.mergeDomains === true ? { mergeDomains: true } : {}),
      ...(settings.tls === undefined
        ? {}
        : { tls: settings.tls.clientCa === undefined ? 'server' : 'mutual' }),
      domains: [...config.keys()],
    },
    `rate-limit service (Envoy RLS v3) on ${address}`,
  );

  const stop = () =>
    runtime.stop({
      drain: () => {
        // Health watchers hear NOT_SERVING first, and their streams do not hold the stop.
        health.stop();
        certificates.close();
        return new Promise<void>((resolve) => {
          // Calls in flight finish; a client that holds its stream open is cut after a grace of 5 s.
          const force = setTimeout(() => server.forceShutdown(), 5000).unref();
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
      },
    });
  return { address, adminUrl: runtime.adminUrl, fleet: runtime.fleet, metrics, service, reload, stop };
}

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Fleet } from 'floodgate/admin';
import { type Logger, pino } from 'pino';
import { adminToken } from '../shared/dashboard.js';
import { drain } from '../shared/drain.js';
import { listen } from '../shared/listen.js';
import { redact } from '../shared/redact.js';
import { ServiceRuntime } from '../shared/runtime.js';
import type { WorkerLink } from '../shared/workers.js';
import { type ProxyConfig, shedderOf } from './config.js';
import { newDispatcher } from './forward.js';
import { type Active, activate, Gateway, jwtFailureLog, type Resources } from './gateway.js';
import {
  createProxyMetrics,
  type ProxyMetrics,
  registerShedMetrics,
  registerUpstreamMetrics,
  registerWorkerMetrics,
} from './metrics.js';
import { reloadedConfig } from './reload.js';
import { ruleStores } from './rules.js';
import { sweepEvery, Timeouts } from './timeouts.js';
import { proxyServer, upstreamCaOf } from './tls.js';
import { configWarnings } from './warnings.js';

export interface RunningProxy {
  readonly server: Server;
  readonly url: string;
  /** The admin listener's URL (`/metrics`, `/health`), unless disabled. */
  readonly adminUrl: string | undefined;
  readonly metrics: ProxyMetrics;
  /** With a Redis store: this process in the fleet sharing it (publishes every 5 s). */
  readonly fleet: Fleet | undefined;
  /** Re-reads the configuration file; false (and the old configuration kept) when it is invalid. */
  reload(): boolean;
  stop(): Promise<void>;
}

export interface ProxyOptions {
  /** The file the configuration came from: reloaded on `reload()` and, with `watch`, when it changes. */
  readonly file?: string;
  readonly watch?: boolean;
  readonly log?: Logger;
  readonly env?: NodeJS.ProcessEnv;
  /** The admin API's token (`--admin-token`); else `FLOODGATE_ADMIN_TOKEN`. */
  readonly adminToken?: string;
  /** The longest wait for requests in flight at a stop (`--grace`), over the configuration's `grace`. */
  readonly grace?: number;
  /** The clock upstream ejections are timed on (tests). Default: Date.now. */
  readonly now?: () => number;
  /** In a worker of several (`--workers`): its link to the primary, which owns the admin port. */
  readonly worker?: WorkerLink;
}

/** Starts `floodgate proxy`: the store, the gateway and its listeners, reloads; resolves once it listens. */
export async function startProxy(initial: ProxyConfig, options: ProxyOptions = {}): Promise<RunningProxy> {
  const { worker } = options;
  const log =
    options.log ??
    pino({
      base: worker === undefined ? null : { worker: worker.number },
      timestamp: pino.stdTimeFunctions.isoTime,
    });
  const metrics = createProxyMetrics();
  if (worker !== undefined) {
    worker.collectFrom(metrics.registry);
    registerWorkerMetrics(metrics.registry, worker.number, metrics.decided);
  }
  const runtime = await ServiceRuntime.open({
    log,
    registry: metrics.registry,
    store: {
      url: initial.store,
      leases: initial.leases,
      ...(initial.onStoreError === undefined ? {} : { onStoreError: initial.onStoreError }),
    },
  });
  const ca = upstreamCaOf(initial);
  // Made again when a reload changes the connect timeout, which undici applies per connection attempt.
  let resources: Resources = {
    // With memory, each rule keeps its own store (the runtime's is not used).
    storeFor: ruleStores(runtime.stores.redis),
    log,
    metrics,
    ca,
    dispatcher: newDispatcher(initial.maxSockets, initial.timeouts.connect, ca),
    timeouts: new Timeouts(),
    env: options.env ?? process.env,
    ...(options.now === undefined ? {} : { now: options.now }),
    keyFailures: jwtFailureLog(log),
  };
  const shedder = shedderOf(initial);
  if (shedder !== undefined) {
    resources = { ...resources, shedder };
    registerShedMetrics(metrics.registry, shedder);
  }
  let gateway: Gateway;
  try {
    gateway = new Gateway(activate(initial, resources), log, metrics);
  } catch (error) {
    void resources.dispatcher.destroy();
    runtime.abandon();
    throw error;
  }
  resources.timeouts.every(sweepEvery(initial.timeouts));
  registerUpstreamMetrics(metrics.registry, () => gateway.active.pool.states());

  let server: Server | undefined;
  let url: string;
  try {
    server = proxyServer(initial, gateway.handle, log);
    server.on('upgrade', (req, socket, head) => void gateway.handleUpgrade(req, socket, head));
    server.on('clientError', gateway.clientError);
    url = await listen(server, initial.listen.host, initial.listen.port, {
      port: '--port or "listen"',
      host: '--host or "listen"',
    });
    if (initial.tls !== undefined) url = url.replace(/^http:/, 'https:');
    runtime.joinFleet((server.address() as AddressInfo).port, () =>
      gateway.active.rules.flatMap((r) => r.limiters),
    );
    // The primary sums every worker's metrics: a scrape answered here must be theirs, not this worker's.
    if (worker !== undefined) runtime.adminRoutes.set('/metrics', worker.metricsRoute);
    await runtime.startAdmin(
      initial.admin !== false && {
        address: initial.admin,
        ...(worker === undefined ? {} : { handedOver: worker.serveAdmin }),
        health: () => ({
          rules: gateway.active.rules.length,
          upstreams: gateway.active.pool.states(),
          ...worker?.health(),
        }),
        names: { port: '--admin-port or "admin"', host: '"admin"' },
        more: runtime.dashboard({
          limiters: () => gateway.active.rules.flatMap((r) => r.limiters),
          ...(shedder === undefined ? {} : { shedder }),
          token: adminToken(options.adminToken, options.env ?? process.env),
        }),
      },
    );
  } catch (error) {
    server?.close();
    gateway.close();
    resources.timeouts.stop();
    void resources.dispatcher.destroy();
    runtime.abandon();
    throw error;
  }

  const reloadFile = (file: string) =>
    runtime.reloader({
      counter: metrics.reloads,
      source: { file },
      apply: () => {
        const current = gateway.active.config;
        let next: Active;
        let nextResources = resources;
        try {
          const config = reloadedConfig(file, current, log);
          if (config.timeouts.connect !== current.timeouts.connect)
            nextResources = {
              ...resources,
              dispatcher: newDispatcher(config.maxSockets, config.timeouts.connect, ca),
            };
          next = activate(config, nextResources);
        } catch (error) {
          if (nextResources !== resources) void nextResources.dispatcher.destroy();
          throw error;
        }
        gateway.swap(next);
        if (nextResources !== resources) {
          // Requests already on the old pools finish there.
          void resources.dispatcher.close();
          resources = nextResources;
        }
        resources.timeouts.every(sweepEvery(next.config.timeouts));
        return { rules: next.rules.map((r) => r.name) };
      },
    });
  const reload = options.file === undefined ? () => false : reloadFile(options.file);
  if (options.file !== undefined && options.watch !== false) runtime.watch(options.file, reload);

  for (const warning of configWarnings(initial)) log.warn(warning);
  log.info(
    {
      url,
      admin: runtime.adminUrl,
      upstream: initial.upstream.map(redact),
      store: runtime.stores.kind,
      rules: gateway.active.rules.map((r) => r.name),
    },
    `proxying ${url} to ${redact(initial.upstream.join(', '))}`,
  );

  const listening = server;
  const stop = () =>
    runtime.stop({
      drain: () => {
        gateway.close();
        gateway.flushLogs();
        resources.keyFailures.flush();
        const grace = options.grace ?? gateway.active.config.grace;
        log.info({ grace }, 'shutting down: finishing requests in flight');
        for (const socket of gateway.upgraded) socket.destroy();
        return drain(listening, grace, log);
      },
      release: async () => {
        resources.timeouts.stop();
        shedder?.close();
        await resources.dispatcher.destroy();
      },
    });
  return { server: listening, url, adminUrl: runtime.adminUrl, metrics, fleet: runtime.fleet, reload, stop };
}

import type { FSWatcher } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Store } from 'floodgate';
import { Fleet, type FleetClient } from 'floodgate/admin';
import type { Cluster, Redis } from 'ioredis';
import { type Logger, pino } from 'pino';
import { startAdmin } from '../shared/admin.js';
import { adminToken, dashboardRoute } from '../shared/dashboard.js';
import { drain } from '../shared/drain.js';
import { listen } from '../shared/listen.js';
import { redact } from '../shared/redact.js';
import { connectRedis, sharedStore } from '../shared/redis.js';
import { registerStoreMetrics } from '../shared/store-metrics.js';
import { watchConfig } from '../shared/watch.js';
import { type ProxyConfig, shedderOf } from './config.js';
import { newDispatcher } from './forward.js';
import { type Active, activate, Gateway, jwtFailureLog, type Resources } from './gateway.js';
import { createProxyMetrics, type ProxyMetrics, registerShedMetrics } from './metrics.js';
import { reloadedConfig } from './reload.js';
import { ruleStores } from './rules.js';
import { sweepEvery, Timeouts } from './timeouts.js';

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
}

/** Starts `floodgate proxy`: the store, the gateway and its listeners, reloads; resolves once it listens. */
export async function startProxy(initial: ProxyConfig, options: ProxyOptions = {}): Promise<RunningProxy> {
  const log = options.log ?? pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime });
  const metrics = createProxyMetrics();
  let redis: Redis | Cluster | undefined;
  let shared: Store | undefined;
  if (initial.store !== 'memory') {
    redis = await connectRedis(initial.store);
    const store = sharedStore(redis, log, metrics.storeErrors, {
      leases: initial.leases,
      ...(initial.onStoreError === undefined ? {} : { onStoreError: initial.onStoreError }),
    });
    registerStoreMetrics(metrics.registry, store.stats);
    shared = store;
  }
  // Made again when a reload changes the connect timeout, which undici applies per connection attempt.
  let resources: Resources = {
    storeFor: ruleStores(shared),
    log,
    metrics,
    dispatcher: newDispatcher(initial.maxSockets, initial.timeouts.connect),
    timeouts: new Timeouts(),
    env: options.env ?? process.env,
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
    redis?.disconnect();
    throw error;
  }
  resources.timeouts.every(sweepEvery(initial.timeouts));

  const server = createServer(gateway.handle);
  server.on('upgrade', (req, socket, head) => void gateway.handleUpgrade(req, socket, head));
  server.on('clientError', gateway.clientError);
  let admin: { server: Server; url: string } | undefined;
  let fleet: Fleet | undefined;
  let url: string;
  try {
    url = await listen(server, initial.listen.host, initial.listen.port, {
      port: '--port or "listen"',
      host: '--host or "listen"',
    });
    if (redis !== undefined)
      fleet = new Fleet({
        client: redis as unknown as FleetClient,
        id: `${hostname()}:${process.pid}:${(server.address() as AddressInfo).port}`,
        limiters: () => gateway.active.rules.map((r) => [r.name, r.guard.limiter] as const),
      }).start();
    if (initial.admin !== false) {
      const dashboard = dashboardRoute({
        ...(fleet === undefined ? {} : { fleet }),
        limiters: () => gateway.active.rules.map((r) => [r.name, r.guard.limiter] as const),
        ...(shedder === undefined ? {} : { shedder }),
        token: adminToken(options.adminToken, options.env ?? process.env),
        log,
      });
      admin = await startAdmin(
        initial.admin,
        metrics,
        () => ({ rules: gateway.active.rules.length }),
        undefined,
        dashboard,
      );
    }
  } catch (error) {
    server.close();
    resources.timeouts.stop();
    void resources.dispatcher.destroy();
    redis?.disconnect();
    throw error;
  }

  const reload = (): boolean => {
    if (options.file === undefined) return false;
    const current = gateway.active.config;
    let next: Active;
    let nextResources = resources;
    try {
      const config = reloadedConfig(options.file, current, log);
      if (config.timeouts.connect !== current.timeouts.connect)
        nextResources = {
          ...resources,
          dispatcher: newDispatcher(config.maxSockets, config.timeouts.connect),
        };
      next = activate(config, nextResources);
    } catch (error) {
      if (nextResources !== resources) void nextResources.dispatcher.destroy();
      metrics.reloads.inc({ result: 'rejected' });
      log.error(
        { file: options.file, reason: redact((error as Error).message) },
        'configuration rejected; still serving the previous one',
      );
      return false;
    }
    gateway.swap(next);
    if (nextResources !== resources) {
      // Requests already on the old pools finish there.
      void resources.dispatcher.close();
      resources = nextResources;
    }
    resources.timeouts.every(sweepEvery(next.config.timeouts));
    metrics.reloads.inc({ result: 'applied' });
    log.info({ file: options.file, rules: next.rules.map((r) => r.name) }, 'configuration reloaded');
    return true;
  };
  let watcher: FSWatcher | undefined;
  if (options.file !== undefined && options.watch !== false) watcher = watchConfig(options.file, reload, log);

  log.info(
    {
      url,
      admin: admin?.url,
      upstream: initial.upstream.map(redact),
      store: redis === undefined ? 'memory' : 'redis',
      rules: gateway.active.rules.map((r) => r.name),
    },
    `proxying ${url} to ${redact(initial.upstream.join(', '))}`,
  );

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      watcher?.close();
      fleet?.stop();
      gateway.flushLogs();
      resources.keyFailures.flush();
      const grace = gateway.active.config.grace;
      log.info({ grace }, 'shutting down: finishing requests in flight');
      for (const socket of gateway.upgraded) socket.destroy();
      await Promise.all([
        drain(server, grace, log),
        new Promise<void>((resolve) =>
          admin === undefined ? resolve() : admin.server.close(() => resolve()),
        ),
      ]);
      resources.timeouts.stop();
      shedder?.close();
      await resources.dispatcher.destroy();
      if (redis !== undefined) await redis.quit().catch(() => redis?.disconnect());
      log.info('stopped');
    })();
    return stopping;
  };
  return { server, url, adminUrl: admin?.url, metrics, fleet, reload, stop };
}

import type { FSWatcher } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import type { Limiter } from 'floodgate';
import { Fleet, type FleetClient } from 'floodgate/admin';
import type { Logger } from 'pino';
import type { Counter, Registry } from 'prom-client';
import { type AdminHandler, adminServer, healthRoute, metricsRoute, startAdmin } from './admin.js';
import { type AdminRoute, type DashboardOptions, dashboardRoute } from './dashboard.js';
import { redact } from './redact.js';
import { openStores, type StoreSettings, type Stores } from './stores.js';
import { watchConfig } from './watch.js';

/** What a command tells the runtime about itself. */
export interface RuntimeSettings {
  readonly log: Logger;
  /** The command's metrics: the store's counts and failures are registered there too. */
  readonly registry: Registry;
  readonly store: StoreSettings;
}

/** The admin listener a command asks for. */
export interface AdminSettings {
  readonly address: { readonly host: string; readonly port: number };
  /** What `/health` adds to `{ "status": "ok" }`. */
  readonly health: () => object;
  /** How the command's flags and settings name the admin port and host, for a port in use. */
  readonly names: { readonly port: string; readonly host: string };
  /** What the listener answers beyond its route table (the admin API and the dashboard). */
  readonly more?: (req: IncomingMessage, res: ServerResponse, next: () => void) => void;
  /**
   * In a worker of several: the listener is the primary's, which hands connections over; this is given the
   * server to feed them to, and returns the listener's URL. Nothing listens here then.
   */
  readonly handedOver?: (server: Server) => string;
}

/** How a command reloads its configuration, for `reloader`. */
export interface ReloadSettings {
  /** Counts reloads by `result` (applied, rejected). */
  readonly counter: Counter<'result'>;
  /** Where the configuration comes from, as the log names it (`{ file }`, `{ path }`). */
  readonly source: Record<string, string>;
  /** Reads and applies the configuration, or throws (the previous one kept); returns what to log of it. */
  apply(): Record<string, unknown>;
}

/** How a command stops, in the runtime's order. */
export interface StopSteps {
  /** Stop accepting and let what is in flight finish (bounded by the command's grace). */
  drain(): Promise<void>;
  /** Ends what the command made over the store (pools, timers, a database), before the store closes. */
  release?(): Promise<void> | void;
}

/**
 * One service runtime for every command (`serve`, `proxy`, `rls`): it owns the rate-limit store made from
 * its URL (memory or Redis, its failures counted in `floodgate_store_errors_total`), the process's place in
 * the fleet sharing that Redis, the admin listener (`/metrics`, `/health`, the dashboard, and any route
 * added to `adminRoutes` before it starts), the configuration's watch and reload, and the ordered stop:
 * stop watching and publishing, stop accepting and drain (with the admin listener), the command's own
 * resources, then the stores (awaited: what they give back is written), then the Redis client quits.
 */
export class ServiceRuntime {
  readonly log: Logger;
  readonly registry: Registry;
  readonly stores: Stores;
  /** The admin listener's routes; add to it before `startAdmin`. */
  readonly adminRoutes: Map<string, AdminHandler>;
  #admin: { server: Server; url: string } | undefined;
  #fleet: Fleet | undefined;
  #watcher: FSWatcher | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(settings: RuntimeSettings, stores: Stores) {
    this.log = settings.log;
    this.registry = settings.registry;
    this.stores = stores;
    this.adminRoutes = new Map([['/metrics', metricsRoute(settings.registry)]]);
  }

  /** Connects the store (within 5 s for Redis, or an environment error that hides any password). */
  static async open(settings: RuntimeSettings): Promise<ServiceRuntime> {
    return new ServiceRuntime(settings, await openStores(settings.store, settings.log, settings.registry));
  }

  /** The admin listener's URL, once started. */
  get adminUrl(): string | undefined {
    return this.#admin?.url;
  }

  /** This process in the fleet, once it joined one (with Redis only). */
  get fleet(): Fleet | undefined {
    return this.#fleet;
  }

  /**
   * With a Redis store, this process joins the fleet of every process sharing it: its limiters' traffic is
   * published every 5 s (until the stop) as `host:pid:port`, `port` being the one it serves on, and any
   * member's dashboard merges the live ones (`/api/fleet`). With the memory store there is no fleet.
   */
  joinFleet(port: number, limiters: () => Iterable<readonly [string, Limiter]>): Fleet | undefined {
    const client = this.stores.client;
    if (client === undefined) return undefined;
    this.#fleet?.stop();
    this.#fleet = new Fleet({
      client: client as unknown as FleetClient,
      id: `${hostname()}:${process.pid}:${port}`,
      limiters,
    }).start();
    return this.#fleet;
  }

  /** The admin API and the dashboard for the admin listener's `more`: over this process's fleet, if any. */
  dashboard(options: Omit<DashboardOptions, 'fleet' | 'log'>): AdminRoute {
    return dashboardRoute({
      ...options,
      ...(this.#fleet === undefined ? {} : { fleet: this.#fleet }),
      log: this.log,
    });
  }

  /** Starts the admin listener (unless `false`); resolves with its URL. */
  async startAdmin(settings: AdminSettings | false): Promise<string | undefined> {
    if (settings === false) return undefined;
    this.adminRoutes.set('/health', healthRoute(settings.health));
    if (settings.handedOver !== undefined) {
      const server = adminServer(this.adminRoutes, settings.more);
      this.#admin = { server, url: settings.handedOver(server) };
    } else this.#admin = await startAdmin(settings.address, this.adminRoutes, settings.names, settings.more);
    return this.#admin.url;
  }

  /**
   * The command's reload: applied and counted, or rejected (the previous configuration kept), counted and
   * logged with its reason (passwords in URLs hidden). Returns whether it was applied.
   */
  reloader({ counter, source, apply }: ReloadSettings): () => boolean {
    return () => {
      let applied: Record<string, unknown>;
      try {
        applied = apply();
      } catch (error) {
        counter.inc({ result: 'rejected' });
        this.log.error(
          { ...source, reason: redact((error as Error).message) },
          'configuration rejected; still serving the previous one',
        );
        return false;
      }
      counter.inc({ result: 'applied' });
      this.log.info({ ...source, ...applied }, 'configuration reloaded');
      return true;
    };
  }

  /** Reloads when `file` (or a file in the folder `file`) changes; the watch ends at the stop. */
  watch(file: string, reload: () => void): void {
    this.#watcher = watchConfig(file, reload, this.log);
  }

  /** For a start that failed: closes the admin listener and drops the store's connection at once. */
  abandon(): void {
    this.#watcher?.close();
    this.#fleet?.stop();
    this.#admin?.server.close();
    this.stores.abandon();
  }

  /** The ordered stop; the same promise for every call. */
  stop(steps: StopSteps): Promise<void> {
    this.#stopping ??= (async () => {
      this.#watcher?.close();
      this.#fleet?.stop();
      const admin = this.#admin?.server;
      await Promise.all([
        steps.drain(),
        new Promise<void>((resolve) => {
          if (admin === undefined) return resolve();
          admin.close(() => resolve());
          admin.closeIdleConnections();
        }),
      ]);
      await steps.release?.();
      await this.stores.close();
      this.log.info('stopped');
    })();
    return this.#stopping;
  }
}

import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { AdminHandler } from './admin.js';
import { CliError, ENVIRONMENT, USAGE } from './errors.js';

/** A registry's metrics as JSON, as a worker sends them. */
type Metrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

import { listen } from './listen.js';

// Several processes serving one port (node:cluster), as nginx's worker processes: the primary handles no
// request. It forks the workers, starts another when one dies, forwards SIGHUP, stops them at the end, and
// owns the admin port, whose connections it hands to a worker (the socket itself, so the client's address
// is still the one the admin API checks). `/metrics` is every worker's registry summed by the primary, and
// `/health` says how many workers are up.

/** What the primary and its workers say to each other over the cluster's channel. */
type Message =
  | { floodgate: 'ready'; url: string }
  | { floodgate: 'workers'; state: WorkersState }
  | { floodgate: 'collect'; id: number }
  | { floodgate: 'collected'; id: number; metrics: Metrics }
  | { floodgate: 'aggregate'; id: number }
  | { floodgate: 'aggregated'; id: number; text: string }
  | { floodgate: 'admin' };

/** What `/health` says of the workers. */
export interface WorkersState {
  /** Workers asked for (`--workers`). */
  readonly wanted: number;
  /** Workers serving now. */
  readonly ready: number;
  /** Workers started again after one died. */
  readonly restarts: number;
}

const isOurs = (message: unknown): message is Message =>
  typeof message === 'object' && message !== null && 'floodgate' in message;

/** How long the primary waits for a worker's metrics before leaving it out of a scrape. */
const COLLECT_WITHIN = 2000;
/** A worker that lived this long before dying is started again at once; one dying sooner backs off. */
const HEALTHY_LIFE = 10_000;
const MAX_BACKOFF = 15_000;

/** The wait before starting a worker again after `failures` quick deaths in a row: 0, 0.25 s, 0.5 s... 15 s. */
export function restartDelay(failures: number): number {
  return failures <= 1 ? 0 : Math.min(250 * 2 ** (failures - 2), MAX_BACKOFF);
}

export interface PrimarySettings {
  readonly workers: number;
  readonly log: Logger;
  /** The admin listener's address, unless there is none. */
  readonly admin: { readonly host: string; readonly port: number } | false;
  /** How the command's flags and settings name the admin port and host, for a port in use. */
  readonly adminNames: { readonly port: string; readonly host: string };
}

export interface Primary {
  /**
   * The admin listener, then one worker (so a start that cannot work, a port in use or Redis unreachable,
   * fails once and says why once), then the others; resolves once all serve, or the stop began. Rejects
   * with the first worker's exit code when it cannot start.
   */
  start(): Promise<void>;
  /** Every serving worker reloads its configuration. */
  reload(): void;
  /**
   * Stops every worker (each drains as a single process does), at any time, a start under way included;
   * resolves with 0 when all stopped cleanly.
   */
  stop(): Promise<number>;
}

interface Slot {
  readonly index: number;
  worker: Worker | undefined;
  ready: boolean;
  startedAt: number;
  /** Deaths in a row, each before HEALTHY_LIFE. */
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

/** The primary of `settings.workers` workers; nothing runs before `start`. */
export function createPrimary(settings: PrimarySettings): Primary {
  const { log, workers } = settings;
  const registry = new Registry();
  const restarts = new Counter({
    name: 'floodgate_proxy_worker_restarts_total',
    help: 'Workers started again after one died',
    registers: [registry],
  });
  new Gauge({
    name: 'floodgate_proxy_workers',
    help: 'Workers serving requests',
    registers: [registry],
    collect() {
      this.set(slots.filter((s) => s.ready).length);
    },
  });
  const slots: Slot[] = Array.from({ length: workers }, (_, index) => ({
    index,
    worker: undefined,
    ready: false,
    startedAt: 0,
    failures: 0,
    timer: undefined,
  }));
  let restartCount = 0;
  let stopping = false;
  let url: string | undefined;
  let admin: { server: NetServer; url: string } | undefined;

  const state = (): WorkersState => ({
    wanted: workers,
    ready: slots.filter((s) => s.ready).length,
    restarts: restartCount,
  });
  // A connection that cannot reach its worker (it just died) is closed, not left open here.
  const send = (worker: Worker, message: Message, handle?: Socket) => {
    if (!worker.isConnected()) return void handle?.destroy();
    worker.send(message, handle as never, (error: Error | null) => {
      if (error !== null) handle?.destroy();
    });
  };
  const tellAll = () => {
    for (const slot of slots)
      if (slot.ready && slot.worker) send(slot.worker, { floodgate: 'workers', state: state() });
  };

  // Scrapes: every serving worker's registry as JSON, summed (or as each metric's `aggregator` says).
  let nextId = 0;
  const collecting = new Map<number, (metrics: Metrics) => void>();
  const aggregate = async (): Promise<string> => {
    const asked = slots.filter((s) => s.ready && s.worker !== undefined).map((s) => s.worker!);
    const parts = await Promise.all(
      asked.map(
        (worker) =>
          new Promise<Metrics>((resolve) => {
            const id = nextId++;
            const late = setTimeout(() => {
              collecting.delete(id);
              resolve([]);
            }, COLLECT_WITHIN);
            collecting.set(id, (metrics) => {
              clearTimeout(late);
              collecting.delete(id);
              resolve(metrics);
            });
            send(worker, { floodgate: 'collect', id });
          }),
      ),
    );
    parts.push(await registry.getMetricsAsJSON());
    return AggregatorRegistry.aggregate(parts).metrics();
  };

  let allReady!: () => void;
  const everyReady = new Promise<void>((resolve) => (allReady = resolve));
  let started!: (value: string) => void;
  let failed!: (code: number) => void;
  const firstReady = new Promise<string>((resolve, reject) => {
    started = resolve;
    failed = (code) =>
      reject(
        new CliError(code === USAGE ? USAGE : ENVIRONMENT, 'a worker could not start (its reason is above)'),
      );
  });

  const fork = (slot: Slot) => {
    slot.timer = undefined;
    if (stopping) return;
    slot.ready = false;
    slot.startedAt = Date.now();
    const worker = cluster.fork({
      FLOODGATE_WORKER: String(slot.index + 1),
      FLOODGATE_ADMIN_URL: admin?.url ?? '',
    });
    slot.worker = worker;
    worker.on('message', (message: unknown) => {
      if (!isOurs(message)) return;
      if (message.floodgate === 'ready') {
        slot.ready = true;
        url ??= message.url;
        started(message.url);
        log.info({ worker: slot.index + 1, pid: worker.process.pid }, 'worker serving');
        tellAll();
        if (slots.every((s) => s.ready)) allReady();
      } else if (message.floodgate === 'collected') collecting.get(message.id)?.(message.metrics);
      else if (message.floodgate === 'aggregate')
        void aggregate().then(
          (text) => send(worker, { floodgate: 'aggregated', id: message.id, text }),
          () => send(worker, { floodgate: 'aggregated', id: message.id, text: '' }),
        );
    });
    worker.once('exit', (code, signal) => {
      const wasReady = slot.ready;
      slot.ready = false;
      slot.worker = undefined;
      tellAll();
      if (stopping) return;
      if (url === undefined) return failed(code ?? 1);
      slot.failures = Date.now() - slot.startedAt < HEALTHY_LIFE ? slot.failures + 1 : 1;
      const delay = restartDelay(slot.failures);
      log.error(
        { worker: slot.index + 1, pid: worker.process.pid, code, signal, wasReady, restartIn: delay },
        'worker exited; starting another',
      );
      restarts.inc();
      restartCount++;
      slot.timer = setTimeout(() => fork(slot), delay);
    });
  };

  const start = async () => {
    if (settings.admin !== false) {
      // The connection is handed over before anything is read from it: the worker's HTTP server parses it.
      const server = createServer({ pauseOnConnect: true }, (socket) => {
        const slot = slots.find((s) => s.ready && s.worker?.isConnected());
        if (slot === undefined) return unavailable(socket, state());
        send(slot.worker!, { floodgate: 'admin' }, socket);
      });
      const adminUrl = await listen(
        server as unknown as Server,
        settings.admin.host,
        settings.admin.port,
        settings.adminNames,
      );
      admin = { server, url: adminUrl };
      if (stopping) return void server.close();
    }
    cluster.setupPrimary({ silent: false });
    fork(slots[0]!);
    let first: string;
    try {
      first = await firstReady;
    } catch (error) {
      admin?.server.close();
      throw error;
    }
    for (const slot of slots.slice(1)) fork(slot);
    await everyReady;
    if (stopping) return;
    log.info({ url: first, admin: admin?.url, workers }, `proxying ${first} with ${workers} workers`);
  };

  let stopped: Promise<number> | undefined;
  return {
    start,
    reload() {
      // Only to workers serving: one still starting has no SIGHUP handler yet (and reads the file anyway).
      for (const slot of slots) if (slot.ready) slot.worker?.process.kill('SIGHUP');
    },
    stop() {
      stopped ??= (async () => {
        stopping = true;
        // A start under way goes no further.
        started('');
        allReady();
        admin?.server.close();
        log.info('stopping the workers');
        const codes = await Promise.all(
          slots.map((slot) => {
            clearTimeout(slot.timer);
            const worker = slot.worker;
            if (worker === undefined) return 0;
            return new Promise<number>((resolve) => {
              // One still starting has no handler for SIGTERM yet, and nothing in flight: ended by it, it is clean.
              worker.once('exit', (code, signal) => resolve(code ?? (signal === 'SIGTERM' ? 0 : 1)));
              worker.process.kill('SIGTERM');
            });
          }),
        );
        log.info('stopped');
        return codes.every((c) => c === 0) ? 0 : 1;
      })();
      return stopped;
    },
  };
}

/** The admin listener's answer while no worker serves: 503, and what `/health` would say. */
function unavailable(socket: Socket, state: WorkersState): void {
  const body = JSON.stringify({ status: 'unavailable', workers: state });
  socket.on('error', () => {});
  // Read what was sent, so closing does not reset the connection before the answer is read.
  socket.resume();
  socket.end(
    `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** A worker's side of the cluster: its number, the admin connections it is handed, and the shared scrape. */
export class WorkerLink {
  /** 1, 2, ...: the worker's number, as its log lines say. */
  readonly number: number;
  readonly adminUrl: string;
  #state: WorkersState;
  #admin: Server | undefined;
  #asked = new Map<number, (text: string) => void>();
  #nextId = 0;
  #registry: Registry | undefined;

  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.number = Number(env.FLOODGATE_WORKER);
    this.adminUrl = env.FLOODGATE_ADMIN_URL ?? '';
    this.#state = { wanted: 0, ready: 0, restarts: 0 };
    process.on('message', (message: unknown, handle: unknown) => {
      if (!isOurs(message)) return;
      if (message.floodgate === 'workers') this.#state = message.state;
      else if (message.floodgate === 'collect')
        void (this.#registry?.getMetricsAsJSON() ?? Promise.resolve([])).then(
          (metrics) => process.send?.({ floodgate: 'collected', id: message.id, metrics } satisfies Message),
          () => process.send?.({ floodgate: 'collected', id: message.id, metrics: [] } satisfies Message),
        );
      else if (message.floodgate === 'aggregated') this.#asked.get(message.id)?.(message.text);
      else if (message.floodgate === 'admin') {
        const socket = handle as Socket;
        if (this.#admin === undefined) return void socket.destroy();
        this.#admin.emit('connection', socket);
        socket.resume();
      }
    });
  }

  /** The registry the primary's scrapes read from this worker. */
  collectFrom(registry: Registry): void {
    this.#registry = registry;
  }

  /** Tells the primary this worker serves `url`; call once its signals are handled. */
  ready(url: string): void {
    process.send?.({ floodgate: 'ready', url } satisfies Message);
  }

  /** For the runtime: the admin server the primary's connections go to; returns the listener's URL. */
  readonly serveAdmin = (server: Server): string => {
    this.#admin = server;
    return this.adminUrl;
  };

  /** What `/health` says: "degraded" while some worker is missing (the others still serve). */
  health(): object {
    const state = this.#state;
    return { status: state.ready < state.wanted ? 'degraded' : 'ok', workers: state };
  }

  /** `GET /metrics`: every worker's metrics, summed by the primary. */
  readonly metricsRoute: AdminHandler = (_req, res) => {
    const id = this.#nextId++;
    const late = setTimeout(() => answer(undefined), COLLECT_WITHIN * 2);
    const answer = (text: string | undefined) => {
      clearTimeout(late);
      this.#asked.delete(id);
      if (text === undefined || text === '') {
        res.writeHead(503);
        res.end();
        return;
      }
      res.writeHead(200, { 'Content-Type': Registry.PROMETHEUS_CONTENT_TYPE });
      res.end(text);
    };
    this.#asked.set(id, answer);
    process.send?.({ floodgate: 'aggregate', id } satisfies Message);
  };
}

/** Whether this process is a worker of several (forked by `startPrimary`). */
export const isWorker = (): boolean => cluster.isWorker && process.env.FLOODGATE_WORKER !== undefined;

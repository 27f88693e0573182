import { type FSWatcher, watch } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { basename, dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import { MemoryStore, type Store } from 'floodgate';
import { andThen, attempt, type MaybePromise, type RequestView, type Verdict } from 'floodgate/http';
import type { Cluster, Redis } from 'ioredis';
import { type Logger, pino } from 'pino';
import { drain } from '../shared/drain.js';
import { listen } from '../shared/listen.js';
import { redact } from '../shared/redact.js';
import { connectRedis, sharedStore } from '../shared/redis.js';
import { loadProxyConfig, type ProxyConfig } from './config.js';
import {
  type ForwardOptions,
  forward,
  forwardUpgrade,
  newDispatcher,
  problem,
  rawResponse,
  type Upstream,
  type UpstreamError,
  upstreamOf,
} from './forward.js';
import { jwtVerifier } from './jwt.js';
import { createProxyMetrics, type ProxyMetrics } from './metrics.js';
import { compileRules, matchPath, type Rule } from './rules.js';
import { sweepEvery, Timeouts } from './timeouts.js';

/** Everything a configuration decides per request; swapped whole on reload, so a request sees one version. */
interface Active {
  readonly config: ProxyConfig;
  readonly rules: readonly Rule[];
  readonly upstreams: readonly Upstream[];
  readonly forward: ForwardOptions;
}

export interface RunningProxy {
  readonly server: Server;
  readonly url: string;
  /** The admin listener's URL (`/metrics`, `/health`), unless disabled. */
  readonly adminUrl: string | undefined;
  readonly metrics: ProxyMetrics;
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
}

/** Settings that belong to resources made once at start; a reload that changes them is applied without them. */
const RESTART_ONLY = ['listen', 'admin', 'store', 'maxSockets'] as const;

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};
const DECISIONS: Record<number, string> = {
  400: 'rejected',
  403: 'denied',
  429: 'limited',
  503: 'unavailable',
};

function hostOf(header: string | undefined): string {
  const host = (header ?? '').toLowerCase();
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

function viewOf(req: IncomingMessage, path: string): RequestView {
  return {
    method: req.method ?? 'GET',
    path,
    header(name) {
      const value = req.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    },
    peer: req.socket.remoteAddress,
  };
}

type Refusal = Extract<Verdict, { kind: 'respond' }>;

/** A decided request: its rule, if one matched, and the verdict to forward with (undefined: as is). */
interface Outcome {
  readonly rule: Rule | undefined;
  readonly verdict: Verdict | undefined;
}

const UNMATCHED: Outcome = { rule: undefined, verdict: undefined };

function refuseResponse(res: ServerResponse, verdict: Refusal): void {
  res.writeHead(verdict.status, verdict.headers.flat());
  res.end(verdict.body);
}

function refuseUpgrade(socket: Duplex, verdict: Refusal): void {
  socket.end(
    rawResponse(
      verdict.status,
      REASONS[verdict.status] ?? 'Refused',
      verdict.headers.filter(([n]) => n.toLowerCase() !== 'content-length'),
      verdict.body,
    ),
  );
}

interface Target {
  /** The path and query sent upstream. */
  readonly forwardPath: string;
  /** The path rules are matched on. */
  readonly matchPath: string;
}

/** Parses the request target; undefined when it is not a path (a 400). */
function targetOf(req: IncomingMessage): Target | undefined {
  const raw = req.url ?? '';
  if (!raw.startsWith('/')) return undefined;
  // The common case, nothing to resolve or decode: no URL parser on the hot path.
  if (!/[.%\\]|\/\/|#/.test(raw)) {
    const query = raw.indexOf('?');
    return { forwardPath: raw, matchPath: query === -1 ? raw : raw.slice(0, query) };
  }
  try {
    // Concatenated, not resolved against a base: `//x` is a path here, not a host.
    const url = new URL(`http://proxy.invalid${raw}`);
    // Forwarded with dot segments resolved, so the upstream serves exactly the path the rules were matched on.
    return { forwardPath: url.pathname + url.search, matchPath: matchPath(url.pathname) };
  } catch {
    return undefined;
  }
}

function activate(
  config: ProxyConfig,
  store: Store,
  log: Logger,
  dispatcher: ForwardOptions['dispatcher'],
  timeouts: Timeouts,
  env: NodeJS.ProcessEnv,
): Active {
  const jwt = config.jwt === undefined ? undefined : jwtVerifier(config.jwt, env);
  const rules = compileRules(config, store, jwt, {
    onError: (error, rule) => log.warn({ rule, err: (error as Error).message }, 'rate-limit store failed'),
  });
  return {
    config,
    rules,
    upstreams: config.upstream.map(upstreamOf),
    forward: {
      dispatcher,
      preserveHost: config.preserveHost,
      forwarded: config.forwarded,
      limits: config.timeouts,
      timeouts,
    },
  };
}

/** `make(key)`, computed once per key. */
function memo<T>(make: (key: string) => T): (key: string) => T {
  const made = new Map<string, T>();
  return (key) => {
    let value = made.get(key);
    if (value === undefined) {
      value = make(key);
      made.set(key, value);
    }
    return value;
  };
}

/** How often refusals are summed up in the log. */
const REFUSAL_LOG_EVERY = 10_000;

/**
 * Refusals in the log, real or shadow (`message` says which): the first of each rule at once, then one
 * line per rule every 10 s with the count and the last one's details. A line per refused request would let
 * a flood fill the disk and slow the proxy down exactly when it is needed; the exact counts are in the
 * metrics.
 */
function refusalLog(log: Logger, message: string) {
  const pending = new Map<string, { count: number; last: Record<string, unknown> }>();
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    for (const [rule, { count, last }] of pending) {
      if (count > 0) log.info({ ...last, rule, refused: count, seconds: REFUSAL_LOG_EVERY / 1000 }, message);
    }
    pending.clear();
  };
  return {
    note(rule: string, fields: Record<string, unknown>) {
      const entry = pending.get(rule);
      if (entry === undefined) {
        log.info({ ...fields, refused: 1 }, message);
        pending.set(rule, { count: 0, last: fields });
        timer ??= setTimeout(flush, REFUSAL_LOG_EVERY).unref();
        return;
      }
      entry.count++;
      entry.last = fields;
    },
    flush,
  };
}

/** Starts `floodgate proxy`; resolves once it listens. */
export async function startProxy(initial: ProxyConfig, options: ProxyOptions = {}): Promise<RunningProxy> {
  const log = options.log ?? pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime });
  const env = options.env ?? process.env;
  const metrics = createProxyMetrics();
  let redis: Redis | Cluster | undefined;
  let store: Store = new MemoryStore();
  if (initial.store !== 'memory') {
    redis = await connectRedis(initial.store);
    store = sharedStore(redis, log, metrics.storeErrors);
  }
  // Made again when a reload changes the connect timeout, which undici applies per connection attempt.
  let dispatcher = newDispatcher(initial.maxSockets, initial.timeouts.connect);
  const timeouts = new Timeouts();
  let active: Active;
  try {
    active = activate(initial, store, log, dispatcher, timeouts, env);
  } catch (error) {
    void dispatcher.destroy();
    redis?.disconnect();
    throw error;
  }
  timeouts.every(sweepEvery(initial.timeouts));
  let turn = 0;
  const onUpstreamError = (error: UpstreamError) => {
    metrics.upstreamErrors.inc({ kind: error.kind });
    log.warn({ kind: error.kind, err: error.message }, 'upstream failed');
  };

  const count = metrics.countRequest;
  const timing = memo((rule) => metrics.upstreamDuration.labels(rule));
  const refusals = refusalLog(log, 'refused');
  const shadowRefusals = refusalLog(log, 'would have refused (shadow mode)');

  /**
   * What to forward with: the matched rule (if any) and its verdict (undefined to forward as is). Undefined
   * when the request was refused, `refuse` having answered it. A promise only when the rule's guard needs
   * one (a remote store, an async hook): the memory store decides without leaving this call.
   */
  function decide<Sink>(
    req: IncomingMessage,
    sink: Sink,
    state: Active,
    target: Target,
    refuse: (sink: Sink, verdict: Refusal) => void,
  ): MaybePromise<Outcome | undefined> {
    const method = req.method ?? 'GET';
    const rule = state.rules.find((r) => r.matches(method, hostOf(req.headers.host), target.matchPath));
    if (rule === undefined) {
      count('', 'unmatched');
      return UNMATCHED;
    }
    return attempt(
      () => rule.guard.decide(req, viewOf(req, target.matchPath)),
      (verdict) => conclude(req, sink, rule, target, verdict, refuse),
      (error) => checkFailed(rule, error),
    );
  }

  function checkFailed(rule: Rule, error: unknown): Outcome {
    log.error(
      { rule: rule.name, err: (error as Error).message },
      'rate-limit check failed; letting the request through',
    );
    return { rule, verdict: undefined };
  }

  function conclude<Sink>(
    req: IncomingMessage,
    sink: Sink,
    rule: Rule,
    target: Target,
    verdict: Verdict,
    refuse: (sink: Sink, verdict: Refusal) => void,
  ): Outcome | undefined {
    if (verdict.kind === 'pass') {
      count(rule.name, 'allowed');
      return {
        rule,
        verdict: rule.shadow
          ? { kind: 'pass', headers: [], ...(verdict.settle ? { settle: verdict.settle } : {}) }
          : verdict,
      };
    }
    const decision = DECISIONS[verdict.status] ?? 'refused';
    const fields = {
      rule: rule.name,
      decision,
      status: verdict.status,
      method: req.method,
      path: target.matchPath,
      peer: req.socket.remoteAddress,
    };
    if (rule.shadow) {
      count(rule.name, `shadow_${decision}`);
      shadowRefusals.note(rule.name, { ...fields, shadow: true });
      return { rule, verdict: undefined };
    }
    count(rule.name, decision);
    refusals.note(rule.name, fields);
    refuse(sink, verdict);
    return undefined;
  }

  const pick = (state: Active) => state.upstreams[turn++ % state.upstreams.length]!;

  // Plain functions and callbacks, no async function: the memory store's path runs without a promise.
  function handle(req: IncomingMessage, res: ServerResponse): void {
    const state = active;
    const target = targetOf(req);
    if (target === undefined) {
      problem(res, 400, 'Bad Request', 'The request target is not a path.');
      return;
    }
    void andThen(decide(req, res, state, target, refuseResponse), (outcome) =>
      proceed(req, res, state, target, outcome),
    );
  }

  function proceed(
    req: IncomingMessage,
    res: ServerResponse,
    state: Active,
    target: Target,
    outcome: Outcome | undefined,
  ): void {
    if (outcome === undefined) return;
    const { rule, verdict } = outcome;
    const started = performance.now();
    forward(
      req,
      res,
      pick(state),
      target.forwardPath,
      verdict?.kind === 'pass' ? verdict.headers : [],
      state.forward,
      onUpstreamError,
      (result) => {
        if (verdict?.kind === 'pass') verdict.settle?.(result.status);
        timing(rule?.name ?? '').observe((performance.now() - started) / 1000);
      },
    );
  }

  async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const state = active;
    socket.on('error', () => {});
    const target = targetOf(req);
    if (target === undefined) {
      socket.end(rawResponse(400, 'Bad Request', [], 'The request target is not a path.'));
      return;
    }
    const decided = await decide(req, socket, state, target, refuseUpgrade);
    if (decided === undefined) return;
    const { verdict } = decided;
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    metrics.websockets.inc();
    const status = await forwardUpgrade(
      req,
      socket,
      head,
      pick(state),
      target.forwardPath,
      verdict?.kind === 'pass' ? verdict.headers : [],
      state.forward,
      onUpstreamError,
    );
    metrics.websockets.dec();
    if (verdict?.kind === 'pass') verdict.settle?.(status === 101 ? 200 : status);
  }

  /** Upgraded connections: the server no longer tracks them, and a stop must end them. */
  const upgraded = new Set<Duplex>();
  const server = createServer(handle);
  server.on('upgrade', (req, socket, head) => void handleUpgrade(req, socket, head));
  server.on('clientError', (_error, socket) => {
    // A malformed request pipelined behind one still being answered: a 400 written now would land inside
    // that response and break its framing. Node's own handler closes the connection then; so do we, once
    // the response in progress is complete. (`_httpMessage` is the response that holds the socket: the
    // same field Node's handler reads, so no request pays for bookkeeping of its own.)
    const current = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (current != null && !current.writableFinished) {
      current.once('close', () => socket.destroy());
      return;
    }
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });

  let admin: Server | undefined;
  let url: string;
  let adminUrl: string | undefined;
  try {
    url = await listen(server, initial.listen.host, initial.listen.port, {
      port: '--port or "listen"',
      host: '--host or "listen"',
    });
    if (initial.admin !== false) {
      admin = createServer((req, res) => {
        if (req.url === '/metrics') {
          metrics.registry.metrics().then(
            (text) => {
              res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
              res.end(text);
            },
            () => {
              res.writeHead(500);
              res.end();
            },
          );
          return;
        }
        if (req.url === '/health') {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ status: 'ok', rules: active.rules.length }));
          return;
        }
        res.writeHead(404);
        res.end();
      });
      adminUrl = await listen(admin, initial.admin.host, initial.admin.port, {
        port: '--admin-port or "admin"',
        host: '"admin"',
      });
    }
  } catch (error) {
    server.close();
    timeouts.stop();
    void dispatcher.destroy();
    admin?.close();
    redis?.disconnect();
    throw error;
  }

  const reload = (): boolean => {
    if (options.file === undefined) return false;
    let next: Active;
    let nextDispatcher = dispatcher;
    try {
      const loaded = loadProxyConfig(options.file);
      const kept = { ...loaded };
      for (const field of RESTART_ONLY) {
        if (JSON.stringify(loaded[field]) !== JSON.stringify(active.config[field])) {
          log.warn({ field }, `"${field}" changed: it takes effect at the next restart`);
          (kept as Record<string, unknown>)[field] = active.config[field];
        }
      }
      if (kept.timeouts.connect !== active.config.timeouts.connect)
        nextDispatcher = newDispatcher(kept.maxSockets, kept.timeouts.connect);
      next = activate(kept, store, log, nextDispatcher, timeouts, env);
    } catch (error) {
      if (nextDispatcher !== dispatcher) void nextDispatcher.destroy();
      metrics.reloads.inc({ result: 'rejected' });
      log.error(
        { file: options.file, reason: redact((error as Error).message) },
        'configuration rejected; still serving the previous one',
      );
      return false;
    }
    active = next;
    if (nextDispatcher !== dispatcher) {
      // Requests already on the old pools finish there.
      void dispatcher.close();
      dispatcher = nextDispatcher;
    }
    timeouts.every(sweepEvery(next.config.timeouts));
    metrics.reloads.inc({ result: 'applied' });
    log.info({ file: options.file, rules: next.rules.map((r) => r.name) }, 'configuration reloaded');
    return true;
  };

  let watcher: FSWatcher | undefined;
  if (options.file !== undefined && options.watch !== false) {
    // The directory, not the file: editors and config managers replace the file, which ends a watch on it.
    const name = basename(options.file);
    let timer: NodeJS.Timeout | undefined;
    watcher = watch(dirname(options.file), (_event, changed) => {
      if (changed !== null && changed !== name) return;
      clearTimeout(timer);
      timer = setTimeout(reload, 100);
    });
    watcher.on('error', (error) => log.warn({ err: error.message }, 'cannot watch the configuration file'));
  }

  log.info(
    {
      url,
      admin: adminUrl,
      upstream: initial.upstream.map(redact),
      store: redis === undefined ? 'memory' : 'redis',
      rules: active.rules.map((r) => r.name),
    },
    `proxying ${url} to ${redact(initial.upstream.join(', '))}`,
  );

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      watcher?.close();
      refusals.flush();
      shadowRefusals.flush();
      log.info({ grace: active.config.grace }, 'shutting down: finishing requests in flight');
      for (const socket of upgraded) socket.destroy();
      await Promise.all([
        drain(server, active.config.grace, log),
        new Promise<void>((resolve) => (admin === undefined ? resolve() : admin.close(() => resolve()))),
      ]);
      timeouts.stop();
      await dispatcher.destroy();
      if (redis !== undefined) await redis.quit().catch(() => redis?.disconnect());
      log.info('stopped');
    })();
    return stopping;
  };
  return {
    server,
    url,
    adminUrl,
    metrics,
    reload,
    stop,
  };
}

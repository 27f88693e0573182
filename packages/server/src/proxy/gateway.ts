import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Shedder, Store } from 'floodgate';
import { displayClient } from 'floodgate/admin';
import { andThen, attempt, type MaybePromise, type Verdict } from 'floodgate/http';
import type { Logger } from 'pino';
import type { ProxyConfig } from './config.js';
import { type ForwardOptions, forward, forwardUpgrade, problem, rawResponse } from './forward.js';
import { jwtVerifier } from './jwt.js';
import type { ProxyMetrics } from './metrics.js';
import { type RefusalLog, refusalLog } from './refusal-log.js';
import { compileRules, type Rule } from './rules.js';
import { type Target, targetOf, viewOf } from './target.js';
import type { Timeouts } from './timeouts.js';
import { UpstreamPool, upstreamOf } from './upstreams.js';

/** Everything a configuration decides per request; swapped whole on reload, so a request sees one version. */
export interface Active {
  readonly config: ProxyConfig;
  readonly rules: readonly Rule[];
  /** The upstreams and their health; the health carries over a reload (see Gateway.swap). */
  readonly pool: UpstreamPool;
  readonly forward: ForwardOptions;
}

/** What a configuration is made active with: the resources that outlive a reload. */
export interface Resources {
  /** Each rule's store, by rule name (see `ruleStores`). */
  readonly storeFor: (rule: string) => Store;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  readonly dispatcher: ForwardOptions['dispatcher'];
  /** `upstreamCa`, read at start. */
  readonly ca: Buffer | undefined;
  readonly timeouts: Timeouts;
  readonly env: NodeJS.ProcessEnv;
  /** The upstream's own protection (`shed:`), shared by every rule; kept across reloads. */
  readonly shedder?: Shedder;
  /** The clock upstream ejections are timed on (ms). Default: Date.now. */
  readonly now?: () => number;
  /** Why `{ jwt }` keys failed, rolled up per rule and reason (see `jwtFailureLog`). */
  readonly keyFailures: RefusalLog;
}

/** The log of JWT key failures: kept across reloads, flushed at a stop. */
export function jwtFailureLog(log: Logger): RefusalLog {
  return refusalLog(log, 'JWT key failed: the request has no key from its token', 'failed');
}

/** A validated configuration made ready to serve: rules compiled, upstreams parsed, forwarding set up. */
export function activate(config: ProxyConfig, r: Resources): Active {
  const jwt = config.jwt === undefined ? undefined : jwtVerifier(config.jwt, r.env);
  const onMissingKey = new Map(config.rules.map((rule) => [rule.name, rule.onMissingKey]));
  const rules = compileRules(
    config,
    r.storeFor,
    jwt,
    {
      onError: (error, rule) =>
        r.log.warn({ rule, err: (error as Error).message }, 'rate-limit store failed'),
      onKeyFailure: (rule, reason, req) =>
        r.keyFailures.note(`${rule}\n${reason}`, {
          rule,
          reason,
          onMissingKey: onMissingKey.get(rule),
          peer: req.socket.remoteAddress,
        }),
    },
    r.shedder,
  );
  const pool = new UpstreamPool(config.upstream.map(upstreamOf), config.failover, r.now ?? Date.now, {
    ejected: (upstream, ms) => {
      r.metrics.upstreamEjections.inc({ upstream: upstream.authority });
      r.log.warn({ upstream: upstream.authority, for: ms }, 'upstream taken out of the rotation');
    },
    healthChanged: (upstream, up) =>
      r.log[up ? 'info' : 'warn'](
        { upstream: upstream.authority },
        up ? 'upstream health check passes; back in the rotation' : 'upstream health check fails',
      ),
  });
  return {
    config,
    rules,
    pool,
    forward: {
      dispatcher: r.dispatcher,
      preserveHost: config.preserveHost,
      forwarded: config.forwarded,
      forwardDecision: config.forwardDecision,
      ca: r.ca,
      limits: config.timeouts,
      timeouts: r.timeouts,
      onUpstreamError: (error, upstream) => {
        r.metrics.upstreamErrors.inc({ kind: error.kind });
        r.log.warn({ kind: error.kind, upstream: upstream.authority, err: error.message }, 'upstream failed');
      },
      onRetry: (error, to) => {
        r.metrics.upstreamRetries.inc({ kind: error.kind });
        r.log.info({ kind: error.kind, to: to.authority, err: error.message }, 'request sent again');
      },
    },
  };
}

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

type Refusal = Extract<Verdict, { kind: 'respond' }>;

/** A decided request: its rule, if one matched, and the verdict to forward with (undefined: as is). */
interface Outcome {
  readonly rule: Rule | undefined;
  readonly verdict: Verdict | undefined;
}

const UNMATCHED: Outcome = { rule: undefined, verdict: undefined };
const NO_FIELDS: readonly (readonly [string, string])[] = [];

function refuseResponse(res: ServerResponse, verdict: Refusal): void {
  // Already answered while the rule was decided (a malformed body, see Gateway.clientError).
  if (res.headersSent) return;
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

/**
 * The gateway's request path, in named steps: find the request's rule, decide it with the rule's guard,
 * refuse it or forward it (with the rate-limit fields), and count and log what happened. Plain methods and
 * callbacks, no async function: on the memory store's path a request never waits for a promise.
 */
export class Gateway {
  #active: Active;
  readonly #log: Logger;
  readonly #metrics: ProxyMetrics;
  readonly #timing: (rule: string) => { observe(seconds: number): void };
  readonly #refusals: ReturnType<typeof refusalLog>;
  readonly #shadowRefusals: ReturnType<typeof refusalLog>;
  /** Upgraded connections: the server no longer tracks them, and a stop must end them. */
  readonly upgraded = new Set<Duplex>();

  constructor(active: Active, log: Logger, metrics: ProxyMetrics) {
    this.#active = active;
    active.pool.startChecks(active.forward.dispatcher);
    this.#log = log;
    this.#metrics = metrics;
    this.#timing = memo((rule) => metrics.upstreamDuration.labels(rule));
    this.#refusals = refusalLog(log, 'refused');
    this.#shadowRefusals = refusalLog(log, 'would have refused (shadow mode)');
  }

  get active(): Active {
    return this.#active;
  }

  /** Serves `next` from the next request on; requests in flight finish under the configuration they began with. */
  swap(next: Active): void {
    const previous = this.#active;
    next.pool.inherit(previous.pool);
    previous.pool.stopChecks();
    this.#active = next;
    next.pool.startChecks(next.forward.dispatcher);
  }

  /** Stops what runs on its own (the upstreams' health checks), at a stop. */
  close(): void {
    this.#active.pool.stopChecks();
  }

  /** Writes the refusal counts still pending to the log (at a stop). */
  flushLogs(): void {
    this.#refusals.flush();
    this.#shadowRefusals.flush();
  }

  /** The `request` listener. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const state = this.#active;
    const target = targetOf(req);
    if (typeof target === 'string') {
      problem(res, 400, 'Bad Request', target);
      return;
    }
    void andThen(this.#decide(req, res, state, target, refuseResponse), (outcome) =>
      this.#proceed(req, res, state, target, outcome),
    );
  };

  /** The `upgrade` listener (WebSocket): decided like a request, then passed through. */
  readonly handleUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const state = this.#active;
    socket.on('error', () => {});
    const target = targetOf(req);
    if (typeof target === 'string') {
      socket.end(rawResponse(400, 'Bad Request', [], target));
      return;
    }
    const decided = await this.#decide(req, socket, state, target, refuseUpgrade);
    if (decided === undefined) return;
    const { rule, verdict } = decided;
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
    this.#metrics.websockets.inc();
    // The shed slot is the handshake's: an open WebSocket is no work in flight for the upstream.
    const switched = verdict?.kind === 'pass' ? verdict.switched : undefined;
    const status = await forwardUpgrade(
      this.#forwarding(req, state, target, rule, verdict),
      socket,
      head,
      switched,
    );
    this.#metrics.websockets.dec();
    if (verdict?.kind === 'pass') verdict.settle?.(status === 101 ? 200 : status);
  };

  /**
   * The `clientError` listener: the parser met bytes that are not HTTP. Where they are depends on the
   * response that holds the socket (`_httpMessage`: the field Node's own handler reads, so no request pays
   * for bookkeeping):
   * - none: a malformed request of its own, answered 400;
   * - one whose request is whole (or whose response is already complete): a malformed request pipelined
   *   behind it. A 400 written now would land inside that response and break its framing, so the
   *   connection is closed once the response is out, as Node's own handler does;
   * - one whose request body is still coming: the body itself is malformed (a chunk size that is not hex,
   *   overflows, or a chunk-size line past the parser's bound). The request can never be completed: it is
   *   answered 400 at once, or, when the upstream's response has begun, the connection is cut. Either way
   *   the response closes, and the relay aborts the upstream request with it (see forward.ts), so neither
   *   connection waits for a timeout.
   */
  readonly clientError = (_error: Error, socket: Duplex): void => {
    const current = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (current != null && !current.writableFinished) {
      if (current.req.complete || current.writableEnded) {
        current.once('close', () => socket.destroy());
      } else if (current.headersSent) {
        socket.destroy();
      } else {
        problem(current, 400, 'Bad Request', 'The request body is malformed.');
      }
      return;
    }
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  };

  /**
   * What to forward with: the matched rule (if any) and its verdict (undefined to forward as is). Undefined
   * when the request was refused, `refuse` having answered it. A promise only when the rule's guard needs
   * one (a remote store, an async hook): the memory store decides without leaving this call.
   */
  #decide<Sink>(
    req: IncomingMessage,
    sink: Sink,
    state: Active,
    target: Target,
    refuse: (sink: Sink, verdict: Refusal) => void,
  ): MaybePromise<Outcome | undefined> {
    const method = req.method ?? 'GET';
    const rule = state.rules.find((r) => r.matches(method, target.host, target.matchPath));
    if (rule === undefined) {
      this.#metrics.countRequest('', 'unmatched');
      return UNMATCHED;
    }
    return attempt(
      () => rule.guard.decide(req, viewOf(req, target)),
      (verdict) => this.#conclude(req, sink, rule, target, verdict, refuse),
      (error) => this.#checkFailed(rule, error),
    );
  }

  #checkFailed(rule: Rule, error: unknown): Outcome {
    this.#log.error(
      { rule: rule.name, err: (error as Error).message },
      'rate-limit check failed; letting the request through',
    );
    return { rule, verdict: undefined };
  }

  /** Counts the verdict; a refusal is answered and logged here (only counted and logged in shadow mode). */
  #conclude<Sink>(
    req: IncomingMessage,
    sink: Sink,
    rule: Rule,
    target: Target,
    verdict: Verdict,
    refuse: (sink: Sink, verdict: Refusal) => void,
  ): Outcome | undefined {
    const count = this.#metrics.countRequest;
    if (verdict.kind === 'pass') {
      count(rule.name, 'allowed');
      return {
        rule,
        verdict: rule.shadow
          ? // Shadow mode sends no fields, but keeps the hooks that give back what was taken.
            { ...verdict, headers: [] }
          : verdict,
      };
    }
    const decision = verdict.reason ?? DECISIONS[verdict.status] ?? 'refused';
    const fields = {
      rule: rule.name,
      decision,
      status: verdict.status,
      method: req.method,
      path: target.matchPath,
      peer: req.socket.remoteAddress,
      // Who the limit was keyed on (the client behind a load balancer, a user, an API key's digest), not
      // only the socket's peer; never a secret.
      ...(verdict.refused === undefined
        ? {}
        : {
            client: displayClient(verdict.refused.key).label,
            policy: verdict.refused.policy,
            reason: verdict.refused.reason,
          }),
    };
    // Rolled up per rule and decision: a count of 429s is not mixed with one of 400s.
    const group = `${rule.name}\n${decision}`;
    if (rule.shadow) {
      count(rule.name, `shadow_${decision}`);
      this.#shadowRefusals.note(group, { ...fields, shadow: true });
      return { rule, verdict: undefined };
    }
    count(rule.name, decision);
    this.#refusals.note(group, fields);
    refuse(sink, verdict);
    return undefined;
  }

  #proceed(
    req: IncomingMessage,
    res: ServerResponse,
    state: Active,
    target: Target,
    outcome: Outcome | undefined,
  ): void {
    if (outcome === undefined) return;
    const { rule, verdict } = outcome;
    if (res.headersSent) {
      // Answered while its rule was decided (a malformed body, see clientError): nothing to forward, and
      // no answer of the upstream's to count as a success.
      if (verdict?.kind === 'pass') verdict.settle?.(undefined);
      return;
    }
    const started = performance.now();
    forward(this.#forwarding(req, state, target, rule, verdict), res, (result) => {
      if (verdict?.kind === 'pass') verdict.settle?.(result.status);
      this.#timing(rule?.name ?? '').observe((performance.now() - started) / 1000);
    });
  }

  /** What to send, and where it may go. */
  #forwarding(
    req: IncomingMessage,
    state: Active,
    target: Target,
    rule: Rule | undefined,
    verdict: Verdict | undefined,
  ) {
    const extra = verdict?.kind === 'pass' ? verdict.headers : NO_FIELDS;
    return {
      req,
      pool: state.pool,
      path: target.forwardPath,
      authority: target.authority,
      extra,
      decision:
        state.forward.forwardDecision && rule !== undefined
          ? [['Floodgate-Rule', rule.name] as const, ...extra]
          : NO_FIELDS,
      options: state.forward,
    };
  }
}

import { type IncomingMessage, request, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { type Exchange, POOL_IDLE, type TimeoutKind, type TimeoutLimits, type Timeouts } from './timeouts.js';
import type { Upstream, UpstreamPool } from './upstreams.js';

/** Header fields that describe one connection, never forwarded (RFC 9110, section 7.6.1). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // Already answered by this proxy's server ("100 Continue"); the upstream must not wait for it again.
  'expect',
]);

export interface ForwardOptions {
  /** The upstream connection pools (undici's: a Node `ClientRequest` costs half a proxied request). */
  readonly dispatcher: Dispatcher;
  readonly preserveHost: boolean;
  readonly forwarded: 'x-forwarded' | 'forwarded' | 'both' | 'none';
  /** Trusted for https:// upstreams instead of Node's bundled CAs (upgrades; the dispatcher has its own). */
  readonly ca: Buffer | undefined;
  /** The decision is told to the upstream (`Forwarding.decision`): the client's fields of those names dropped. */
  readonly forwardDecision: boolean;
  readonly limits: TimeoutLimits;
  /** The proxy's sweep for every exchange's timeouts. */
  readonly timeouts: Timeouts;
  /** Told of every exchange the upstream could not complete (metrics, logs). */
  readonly onUpstreamError: (error: UpstreamError, upstream: Upstream) => void;
  /** Told of a request sent again, to `to`, after `error` (metrics). */
  readonly onRetry: (error: UpstreamError, to: Upstream) => void;
}

/** One request to relay: where to, with which extra response fields, under which options. */
export interface Forwarding {
  readonly req: IncomingMessage;
  /** Where it may go: the next upstream in turn, then, when it fails before anything was sent, another. */
  readonly pool: UpstreamPool;
  /** Path and query, after the upstream's own base path. */
  readonly path: string;
  /** The client's Host (or its absolute-form target's authority; see target.ts), undefined when none. */
  readonly authority: string | undefined;
  /** Header fields added to the response (the rate-limit fields). */
  readonly extra: readonly (readonly [string, string])[];
  /** Header fields added to the request, with `forwardDecision`: the rule and its rate-limit fields. */
  readonly decision: readonly (readonly [string, string])[];
  readonly options: ForwardOptions;
}

/** Why a request could not be completed upstream; `status` is what the client gets when nothing was sent yet. */
export class UpstreamError extends Error {
  constructor(
    readonly status: 502 | 504,
    readonly kind: 'connect' | 'connect-timeout' | 'response-timeout' | 'idle-timeout' | 'reset',
    message: string,
  ) {
    super(message);
  }
}

/** Keep-alive pools to the upstreams, at most `maxSockets` connections to each; `ca` for https:// ones. */
export function newDispatcher(maxSockets: number, connectTimeout: number, ca?: Buffer): Agent {
  return new Agent({
    connections: maxSockets,
    keepAliveTimeout: POOL_IDLE,
    // The sweep (timeouts.ts) times the response and idle pauses; undici's connect timeout only ends an
    // attempt whose request the sweep already answered.
    headersTimeout: 0,
    bodyTimeout: 0,
    connect: { timeout: connectTimeout, noDelay: true, ...(ca === undefined ? {} : { ca }) },
  });
}

function timeoutError(kind: TimeoutKind, limits: TimeoutLimits): UpstreamError {
  const message =
    kind === 'connect-timeout'
      ? `no connection to the upstream within ${limits.connect} ms`
      : kind === 'response-timeout'
        ? `no response from the upstream within ${limits.response} ms`
        : `the upstream was idle for ${limits.idle} ms`;
  return new UpstreamError(504, kind, message);
}

const NONE: ReadonlySet<string> = new Set();

function connectionTokens(value: string | string[] | undefined): ReadonlySet<string> {
  // The usual values name only fields that are dropped anyway.
  if (value === undefined || value === 'keep-alive' || value === 'close') return NONE;
  const tokens = new Set<string>();
  for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
    for (const t of v.split(',')) tokens.add(t.trim().toLowerCase());
  }
  return tokens;
}

/** A raw header list without hop-by-hop fields, nor those the `Connection` field names. */
function endToEnd(
  raw: readonly string[],
  connection: string | string[] | undefined,
  drop: ReadonlySet<string> = NONE,
): string[] {
  const named = connectionTokens(connection);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower) || drop.has(lower)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

const X_FORWARDED = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'];

/** The client's fields this proxy writes itself, per `forwarded` mode. */
const REPLACED: Record<ForwardOptions['forwarded'], ReadonlySet<string>> = {
  'x-forwarded': new Set(['host', ...X_FORWARDED]),
  forwarded: new Set(['host', 'forwarded']),
  both: new Set(['host', ...X_FORWARDED, 'forwarded']),
  none: new Set(['host']),
};

/** The fields `forwardDecision` writes (every draft's names): a client's own would pass for the proxy's. */
const DECISION_FIELDS = [
  'floodgate-rule',
  'ratelimit',
  'ratelimit-policy',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
];
const withDecision = (fields: ReadonlySet<string>) => new Set([...fields, ...DECISION_FIELDS]);
const REPLACED_WITH_DECISION: Record<ForwardOptions['forwarded'], ReadonlySet<string>> = {
  'x-forwarded': withDecision(REPLACED['x-forwarded']),
  forwarded: withDecision(REPLACED.forwarded),
  both: withDecision(REPLACED.both),
  none: withDecision(REPLACED.none),
};

function forwardedFor(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

/** The request's header list for the upstream: end-to-end fields, Host, and the forwarding fields. */
export function upstreamHeaders(
  req: IncomingMessage,
  authority: string | undefined,
  target: Upstream,
  options: ForwardOptions,
  decision: readonly (readonly [string, string])[],
  upgrade = false,
): string[] {
  const mode = options.forwarded;
  const replaced = options.forwardDecision ? REPLACED_WITH_DECISION : REPLACED;
  const headers = endToEnd(req.rawHeaders, req.headers.connection, replaced[mode]);
  for (const [name, value] of decision) headers.push(name, value);
  const clientHost = authority ?? target.authority;
  headers.push('Host', options.preserveHost ? clientHost : target.authority);
  const peer = (req.socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, '');
  const proto = (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http';
  if (mode === 'x-forwarded' || mode === 'both') {
    const prior = req.headers['x-forwarded-for'];
    headers.push('X-Forwarded-For', prior === undefined || prior === '' ? peer : `${prior}, ${peer}`);
    headers.push('X-Forwarded-Proto', proto);
    headers.push('X-Forwarded-Host', clientHost);
  }
  if (mode === 'forwarded' || mode === 'both') {
    const prior = req.headers.forwarded;
    const hop = `for=${forwardedFor(peer)};host="${clientHost.replace(/["\\]/g, '')}";proto=${proto}`;
    headers.push('Forwarded', prior === undefined || prior === '' ? hop : `${prior}, ${hop}`);
  }
  if (upgrade) headers.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade ?? '');
  return headers;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

function classify(error: NodeJS.ErrnoException, limits: TimeoutLimits): UpstreamError {
  if (error instanceof UpstreamError) return error;
  const code = error.code ?? '';
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return timeoutError('connect-timeout', limits);
  const connect = UNREACHABLE.has(code);
  // undici's own codes say less than its messages ("other side closed").
  const what = code === '' || code.startsWith('UND_ERR') ? error.message : code;
  return new UpstreamError(
    502,
    connect ? 'connect' : 'reset',
    `upstream ${connect ? 'unreachable' : 'failed'}: ${what}`,
  );
}

/** A pooled connection the upstream closed as it was reused: the request may be sent again, once. */
const STALE = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

/** Methods a request can be sent twice with: the only ones retried once a request may have been sent. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface ForwardResult {
  /**
   * The status of the whole answer the client got: the upstream's, or the proxy's 502/504 when the upstream
   * gave none (a failure for `countOnly`, see `failureOf`, and overload for the shedder). Undefined when no
   * answer of either came whole: the client went first, the upstream cut its answer short, or the proxy
   * answered the request itself (its 400 for a malformed or cut-short body, no answer of the upstream's).
   * An outcome counted from it (`countOnly`) is then a failure, as an attempt never told it succeeded is.
   */
  status: number | undefined;
  error?: UpstreamError;
}

/** An RFC 9457 problem response, closing the connection. */
export function problem(res: ServerResponse, status: number, title: string, detail: string): void {
  const body = JSON.stringify({ type: 'about:blank', title, status, detail });
  res.writeHead(status, {
    'Content-Type': 'application/problem+json',
    'Content-Length': Buffer.byteLength(body),
    Connection: 'close',
  });
  res.end(body);
}

/**
 * One client request relayed to the upstream: undici's handler for the upstream exchange, which writes the
 * client's response as the upstream's arrives. A class, so a request costs one object, not a dozen closures.
 */
class Relay implements Dispatcher.DispatchHandler {
  #exchange: Exchange;
  #abort: ((error?: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #over = false;
  /** Bodyless and idempotent: may be sent again after a connection closed under it. */
  readonly #resendable: boolean;
  #upstream: Upstream;
  /** The upstreams this request was sent to, once it is sent again; undefined on the first attempt. */
  #tried: Upstream[] | undefined;
  #dispatch: Dispatcher.DispatchOptions;

  readonly req: IncomingMessage;
  readonly extra: readonly (readonly [string, string])[];
  readonly options: ForwardOptions;
  readonly forwarding: Forwarding;

  constructor(
    forwarding: Forwarding,
    readonly res: ServerResponse,
    readonly done: (result: ForwardResult) => void,
  ) {
    const { req, pool, options } = forwarding;
    this.forwarding = forwarding;
    this.req = req;
    this.extra = forwarding.extra;
    this.options = options;
    const bodyless =
      req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
    this.#resendable = bodyless && IDEMPOTENT.has(req.method ?? '');
    // A pool always has an upstream for a request that has tried none.
    this.#upstream = pool.pick()!;
    this.#dispatch = this.#dispatchTo(this.#upstream, bodyless);
    this.#exchange = this.#watch();
    // The client went away, or the proxy answered it itself (a malformed body): stop the upstream exchange too.
    res.on('close', () => {
      if (this.#over) return;
      this.#over = true;
      this.options.timeouts.unwatch(this.#exchange);
      this.#abort?.();
      // Closed before the upstream's answer was relayed whole: whatever the client got is not its answer.
      this.done({ status: undefined });
    });
    options.dispatcher.dispatch(this.#dispatch, this);
  }

  #dispatchTo(upstream: Upstream, bodyless: boolean): Dispatcher.DispatchOptions {
    const { req, path, options } = this.forwarding;
    return {
      origin: upstream.origin,
      path: upstream.base + path,
      method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
      headers: upstreamHeaders(req, this.forwarding.authority, upstream, options, this.forwarding.decision),
      body: bodyless ? null : req,
    };
  }

  #watch(): Exchange {
    return this.options.timeouts.watch(this.options.limits, (kind) => this.#expire(kind));
  }

  #expire(kind: TimeoutKind): void {
    const error = timeoutError(kind, this.options.limits);
    // Not yet on a connection: answered now, and aborted in onConnect if it ever gets one.
    if (this.#abort === undefined) this.onError(error);
    else this.#abort(error);
  }

  #finish(result: ForwardResult): void {
    this.#over = true;
    this.options.timeouts.unwatch(this.#exchange);
    this.done(result);
  }

  onConnect(abort: (error?: Error) => void): void {
    if (this.#over) {
      abort();
      return;
    }
    this.#abort = abort;
    this.#exchange.connected = true;
  }

  // undici passes the chunk, where its types say the chunk's size: either counts as progress.
  onBodySent(chunk: unknown): void {
    this.#exchange.bytes += typeof chunk === 'number' ? chunk : (chunk as Buffer).length;
  }

  onRequestSent(): void {
    this.options.timeouts.sent(this.#exchange);
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void, statusText: string): boolean {
    if (this.#over) return false;
    if (this.res.headersSent) {
      // The proxy answered the client itself (a malformed request body): the response closing will end
      // this exchange; nothing of the upstream's is relayed meanwhile.
      this.#abort?.();
      return false;
    }
    this.forwarding.pool.record(this.#upstream, status >= 500);
    this.#exchange.responded = true;
    this.#resume = resume;
    const out: string[] = [];
    let connection: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toString('latin1');
      const lower = name.toLowerCase();
      if (lower === 'connection') {
        const value = raw[i + 1]!.toString('latin1');
        connection = connection === undefined ? value : `${connection}, ${value}`;
      }
      if (HOP_BY_HOP.has(lower)) continue;
      out.push(name, raw[i + 1]!.toString('latin1'));
    }
    const headers = connection === undefined ? out : endToEnd(out, connection);
    for (const [name, value] of this.extra) headers.push(name, value);
    this.res.writeHead(status, statusText, headers);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.#exchange.bytes += chunk.length;
    if (this.res.write(chunk)) return true;
    this.res.once('drain', this.#resume!);
    return false;
  }

  onComplete(): void {
    if (this.#over) return;
    this.res.end();
    this.#finish({ status: this.res.statusCode });
  }

  onError(err: Error): void {
    if (this.#over) return;
    const res = this.res;
    // Answered by the proxy itself (a malformed request body) and aborted here: no upstream failure.
    if (res.headersSent && !this.#exchange.responded) {
      this.#finish({ status: undefined });
      return;
    }
    const error = classify(err, this.options.limits);
    const stale = STALE.has((err as NodeJS.ErrnoException).code ?? '');
    // A connection closed as it was reused is the pool's race with the upstream's idle timeout, no failure.
    if (!(stale && this.#tried === undefined)) this.forwarding.pool.record(this.#upstream, true);
    if (!this.#exchange.responded && !res.headersSent && this.#sendAgain(error, stale)) return;
    this.options.onUpstreamError(error, this.#upstream);
    if (!res.headersSent) {
      problem(res, error.status, error.status === 504 ? 'Gateway Timeout' : 'Bad Gateway', error.message);
    } else {
      res.destroy(error);
    }
    this.#finish({ status: res.headersSent ? undefined : error.status, error });
  }

  /**
   * Sends the request again after `error`, if nothing of it can have reached an upstream (the connection
   * was refused: any method, its body still unread), or if it may be sent twice (a bodyless GET, HEAD or
   * OPTIONS whose connection closed before an answer). Each upstream is tried once, the next in turn;
   * after a closed reused connection, the same upstream again when it is the only one.
   */
  #sendAgain(error: UpstreamError, stale: boolean): boolean {
    const refused = error.kind === 'connect';
    if (!refused && !(this.#resendable && (stale || error.kind === 'reset'))) return false;
    const tried = this.#tried ?? [];
    this.#tried = tried;
    tried.push(this.#upstream);
    let next = this.forwarding.pool.pick(tried);
    if (next === undefined && stale && tried.length === 1) next = this.#upstream;
    if (next === undefined) return false;
    this.options.onRetry(error, next);
    this.#upstream = next;
    this.#dispatch = this.#dispatchTo(next, this.#dispatch.body === null);
    this.options.timeouts.unwatch(this.#exchange);
    this.#exchange = this.#watch();
    this.#abort = undefined;
    // Once undici is done with the failed connection: dispatched from inside its error, the new request
    // would meet the pool mid-teardown.
    setImmediate(() => {
      if (!this.#over) this.options.dispatcher.dispatch(this.#dispatch, this);
    });
    return true;
  }
}

/**
 * Streams `req` to the upstream and its response back, without buffering either body; `done` is called
 * once, when the exchange is over. `extra` headers (rate-limit fields) are added to the response.
 */
export function forward(
  forwarding: Forwarding,
  res: ServerResponse,
  done: (result: ForwardResult) => void,
): void {
  new Relay(forwarding, res, done);
}

/** The raw bytes of a response written on a socket (upgrades, where there is no ServerResponse). */
export function rawResponse(
  status: number,
  reason: string,
  headers: readonly (readonly [string, string])[],
  body = '',
): string {
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return `${head}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/**
 * Passes a protocol upgrade (WebSocket) through: the upstream's 101 and then bytes both ways, until either
 * side closes. A refusal by the upstream is relayed as its response. Resolves with the status the client
 * got: 101, the upstream's refusal's, or 502/504 when the upstream gave none.
 */
export function forwardUpgrade(
  forwarding: Forwarding,
  socket: Duplex,
  head: Buffer,
  switched: () => void = () => {},
): Promise<number> {
  const { req, pool, path, extra, options } = forwarding;
  const target = pool.pick()!;
  return new Promise((resolve) => {
    const upstream = (target.tls ? httpsRequest : request)({
      ...(target.tls
        ? { ca: options.ca, servername: isIP(target.host) === 0 ? target.host : undefined }
        : {}),
      host: target.host,
      port: target.port,
      method: req.method,
      path: target.base + path,
      headers: upstreamHeaders(req, forwarding.authority, target, options, forwarding.decision, true),
      agent: false,
      setHost: false,
    });
    let settled = false;
    const exchange = options.timeouts.watch(options.limits, (kind) =>
      upstream.destroy(timeoutError(kind, options.limits)),
    );
    // A connection of its own (no pool), and no body: the request is sent as soon as it connects.
    upstream.once('socket', (s: Socket) =>
      s.once('connect', () => {
        exchange.connected = true;
        options.timeouts.sent(exchange);
      }),
    );
    const done = (status: number) => {
      if (!settled) {
        settled = true;
        options.timeouts.unwatch(exchange);
        resolve(status);
      }
    };
    socket.on('error', () => upstream.destroy());
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      const error = classify(err, options.limits);
      pool.record(target, true);
      options.onUpstreamError(error, target);
      if (socket.writable)
        socket.end(
          rawResponse(
            error.status,
            error.status === 504 ? 'Gateway Timeout' : 'Bad Gateway',
            [],
            error.message,
          ),
        );
      done(error.status);
    });
    upstream.on('response', (up: IncomingMessage) => {
      // The upstream refused the upgrade: relay its answer as is.
      exchange.responded = true;
      pool.record(target, (up.statusCode ?? 502) >= 500);
      let text = `HTTP/1.1 ${up.statusCode} ${up.statusMessage}\r\n`;
      const out = endToEnd(up.rawHeaders, up.headers.connection, new Set(['content-length']));
      for (let i = 0; i < out.length; i += 2) text += `${out[i]}: ${out[i + 1]}\r\n`;
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => {
        exchange.bytes += c.length;
        chunks.push(c);
      });
      up.on('end', () => {
        const body = Buffer.concat(chunks);
        socket.end(
          Buffer.concat([
            Buffer.from(`${text}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`),
            body,
          ]),
        );
        done(up.statusCode ?? 502);
      });
    });
    upstream.on('upgrade', (up: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
      // An upgraded connection may stay quiet as long as both ends like.
      options.timeouts.unwatch(exchange);
      pool.record(target, false);
      let text = `HTTP/1.1 101 ${up.statusMessage || 'Switching Protocols'}\r\n`;
      const raw = up.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const lower = raw[i]!.toLowerCase();
        if (lower === 'connection' || lower === 'upgrade') continue;
        text += `${raw[i]}: ${raw[i + 1]}\r\n`;
      }
      for (const [name, value] of extra) text += `${name}: ${value}\r\n`;
      socket.write(`${text}Connection: Upgrade\r\nUpgrade: ${up.headers.upgrade ?? ''}\r\n\r\n`);
      switched();
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      upSocket.on('error', () => socket.destroy());
      socket.on('error', () => upSocket.destroy());
      upSocket.on('close', () => socket.destroy());
      socket.on('close', () => {
        upSocket.destroy();
        done(101);
      });
      upSocket.pipe(socket);
      socket.pipe(upSocket);
    });
    upstream.end();
  });
}

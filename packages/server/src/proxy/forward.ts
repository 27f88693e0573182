import { Agent, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TimeoutKind, TimeoutLimits, Timeouts } from './timeouts.js';

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

/** Methods a request can be sent twice with: the only ones retried after a stale pooled connection. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface Upstream {
  readonly host: string;
  readonly port: number;
  /** The upstream URL's path, prepended to every request's path ('' for none). */
  readonly base: string;
  /** `host:port`, for the Host header when the client's is not kept. */
  readonly authority: string;
}

export function upstreamOf(url: string): Upstream {
  const u = new URL(url);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port || 80),
    base: u.pathname.replace(/\/+$/, ''),
    authority: u.host,
  };
}

export interface ForwardOptions {
  readonly agent: Agent;
  readonly preserveHost: boolean;
  readonly forwarded: 'x-forwarded' | 'forwarded' | 'both' | 'none';
  readonly limits: TimeoutLimits;
  /** The proxy's sweep for every exchange's timeouts. */
  readonly timeouts: Timeouts;
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

export function newAgent(maxSockets: number): Agent {
  // No `timeout`: a socket timeout is refreshed on every read and write. Idle pooled sockets are closed by
  // the proxy's sweep instead (timeouts.ts).
  return new Agent({
    keepAlive: true,
    // Head and body go out as separate writes: with Nagle's algorithm, the second waits for a delayed ACK.
    noDelay: true,
    maxSockets,
    maxFreeSockets: maxSockets,
    scheduling: 'lifo',
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

function forwardedFor(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

/** The request's header list for the upstream: end-to-end fields, Host, and the forwarding fields. */
export function upstreamHeaders(
  req: IncomingMessage,
  target: Upstream,
  options: ForwardOptions,
  upgrade = false,
): string[] {
  const mode = options.forwarded;
  const headers = endToEnd(req.rawHeaders, req.headers.connection, REPLACED[mode]);
  const clientHost = req.headers.host ?? target.authority;
  headers.push('Host', options.preserveHost ? clientHost : target.authority);
  const peer = (req.socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, '');
  if (mode === 'x-forwarded' || mode === 'both') {
    const prior = req.headers['x-forwarded-for'];
    headers.push('X-Forwarded-For', prior === undefined || prior === '' ? peer : `${prior}, ${peer}`);
    headers.push('X-Forwarded-Proto', 'http');
    headers.push('X-Forwarded-Host', clientHost);
  }
  if (mode === 'forwarded' || mode === 'both') {
    const prior = req.headers.forwarded;
    const hop = `for=${forwardedFor(peer)};host="${clientHost.replace(/["\\]/g, '')}";proto=http`;
    headers.push('Forwarded', prior === undefined || prior === '' ? hop : `${prior}, ${hop}`);
  }
  if (upgrade) headers.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade ?? '');
  return headers;
}

function classify(error: NodeJS.ErrnoException): UpstreamError {
  if (error instanceof UpstreamError) return error;
  const connect = ['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'].includes(
    error.code ?? '',
  );
  return new UpstreamError(
    502,
    connect ? 'connect' : 'reset',
    `upstream ${connect ? 'unreachable' : 'failed'}: ${error.code ?? error.message}`,
  );
}

export interface ForwardResult {
  /** The status sent to the client (the upstream's, or 502/504). */
  status: number;
  error?: UpstreamError;
}

/**
 * Streams `req` to the upstream and its response back, without buffering either body; `done` is called
 * once, when the exchange is over. `extra` headers (rate-limit fields) are added to the response.
 */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  target: Upstream,
  path: string,
  extra: readonly (readonly [string, string])[],
  options: ForwardOptions,
  onUpstreamError: (error: UpstreamError) => void,
  done: (result: ForwardResult) => void,
): void {
  const headers = upstreamHeaders(req, target, options);
  const bodyless =
    req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
  const send = (retry: boolean) => {
    const upstream = request({
      host: target.host,
      port: target.port,
      method: req.method,
      path: target.base + path,
      headers,
      agent: options.agent,
      setHost: false,
    });
    let over = false;
    const exchange = options.timeouts.watch(upstream, options.limits, (kind) => {
      if (!over) upstream.destroy(timeoutError(kind, options.limits));
    });
    const finish = (result: ForwardResult) => {
      if (over) return;
      over = true;
      options.timeouts.unwatch(exchange);
      done(result);
    };
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (over) return;
      // A pooled connection the upstream closed as we reused it: safe to send again once, if idempotent.
      if (retry && upstream.reusedSocket && err.code === 'ECONNRESET' && !res.headersSent) {
        over = true;
        options.timeouts.unwatch(exchange);
        send(false);
        return;
      }
      const error = classify(err);
      onUpstreamError(error);
      if (!res.headersSent) {
        const body = JSON.stringify({
          type: 'about:blank',
          title: error.status === 504 ? 'Gateway Timeout' : 'Bad Gateway',
          status: error.status,
          detail: error.message,
        });
        res.writeHead(error.status, {
          'Content-Type': 'application/problem+json',
          'Content-Length': Buffer.byteLength(body),
          Connection: 'close',
        });
        res.end(body);
      } else {
        res.destroy(error);
      }
      finish({ status: res.headersSent ? res.statusCode : error.status, error });
    });
    upstream.on('response', (up: IncomingMessage) => {
      exchange.responded = true;
      const out = endToEnd(up.rawHeaders, up.headers.connection);
      for (const [name, value] of extra) out.push(name, value);
      res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
      up.pipe(res);
      up.on('error', (err) => {
        const error = classify(err);
        onUpstreamError(error);
        res.destroy(error);
        finish({ status: res.statusCode, error });
      });
      res.on('finish', () => finish({ status: res.statusCode }));
    });
    // The client went away: stop the upstream exchange too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
      finish({ status: res.statusCode });
    });
    if (bodyless) upstream.end();
    else req.pipe(upstream);
  };
  send(bodyless && IDEMPOTENT.has(req.method ?? ''));
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
 * side closes. A refusal by the upstream is relayed as its response.
 */
export function forwardUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  target: Upstream,
  path: string,
  extra: readonly (readonly [string, string])[],
  options: ForwardOptions,
  onUpstreamError: (error: UpstreamError) => void,
): Promise<number> {
  return new Promise((resolve) => {
    const upstream = request({
      host: target.host,
      port: target.port,
      method: req.method,
      path: target.base + path,
      headers: upstreamHeaders(req, target, options, true),
      agent: false,
      setHost: false,
    });
    let settled = false;
    const exchange = options.timeouts.watch(upstream, options.limits, (kind) =>
      upstream.destroy(timeoutError(kind, options.limits)),
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
      const error = classify(err);
      onUpstreamError(error);
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
      let text = `HTTP/1.1 ${up.statusCode} ${up.statusMessage}\r\n`;
      const out = endToEnd(up.rawHeaders, up.headers.connection, new Set(['content-length']));
      for (let i = 0; i < out.length; i += 2) text += `${out[i]}: ${out[i + 1]}\r\n`;
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
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
      let text = `HTTP/1.1 101 ${up.statusMessage || 'Switching Protocols'}\r\n`;
      const raw = up.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const lower = raw[i]!.toLowerCase();
        if (lower === 'connection' || lower === 'upgrade') continue;
        text += `${raw[i]}: ${raw[i + 1]}\r\n`;
      }
      for (const [name, value] of extra) text += `${name}: ${value}\r\n`;
      socket.write(`${text}Connection: Upgrade\r\nUpgrade: ${up.headers.upgrade ?? ''}\r\n\r\n`);
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

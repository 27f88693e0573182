import type { Agent } from 'node:http';

/**
 * The proxy's timeouts, checked by one sweep a few times per shortest timeout instead of timers per request.
 * A timer per request, and Node's per-socket timeouts (refreshed on every read and write), cost about a tenth
 * of a proxied request's instructions; watching an exchange here costs a Set insertion and deletion. The
 * price is precision: a timeout fires up to one sweep late, never early.
 */

/** What a sweep reads of an upstream request; Node's `ClientRequest` has all of it. */
export interface UpstreamRequest {
  readonly socket: SocketView | null | undefined;
  /** Sent on a pooled connection, which was ready before the request began. */
  readonly reusedSocket: boolean;
  /** The whole request, body included, has been handed to the socket. */
  readonly writableFinished: boolean;
}

export interface SocketView {
  readonly connecting: boolean;
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

export interface TimeoutLimits {
  /** From the request's arrival (a wait for a pooled connection included) to a connected upstream. */
  readonly connect: number;
  /** From the request fully sent to the response head. */
  readonly response: number;
  /** No byte either way on the upstream connection, while the request body is sent or the response read. */
  readonly idle: number;
}

export type TimeoutKind = 'connect-timeout' | 'response-timeout' | 'idle-timeout';

/** One exchange with the upstream, from the request's arrival until its owner stops watching it. */
export class Exchange {
  /** Set by the owner when the response head arrives. */
  responded = false;
  /** Whether a sweep has looked at it yet. */
  seen = false;
  /** When the request was seen fully sent; NaN until then. */
  sentAt = Number.NaN;
  /** The connection's byte count at the last sweep, and since when it has not moved. */
  bytes = -1;
  activeAt = Number.NaN;

  constructor(
    readonly request: UpstreamRequest,
    readonly limits: TimeoutLimits,
    /** Arrival time, on the sweep's clock. */
    readonly start: number,
    readonly expire: (kind: TimeoutKind) => void,
  ) {}
}

function stalled(e: Exchange, socket: SocketView, now: number): boolean {
  const bytes = socket.bytesRead + socket.bytesWritten;
  if (bytes !== e.bytes) {
    e.bytes = bytes;
    e.activeAt = now;
    return false;
  }
  return now - e.activeAt >= e.limits.idle;
}

/**
 * The timeout an exchange has run past at `now`, if any. What happened between two sweeps is dated at the
 * later one, so a timeout can only fire late; on its first look at a request sent on a pooled connection,
 * the sweep dates what is already over at the request's arrival, when that connection was ready.
 */
export function overdue(e: Exchange, now: number): TimeoutKind | undefined {
  const request = e.request;
  const socket = request.socket;
  const since = !e.seen && request.reusedSocket ? e.start : now;
  e.seen = true;
  if (e.responded) return socket == null || !stalled(e, socket, now) ? undefined : 'idle-timeout';
  if (socket == null || socket.connecting) {
    return now - e.start >= e.limits.connect ? 'connect-timeout' : undefined;
  }
  if (!request.writableFinished) return stalled(e, socket, now) ? 'idle-timeout' : undefined;
  if (Number.isNaN(e.sentAt)) e.sentAt = since;
  return now - e.sentAt >= e.limits.response ? 'response-timeout' : undefined;
}

/** How often to sweep for these limits: a quarter of the shortest, within 10 ms and 1 s. */
export function sweepEvery(limits: TimeoutLimits): number {
  return Math.min(1_000, Math.max(10, Math.min(limits.connect, limits.response, limits.idle) / 4));
}

/**
 * Pooled upstream connections idle this long are closed at the next sweep, so at most a second later: before
 * the 5 s keep-alive timeout of a Node upstream (often 60 s elsewhere), so a reused connection is rarely
 * one the upstream is closing.
 */
export const POOL_IDLE = 3_000;

interface Pooled {
  bytes: number;
  since: number;
}

export class Timeouts {
  readonly #exchanges = new Set<Exchange>();
  readonly #pooled = new WeakMap<object, Pooled>();
  #timer: NodeJS.Timeout | undefined;
  #every = 0;

  constructor(
    private readonly agent: Agent | undefined,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Starts watching an exchange that begins now. */
  watch(request: UpstreamRequest, limits: TimeoutLimits, expire: (kind: TimeoutKind) => void): Exchange {
    const exchange = new Exchange(request, limits, this.clock(), expire);
    this.#exchanges.add(exchange);
    return exchange;
  }

  unwatch(exchange: Exchange): void {
    this.#exchanges.delete(exchange);
  }

  get size(): number {
    return this.#exchanges.size;
  }

  /** Sweeps every `ms` from now on (again when a reload changes the limits). */
  every(ms: number): void {
    if (ms === this.#every && this.#timer !== undefined) return;
    clearInterval(this.#timer);
    this.#every = ms;
    this.#timer = setInterval(() => this.sweep(), ms).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  sweep(now = this.clock()): void {
    for (const exchange of this.#exchanges) {
      const kind = overdue(exchange, now);
      if (kind !== undefined) {
        this.#exchanges.delete(exchange);
        exchange.expire(kind);
      }
    }
    if (this.agent !== undefined) this.#closeIdle(this.agent, now);
  }

  #closeIdle(agent: Agent, now: number): void {
    for (const name in agent.freeSockets) {
      for (const socket of agent.freeSockets[name] ?? []) {
        const bytes = socket.bytesRead + socket.bytesWritten;
        const last = this.#pooled.get(socket);
        if (last === undefined || last.bytes !== bytes) this.#pooled.set(socket, { bytes, since: now });
        else if (now - last.since >= POOL_IDLE) socket.destroy();
      }
    }
  }
}

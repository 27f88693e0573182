/**
 * The proxy's timeouts, checked by one sweep a few times per shortest timeout instead of timers per request.
 * A timer per request, and Node's per-socket timeouts (refreshed on every read and write), cost about a tenth
 * of a proxied request's instructions; watching an exchange here costs a Set insertion and deletion. The
 * price is precision: a timeout fires up to one sweep late, never early.
 */

export interface TimeoutLimits {
  /** From the request's arrival (a wait for a pooled connection included) to a connected upstream. */
  readonly connect: number;
  /** From the request fully sent to the response head. */
  readonly response: number;
  /** No byte either way on the upstream connection, while the request body is sent or the response read. */
  readonly idle: number;
}

export type TimeoutKind = 'connect-timeout' | 'response-timeout' | 'idle-timeout';

/**
 * One exchange with the upstream, from the request's arrival until its owner stops watching it. The owner
 * reports its progress in the public fields; the sweep only reads them.
 */
export class Exchange {
  /** A connection is ready and the request is being written on it. */
  connected = false;
  /** When the whole request, body included, was handed to the connection; NaN until then. */
  sentAt = Number.NaN;
  /** The response head has arrived. */
  responded = false;
  /** Bytes moved either way so far. */
  bytes = 0;
  /** The byte count at the last sweep, and since when it has not moved. */
  seenBytes = -1;
  activeAt = Number.NaN;
  /** Its index in the watching list; -1 once unwatched. */
  slot = -1;

  constructor(
    readonly limits: TimeoutLimits,
    /** Arrival time, on the sweep's clock. */
    readonly start: number,
    readonly expire: (kind: TimeoutKind) => void,
  ) {}
}

function stalled(e: Exchange, now: number): boolean {
  if (e.bytes !== e.seenBytes) {
    e.seenBytes = e.bytes;
    e.activeAt = now;
    return false;
  }
  return now - e.activeAt >= e.limits.idle;
}

/**
 * The timeout an exchange has run past at `now`, if any. Arrival and the request's end are dated when they
 * happen; a pause in the bytes is dated at the sweep that first sees it, so it can only be cut late.
 */
export function overdue(e: Exchange, now: number): TimeoutKind | undefined {
  if (!e.connected) return now - e.start >= e.limits.connect ? 'connect-timeout' : undefined;
  if (e.responded || Number.isNaN(e.sentAt)) return stalled(e, now) ? 'idle-timeout' : undefined;
  return now - e.sentAt >= e.limits.response ? 'response-timeout' : undefined;
}

/** How often to sweep for these limits: a quarter of the shortest, within 10 ms and 1 s. */
export function sweepEvery(limits: TimeoutLimits): number {
  return Math.min(1_000, Math.max(10, Math.min(limits.connect, limits.response, limits.idle) / 4));
}

/**
 * Pooled upstream connections idle this long are closed: before the 5 s keep-alive timeout of a Node
 * upstream (often 60 s elsewhere), so a reused connection is rarely one the upstream is closing.
 */
export const POOL_IDLE = 3_000;

/**
 * The exchanges watched are kept in an array, each knowing its index, not in a Set: a Set added to and deleted
 * from per request is rehashed into new tables that the dead ones still point to, so every exchange (and the
 * request it holds) outlived the young generation, tripling the time spent in GC at 64 connections.
 */
export class Timeouts {
  readonly #exchanges: Exchange[] = [];
  #timer: NodeJS.Timeout | undefined;
  #every = 0;

  constructor(private readonly clock: () => number = () => performance.now()) {}

  /** Starts watching an exchange that begins now. */
  watch(limits: TimeoutLimits, expire: (kind: TimeoutKind) => void): Exchange {
    const exchange = new Exchange(limits, this.clock(), expire);
    exchange.slot = this.#exchanges.length;
    this.#exchanges.push(exchange);
    return exchange;
  }

  /** Notes that the exchange's request is fully sent: its response timeout starts now. */
  sent(exchange: Exchange): void {
    exchange.sentAt = this.clock();
  }

  unwatch(exchange: Exchange): void {
    const slot = exchange.slot;
    if (slot === -1) return;
    exchange.slot = -1;
    // The last one fills the gap: no hole, no shifting.
    const last = this.#exchanges.pop()!;
    if (last === exchange) return;
    this.#exchanges[slot] = last;
    last.slot = slot;
  }

  get size(): number {
    return this.#exchanges.length;
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
    // A copy: an expiry may unwatch others, or watch a new exchange (a request sent again).
    for (const exchange of this.#exchanges.slice()) {
      if (exchange.slot === -1) continue;
      const kind = overdue(exchange, now);
      if (kind !== undefined) {
        this.unwatch(exchange);
        exchange.expire(kind);
      }
    }
  }
}

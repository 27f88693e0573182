import { type Dispatcher, request } from 'undici';

/** Where requests go: one upstream URL, parsed once. */
export interface Upstream {
  readonly host: string;
  readonly port: number;
  /** The upstream URL's path, prepended to every request's path ('' for none). */
  readonly base: string;
  /** `host:port`, for the Host header when the client's is not kept, and to name it in /health and metrics. */
  readonly authority: string;
  /** `http://host:port`: the connection pool it is served from. */
  readonly origin: string;
  /** `https:` upstreams are spoken to over TLS. */
  readonly tls: boolean;
}

export function upstreamOf(url: string): Upstream {
  const u = new URL(url);
  const tls = u.protocol === 'https:';
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: Number(u.port || (tls ? 443 : 80)),
    base: u.pathname.replace(/\/+$/, ''),
    authority: u.host,
    origin: u.origin,
    tls,
  };
}

/** How failing upstreams are taken out of the rotation (the configuration's `failover`). */
export interface FailoverSettings {
  /** Consecutive failures (connect errors, timeouts, resets, 5xx) that take an upstream out. */
  readonly failures: number;
  /** How long the first time; doubled each time it is taken out again without a success between. */
  readonly ejectFor: number;
  readonly maxEjectFor: number;
  readonly healthCheck?:
    | { readonly path: string; readonly interval: number; readonly timeout: number }
    | undefined;
}

/** What /health says of an upstream. */
export interface UpstreamReport {
  readonly upstream: string;
  /** up: in the rotation; ejected: out after failures, until `returnsIn`; down: its health check fails. */
  readonly state: 'up' | 'ejected' | 'down';
  readonly failures: number;
  readonly ejections: number;
  readonly returnsIn?: number;
}

/** One upstream's record: failures in a row, when it is back, how many times it was taken out in a row. */
class Health {
  failures = 0;
  /** The clock's time it returns to the rotation; 0 when in it. */
  ejectedUntil = 0;
  /** Ejections since its last success: the backoff's exponent. */
  streak = 0;
  ejections = 0;
  /** Its last active health check failed (only with `healthCheck`). */
  down = false;
  constructor(readonly upstream: Upstream) {}
}

export interface UpstreamEvents {
  ejected(upstream: Upstream, ms: number): void;
  healthChanged(upstream: Upstream, up: boolean): void;
}

/**
 * The upstreams of one configuration, and their health: a round robin over those in the rotation. An
 * upstream that fails `failures` times in a row is taken out for `ejectFor` (doubled on each ejection that
 * follows without a success, up to `maxEjectFor`), then tried again, as Envoy's outlier detection does;
 * a failing active health check takes it out until one passes. When none is in the rotation, requests
 * still go round all of them: refusing every request would be no better than trying.
 */
export class UpstreamPool {
  readonly #all: Health[];
  readonly #byUpstream = new Map<Upstream, Health>();
  #turn = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    upstreams: readonly Upstream[],
    readonly settings: FailoverSettings,
    readonly now: () => number,
    readonly events: UpstreamEvents,
  ) {
    this.#all = upstreams.map((u) => {
      const h = new Health(u);
      this.#byUpstream.set(u, h);
      return h;
    });
  }

  /** Takes over the health of the upstreams it shares with `previous` (the pool a reload replaces). */
  inherit(previous: UpstreamPool): void {
    for (const h of this.#all) {
      const u = h.upstream;
      const kept = previous.#all.find((p) => p.upstream.origin === u.origin && p.upstream.base === u.base);
      if (kept === undefined) continue;
      h.failures = kept.failures;
      h.ejectedUntil = kept.ejectedUntil;
      h.streak = kept.streak;
      h.ejections = kept.ejections;
      h.down = kept.down;
    }
  }

  get upstreams(): readonly Upstream[] {
    return this.#all.map((h) => h.upstream);
  }

  #available(h: Health, now: number): boolean {
    return !h.down && h.ejectedUntil <= now;
  }

  /** The next upstream in turn, skipping those out of the rotation and those in `tried`. */
  pick(tried?: readonly Upstream[]): Upstream | undefined {
    const all = this.#all;
    const n = all.length;
    if (n === 1) {
      const only = all[0]!.upstream;
      return tried?.includes(only) ? undefined : only;
    }
    const now = this.now();
    let fallback: Upstream | undefined;
    for (let i = 0; i < n; i++) {
      const h = all[this.#turn++ % n]!;
      if (tried?.includes(h.upstream)) continue;
      if (this.#available(h, now)) return h.upstream;
      fallback ??= h.upstream;
    }
    // None in the rotation: try one anyway, unless this request already met all of them.
    return fallback;
  }

  /** An exchange with `upstream` ended: `failed` for a connect error, timeout, reset or 5xx. */
  record(upstream: Upstream, failed: boolean): void {
    const h = this.#byUpstream.get(upstream);
    if (h === undefined) return; // of a configuration reloaded away
    if (!failed) {
      if (h.failures !== 0 || h.streak !== 0) {
        h.failures = 0;
        h.streak = 0;
      }
      return;
    }
    const now = this.now();
    // Requests already under way when it was taken out say nothing new.
    if (h.ejectedUntil > now) return;
    // Back from an ejection: one more failure takes it out again, for longer.
    if (++h.failures < this.settings.failures && h.streak === 0) return;
    const ms = Math.min(this.settings.ejectFor * 2 ** h.streak, this.settings.maxEjectFor);
    h.ejectedUntil = now + ms;
    h.streak++;
    h.ejections++;
    h.failures = 0;
    this.events.ejected(upstream, ms);
  }

  /** Each upstream's state, for /health and the metrics. */
  states(): UpstreamReport[] {
    const now = this.now();
    return this.#all.map((h) => {
      const ejected = h.ejectedUntil > now;
      return {
        upstream: h.upstream.authority + h.upstream.base,
        state: h.down ? 'down' : ejected ? 'ejected' : 'up',
        failures: h.failures,
        ejections: h.ejections,
        ...(ejected ? { returnsIn: h.ejectedUntil - now } : {}),
      };
    });
  }

  /** Starts the active health checks, if configured: GET `path` on each upstream every `interval`. */
  startChecks(dispatcher: Dispatcher): void {
    const check = this.settings.healthCheck;
    if (check === undefined || this.#timer !== undefined) return;
    const run = () => {
      for (const h of this.#all) void this.#check(h, check, dispatcher);
    };
    this.#timer = setInterval(run, check.interval);
    this.#timer.unref();
    run();
  }

  async #check(
    h: Health,
    check: NonNullable<FailoverSettings['healthCheck']>,
    dispatcher: Dispatcher,
  ): Promise<void> {
    let up: boolean;
    try {
      const res = await request(`${h.upstream.origin}${h.upstream.base}${check.path}`, {
        dispatcher,
        headersTimeout: check.timeout,
        bodyTimeout: check.timeout,
        signal: AbortSignal.timeout(check.timeout),
      });
      await res.body.dump();
      up = res.statusCode >= 200 && res.statusCode < 400;
    } catch {
      up = false;
    }
    // Stopped meanwhile (a reload, a stop), or no change.
    if (this.#timer === undefined || up === !h.down) return;
    h.down = !up;
    if (up) {
      // A passing check is a success: the passive record starts again.
      h.failures = 0;
      h.streak = 0;
      h.ejectedUntil = 0;
    }
    this.events.healthChanged(h.upstream, up);
  }

  stopChecks(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

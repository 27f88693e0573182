import type { Decision } from '../core/decision.js';
import { describe, FloodgateError } from '../core/errors.js';
import { groupIp } from '../core/ip.js';
import { andThen, attempt, type MaybePromise, promised } from '../core/maybe.js';
import type { Limiter } from '../limiter/limiter.js';
import type { Permit, Priority, Shedder } from '../limiter/shedder.js';
import { type HeaderList, rateLimitHeaders } from './headers.js';
import { byIp } from './keys.js';
import { type HttpLimitOptions, type ResolvedHttpOptions, resolveHttpOptions } from './options.js';
import { type HttpResponse, limited, problem, unavailable } from './problem.js';
import type { RequestView } from './request.js';
import { ResolvedCache } from './resolved-cache.js';

/** What an adapter does with a request. */
export type Verdict =
  | {
      readonly kind: 'pass';
      readonly headers: HeaderList;
      /** The limiter's decision, for the handler (`req.rateLimit`...); none when nothing was decided (skipped, allowed by a list). */
      readonly decision?: Decision;
      /**
       * Call once the response has ended, with its status, or with undefined when the client never got one
       * (it hung up first): charges back what does not count, releases slots and leases.
       */
      readonly settle?: (status: number | undefined) => void;
      /**
       * Call when the exchange became a long-lived connection (a WebSocket's 101): the server's own slot
       * is given back then, as the work it measures is done; per-client limits hold until `settle`.
       */
      readonly switched?: () => void;
    }
  | ({
      readonly kind: 'respond';
      readonly reason?: 'shed';
      /** A refusal by the limits: the identifier refused, and by which policy and why (for logs). */
      readonly refused?: { readonly key: string; readonly policy: string; readonly reason: string };
    } & HttpResponse);

const PASS: Verdict = { kind: 'pass', headers: [] };

/** The problem type the RateLimit header fields draft registers for a server short of capacity. */
export const TEMPORARY_REDUCED_CAPACITY =
  'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity';

/**
 * A verdict that holds a shedder's slot: a refusal frees it at once; a request that goes on frees it when its
 * response ends (a server error, or one past the latency objective, tells the shedder of overload).
 */
function holding(verdict: Verdict, permit: Permit): Verdict {
  if (verdict.kind === 'respond') {
    permit.release('ignore');
    return verdict;
  }
  const inner = verdict.settle;
  let held = true;
  const release = (outcome: 'ok' | 'dropped' | 'ignore') => {
    if (!held) return;
    held = false;
    permit.release(outcome);
  };
  return {
    ...verdict,
    settle: (status) => {
      // A request that did not complete says nothing of the server's latency (Netflix's "ignore").
      release(status === undefined ? 'ignore' : status >= 500 ? 'dropped' : 'ok');
      inner?.(status);
    },
    switched: () => release('ok'),
  };
}

/**
 * Thrown on each request of a runtime without client addresses when the limit is by IP: limiting the
 * whole world as one client would be silent, and wrong.
 */
function noClientAddress(): FloodgateError {
  return new FloodgateError(
    'ERR_FLOODGATE_NO_CLIENT_ADDRESS',
    'floodgate: this runtime gives no client address (Bun, Deno, Workers, app.request), so the limit by IP ' +
      "cannot tell clients apart; give the middleware an `address` function (e.g. from Hono's getConnInfo) " +
      'or a `key`, with onMissingKey "skip" or "reject" for requests without one',
  );
}

function respond(response: HttpResponse): Verdict {
  return { kind: 'respond', ...response };
}

/** A client's address as lists match it, and the identifier its rate key is made of (IPv6 grouped). */
interface ClientAddress {
  readonly address: string;
  readonly grouped: string;
}

/**
 * The framework-independent half of every HTTP adapter: from a request to a verdict. Options are checked
 * once, when the middleware is created (`resolveHttpOptions`).
 */
export class HttpGuard<Req> {
  /** None when the guard only sheds. */
  readonly limiter: Limiter | undefined;
  readonly #o: ResolvedHttpOptions<Req>;
  readonly #ips = new ResolvedCache<ClientAddress>();
  readonly #fallbackKey = byIp();
  /** Until it has warned once: forwarding headers from a peer nobody trusts (a proxy nobody told us of?). */
  #warnForwarded: boolean;

  constructor(options: HttpLimitOptions<Req>) {
    const o = resolveHttpOptions(options);
    this.#o = o;
    const limiter = o.limiter;
    this.limiter = limiter;
    this.#warnForwarded = !o.trustsProxies;
  }

  /** The shedder of `shed`, for the admin handler's dashboard (`adminHandler({ shedder: guard.shedder })`). */
  get shedder(): Shedder | undefined {
    return this.#o.shedder;
  }

  /** Decides what to do with a request. Never rejects for a malformed request; rejects only if a callback throws. */
  check(request: Req, view: RequestView): Promise<Verdict> {
    return promised(() => this.decide(request, view));
  }

  /**
   * The pipeline, written once: skip hook, client address and lists, key, cost, the limiter, the verdict.
   * Each step waits only for what is promised: with a memory store, no `skip` hook, a key extractor and a
   * fixed cost, nothing is, and the verdict comes back at once. Throws (or rejects) only if a callback throws.
   */
  decide(request: Req, view: RequestView): MaybePromise<Verdict> {
    const o = this.#o;
    return andThen(o.skip === undefined ? false : o.skip(request), (skipped) => {
      if (skipped) return PASS;
      const shedder = o.shedder;
      if (shedder === undefined) return this.#limit(request, view);
      return andThen(o.priority === undefined ? 'default' : o.priority(request), (priority) => {
        // The server's own capacity first: a shed request costs no store call and no client's quota.
        const permit = shedder.acquire(priority as Priority);
        if (permit === undefined) return this.#shed(shedder);
        return attempt(
          () => this.#limit(request, view),
          (verdict) => holding(verdict, permit),
          (error) => {
            permit.release('ignore');
            throw error;
          },
        );
      });
    });
  }

  /** The per-client limits: client address and lists, key, cost, the limiter, the verdict. */
  #limit(request: Req, view: RequestView): MaybePromise<Verdict> {
    const o = this.#o;
    // Shedding alone: past the shedder, only the lists have anything to say.
    if (o.limiter === undefined && o.allow.empty && o.deny.empty) return PASS;
    const client = this.#clientIp(view);
    // Address lists that cannot be checked would be skipped in silence.
    if (client.address === '' && view.peer === undefined && this.#o.listsAddresses) throw noClientAddress();
    const listed = this.#byAddress(client.address);
    if (listed !== undefined) return listed;
    const ip = client.grouped;
    const key = o.key;
    return andThen(typeof key === 'function' ? key(request) : key.extract(view, ip), (extracted) => {
      const counted = this.#keyOf(request, view, ip, extracted);
      if (typeof counted !== 'string') return counted;
      if (typeof o.cost !== 'function') return this.#consume(request, counted, o.cost);
      return andThen(o.cost(request), (cost) =>
        // A cost that is not one is a bug or an attack, never an outage: it must not reach the store's policy.
        Number.isSafeInteger(cost) && cost >= 0
          ? this.#consume(request, counted, cost)
          : this.#invalid(request, 'cost', 'a non-negative integer', cost),
      );
    });
  }

  #consume(request: Req, key: string, cost: number | undefined): MaybePromise<Verdict> {
    const limiter = this.limiter;
    if (limiter === undefined) return PASS;
    return attempt(
      // Without a promise when the store answers at once (memory, or a Redis quota lease).
      () => limiter.decide(key, cost === undefined ? undefined : { cost }),
      (decision) => this.#verdict(request, key, cost, decision),
      (error) => this.#storeFailed(request, error),
    );
  }

  /**
   * 400: a function of the request gave a cost or key that is not one. The request is refused (a bad value
   * never admits) and `onError` hears of it, so an application's own bug is loud.
   */
  #invalid(request: Req, what: 'cost' | 'key', expected: string, got: unknown): Verdict {
    this.limiter?.traffic?.refused('rejected');
    this.#o.onError?.(
      new FloodgateError(
        'ERR_FLOODGATE_INVALID_REQUEST_VALUE',
        `floodgate: the request's ${what} must be ${expected}; got ${describe(got)}`,
      ),
      request,
    );
    return respond(problem(400, 'Bad Request', `This request's rate-limit ${what} is not valid.`));
  }

  /** 503: the server is at capacity (the RateLimit header draft's problem type for it). */
  #shed(shedder: Shedder): Verdict {
    this.limiter?.traffic?.refused('shed');
    const seconds = Math.max(1, Math.ceil(shedder.retryAfter / 1000));
    return {
      kind: 'respond',
      reason: 'shed',
      ...problem(
        503,
        'Service Unavailable',
        `The server is at capacity. Wait ${seconds} second${seconds === 1 ? '' : 's'} before trying again.`,
        { type: TEMPORARY_REDUCED_CAPACITY, retryAfter: seconds },
        [['Retry-After', String(seconds)]],
      ),
    };
  }

  /** The allow and deny lists' answer for a client address, if they have one. */
  #byAddress(ip: string): Verdict | undefined {
    // Deny first: "always refused" holds even for an address inside an allowed block.
    if (!this.#o.deny.empty && this.#o.deny.addresses.has(ip)) return this.#forbidden();
    if (!this.#o.allow.empty && this.#o.allow.addresses.has(ip)) return PASS;
    return undefined;
  }

  /** The key to count under, or the verdict for a request without one, or for a listed key. */
  #keyOf(request: Req, view: RequestView, ip: string, extracted: unknown): string | Verdict {
    let key: string | undefined;
    if (typeof extracted === 'string' || extracted === undefined) key = extracted;
    else if (typeof extracted === 'number' && Number.isFinite(extracted)) key = String(extracted);
    else return this.#invalid(request, 'key', 'a string, or undefined for none', extracted);
    if (key === undefined || key === '') {
      const missing = this.#o.onMissingKey;
      if (missing === 'skip') return PASS;
      if (missing === 'reject') {
        const extractor = this.#o.key;
        const what = typeof extractor === 'function' ? 'rate-limit key' : extractor.describes;
        this.limiter?.traffic?.refused('rejected');
        return respond(problem(400, 'Bad Request', `This request carries no ${what}.`));
      }
      if (ip === '' && view.peer === undefined) throw noClientAddress();
      // A peer whose socket is already gone: nobody will read the answer, so one shared key does no harm.
      key = this.#fallbackKey.extract(view, ip) ?? 'ip:unknown';
    }
    if (!this.#o.deny.empty && this.#o.deny.keys.has(key)) return this.#forbidden();
    if (!this.#o.allow.empty && this.#o.allow.keys.has(key)) return PASS;
    return key;
  }

  /** The store rejected: `passOnStoreError` decides (true lets the request through). */
  #storeFailed(request: Req, error: unknown): Verdict {
    this.#o.onError?.(error, request);
    return this.#o.passOnStoreError ? PASS : respond(unavailable(1));
  }

  #verdict(request: Req, key: string, cost: number | undefined, decision: Decision): Verdict {
    const o = this.#o;
    o.onDecision?.({ request, key, decision });
    const headers = rateLimitHeaders(decision, o.clock.now(), o.headers, o.legacyHeaders);
    if (!decision.allowed) {
      // The store's outage policy refused: the server cannot limit now, which is not the client's doing.
      if (decision.reason === 'store-closed')
        return respond(unavailable(Math.max(1, Math.ceil(decision.retryAfter / 1000))));
      const custom = o.onLimited?.(request, decision);
      if (custom !== undefined)
        return { kind: 'respond', ...custom, headers: [...headers, ...custom.headers] };
      return {
        kind: 'respond',
        ...limited(decision, headers),
        refused: { key, policy: decision.policy, reason: decision.reason ?? 'limit' },
      };
    }
    const settle = this.#settler(request, key, decision, cost);
    return settle === undefined
      ? { kind: 'pass', headers, decision }
      : { kind: 'pass', headers, decision, settle };
  }

  /** The client's address and its group: resolved once per peer (and forwarded chain), not per request. */
  #clientIp(view: RequestView): ClientAddress {
    if (this.#warnForwarded && view.forwardedResolved !== true) this.#untrustedForwarding(view);
    const forwarded = this.#o.trustsProxies ? view.header('x-forwarded-for') : undefined;
    const peer = view.peer ?? '';
    const seen = forwarded === undefined ? peer : `${peer}\n${forwarded}`;
    let client = this.#ips.get(seen);
    if (client === undefined) {
      const address = this.#o.clientIp(view.peer, forwarded);
      client = { address, grouped: groupIp(address, this.#o.ipv6Prefix) };
      this.#ips.set(seen, client);
    }
    return client;
  }

  /**
   * Behind a load balancer that nobody declared, every client has the balancer's address and shares one
   * budget: said once, loudly, as a process warning (forwarding headers stay ignored: trusting them
   * unasked would let any client spoof its address).
   */
  #untrustedForwarding(view: RequestView): void {
    const header = view.header('x-forwarded-for') !== undefined ? 'X-Forwarded-For' : 'Forwarded';
    if (header === 'Forwarded' && view.header('forwarded') === undefined) return;
    this.#warnForwarded = false;
    // Not every runtime of the Hono adapter has a `process`.
    const warn = globalThis.process?.emitWarning?.bind(globalThis.process);
    const message =
      `a request from ${view.peer || 'an unknown peer'} carries ${header}, but no proxy is trusted, so it is ` +
      'ignored and clients are told apart by the socket address. Behind a proxy or load balancer, set ' +
      'trustProxy (or Express\'s "trust proxy"); otherwise every client shares the proxy\'s budget.';
    if (warn === undefined) console.warn(`FloodgateWarning: ${message}`);
    else warn(message, { type: 'FloodgateWarning', code: 'FLOODGATE_UNTRUSTED_FORWARDING' });
  }

  #forbidden(): Verdict {
    return respond(problem(403, 'Forbidden', 'This client is not allowed.'));
  }

  #settler(
    request: Req,
    key: string,
    decision: Decision,
    cost: number | undefined,
  ): ((status: number | undefined) => void) | undefined {
    const lease = decision.leaseId;
    const { countOnly, isFailure, onError } = this.#o;
    if (countOnly === undefined && lease === undefined) return undefined;
    let settled = false;
    return (status) => {
      if (settled) return;
      settled = true;
      // After the response: nobody awaits these, so a failure is reported, never thrown (a throw here would
      // be uncaught, and end the process).
      const report = (error: unknown) => {
        try {
          onError?.(error, request);
        } catch {}
      };
      const limiter = this.limiter!; // a decision was made, so there is a limiter
      if (lease !== undefined) limiter.release(key, lease).catch(report);
      if (countOnly === undefined) return;
      let failed: boolean;
      try {
        // An answer that never reached the client is no success (a login guess whose client hung up counts).
        failed = status === undefined || isFailure(status) === true;
      } catch (error) {
        report(error);
        failed = true; // kept counted: a broken isFailure never refunds
      }
      if ((countOnly === 'failed') !== failed) limiter.refund(key, cost).catch(report);
    };
  }
}

import type { Decision } from '../core/decision.js';
import { invalidOption, knownKeys } from '../core/errors.js';
import { clientKeyOf } from '../core/ip.js';
import { hashKey } from '../core/keys.js';
import { type PolicySpec, resolvePolicies } from '../core/policy.js';
import type { Store } from '../stores/store.js';
import { Limiter, refuseConcurrent } from './limiter.js';

export interface LoginGuardOptions {
  /** Failed attempts per user name and IP. Default: 5 per 15 min, then 20 per day (blocks grow longer). */
  readonly perUserAndIp?: PolicySpec | readonly PolicySpec[];
  /** Failed attempts per IP, whatever the user name (credential stuffing). Default: 100 per day. */
  readonly perIp?: PolicySpec | readonly PolicySpec[];
  readonly store?: Store;
  /** IPv6 clients count per block of this prefix length, as the HTTP adapters' `byIp()`. Default 64. */
  readonly ipv6Prefix?: number;
}

/**
 * One login attempt, already charged. Verify the password only when `allowed`; then call `succeeded()`
 * if it was right. An attempt never told it succeeded stays counted as a failure.
 */
export interface LoginAttempt {
  readonly allowed: boolean;
  /** Milliseconds to wait when blocked; 0 when allowed. */
  readonly retryAfter: number;
  /** The decision that blocks, or the per-user one. */
  readonly decision: Decision;
  /** The password was right: the attempt is given back and the user's failures from this IP are cleared. */
  succeeded(): Promise<void>;
}

/**
 * Brute-force protection for a login endpoint: failed attempts count, per user name + IP and per IP; a
 * success clears the user's count. Several windows make blocks progressive: after 5 failures a user
 * waits out the 15 minutes, and after 20 in a day, the day.
 *
 * Each attempt is charged before the password is checked and given back when it was right. Checking
 * first and counting the failure afterwards would let a burst of parallel guesses all pass the check
 * before the first failure is counted; charged first, at most the limit are ever verified.
 *
 *     const attempt = await guard.attempt(user, ip);
 *     if (!attempt.allowed) return reply429(attempt.retryAfter);
 *     if (await verify(user, password)) await attempt.succeeded();
 */
/** Why a login's limiters take no concurrency policy: nothing would ever give its slot back. */
const SLOTLESS = 'an attempt is counted by its outcome and never holds a slot, which nothing would give back';

export class LoginGuard {
  readonly #user: Limiter;
  readonly #ip: Limiter;
  readonly #prefix: number;

  /** The two limiters, for the admin API: per user and address, and per address. */
  get limiters(): { readonly perUserAndIp: Limiter; readonly perIp: Limiter } {
    return { perUserAndIp: this.#user, perIp: this.#ip };
  }

  constructor(options: LoginGuardOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('LoginGuard options', 'an object', options, 'type');
    }
    knownKeys(options, ['perUserAndIp', 'perIp', 'store', 'ipv6Prefix']);
    const prefix = options.ipv6Prefix ?? 64;
    if (!Number.isInteger(prefix) || prefix < 1 || prefix > 128) {
      throw invalidOption('ipv6Prefix', 'an integer from 1 to 128', prefix);
    }
    this.#prefix = prefix;
    const store = options.store === undefined ? {} : { store: options.store };
    const perUserAndIp = options.perUserAndIp ?? [
      { name: 'login-15m', algorithm: 'fixed-window', limit: 5, window: '15m' },
      { name: 'login-1d', algorithm: 'fixed-window', limit: 20, window: '1d' },
    ];
    const perIp = options.perIp ?? {
      name: 'login-ip-1d',
      algorithm: 'fixed-window',
      limit: 100,
      window: '1d',
    };
    // Validated here first, so an error names this guard's option rather than the Limiter's "policies".
    refuseConcurrent(resolvePolicies(perUserAndIp, 'perUserAndIp'), 'perUserAndIp', SLOTLESS, perUserAndIp);
    refuseConcurrent(resolvePolicies(perIp, 'perIp'), 'perIp', SLOTLESS, perIp);
    this.#user = new Limiter({ ...store, policies: perUserAndIp, traffic: true });
    this.#ip = new Limiter({ ...store, policies: perIp, traffic: true });
    // Nor may an override set later (the admin API's) bring one in.
    this.#user.refuseConcurrency(SLOTLESS);
    this.#ip.refuseConcurrency(SLOTLESS);
  }

  /**
   * Charges one attempt for `user` from `ip`, or says how long they are blocked (charging nothing). `ip` is
   * the client's address (any notation: IPv4-mapped folds to IPv4, IPv6 counts per `ipv6Prefix` block);
   * `user` is the account as your database resolves it (its id or stored name), so names it compares
   * loosely (`JOHN_DOE`, `john_doe `) share one count.
   */
  async attempt(user: string, address: string): Promise<LoginAttempt> {
    if (typeof user !== 'string') throw invalidOption('user', 'a string', user, 'type');
    // One /64 is one client here too, as everywhere the library keys by IP; what is not an address is one
    // unknown client, as in the HTTP adapters (never a budget per made-up string).
    const ip = clientKeyOf(typeof address === 'string' ? address : undefined, this.#prefix) || 'unknown';
    // User names are credentials: hashed before they become keys. The length keeps user and ip apart.
    const userKey = hashKey(`${user.length}:${user}\u0000${ip}`, 'login:');
    const ipKey = `login-ip:${ip}`;
    const byUser = await this.#user.consume(userKey);
    if (!byUser.allowed) return blocked(byUser);
    const byIp = await this.#ip.consume(ipKey);
    if (!byIp.allowed) {
      // Given back if the store can; if it cannot, the attempt stays counted, which errs towards refusing.
      await this.#user.refund(userKey).catch(() => {});
      return blocked(byIp);
    }
    return {
      allowed: true,
      retryAfter: 0,
      decision: byUser,
      // A store that cannot take the give-back now must not fail a login that was right: the failures then
      // stay counted until their window ends (towards refusing, never admitting).
      succeeded: async () => {
        await Promise.allSettled([this.#user.reset(userKey), this.#ip.refund(ipKey)]);
      },
    };
  }
}

function blocked(decision: Decision): LoginAttempt {
  return { allowed: false, retryAfter: decision.retryAfter, decision, succeeded: async () => {} };
}

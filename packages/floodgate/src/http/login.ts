import type { Decision } from '../core/decision.js';
import { invalidOption } from '../core/errors.js';
import { hashKey } from '../core/keys.js';
import { Limiter } from '../core/limiter.js';
import type { PolicySpec } from '../core/policy.js';
import type { Store } from '../stores/store.js';

export interface LoginGuardOptions {
  /** Failed attempts per user name and IP. Default: 5 per 15 min, then 20 per day (blocks grow longer). */
  readonly perUserAndIp?: PolicySpec | readonly PolicySpec[];
  /** Failed attempts per IP, whatever the user name (credential stuffing). Default: 100 per day. */
  readonly perIp?: PolicySpec | readonly PolicySpec[];
  readonly store?: Store;
}

export interface LoginCheck {
  readonly allowed: boolean;
  /** Milliseconds to wait when blocked. */
  readonly retryAfter: number;
  /** The decision that blocks (the one with the longest wait), or the per-user one. */
  readonly decision: Decision;
}

/**
 * Brute-force protection for a login endpoint: only failed attempts count, per user name + IP and per IP;
 * a success clears the user's count. Several windows make blocks progressive: after 5 failures a user
 * waits out the 15 minutes, and after 20 in a day, the day.
 *
 *     const check = await guard.check(user, ip);
 *     if (!check.allowed) return reply429(check.retryAfter);
 *     if (await verify(user, password)) await guard.succeeded(user, ip); else await guard.failed(user, ip);
 */
export class LoginGuard {
  readonly #user: Limiter;
  readonly #ip: Limiter;

  constructor(options: LoginGuardOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('LoginGuard options', 'an object', options, 'type');
    }
    const store = options.store === undefined ? {} : { store: options.store };
    this.#user = new Limiter({
      ...store,
      policies: options.perUserAndIp ?? [
        { name: 'login-15m', algorithm: 'fixed-window', limit: 5, window: '15m' },
        { name: 'login-1d', algorithm: 'fixed-window', limit: 20, window: '1d' },
      ],
    });
    this.#ip = new Limiter({
      ...store,
      policies: options.perIp ?? { name: 'login-ip-1d', algorithm: 'fixed-window', limit: 100, window: '1d' },
    });
  }

  #keys(user: string, ip: string): [string, string] {
    // User names are credentials: hashed before they become keys.
    return [hashKey(`${user}\u0000${ip}`, 'login:'), `login-ip:${ip}`];
  }

  /** Whether another attempt may be made now; charges nothing. */
  async check(user: string, ip: string): Promise<LoginCheck> {
    const [userKey, ipKey] = this.#keys(user, ip);
    const [u, i] = await Promise.all([this.#user.peek(userKey), this.#ip.peek(ipKey)]);
    const blocking = [u, i].filter((d) => !d.allowed).sort((a, b) => b.retryAfter - a.retryAfter)[0];
    return blocking === undefined
      ? { allowed: true, retryAfter: 0, decision: u }
      : { allowed: false, retryAfter: blocking.retryAfter, decision: blocking };
  }

  /** Counts a failed attempt. */
  async failed(user: string, ip: string): Promise<void> {
    const [userKey, ipKey] = this.#keys(user, ip);
    await Promise.all([this.#user.consume(userKey), this.#ip.consume(ipKey)]);
  }

  /** A successful login clears the user's failures from this IP. */
  async succeeded(user: string, ip: string): Promise<void> {
    await this.#user.reset(this.#keys(user, ip)[0]);
  }
}

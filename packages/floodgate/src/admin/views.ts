import type { Decision } from '../core/decision.js';
import type { Limiter } from '../limiter/limiter.js';
import type { Shedder } from '../limiter/shedder.js';
import { displayClient } from '../observe/client.js';
import type { HeavyHitter } from '../observe/space-saving.js';
import { suggestLimits } from '../observe/suggest.js';
import type { TopClients, TrafficWindow } from '../observe/traffic.js';
import type { Fleet } from './fleet.js';

/** Turns an identifier into what an operator reads: its display, and the identifier to act on. */
export type Labels = ((key: string) => string | undefined) | undefined;

/** A heavy hitter as the API answers it: the identifier (to act on), its display, and its bounds. */
function client(h: HeavyHitter, labels: Labels) {
  return { key: h.key, ...displayClient(h.key, labels), count: h.count, error: h.error };
}

/** The heavy hitters with each client's display; the identifiers are digests wherever a credential was. */
export function topView(top: TopClients, n: number, labels: Labels) {
  const side = (s: TopClients['requests']) => ({
    total: s.total,
    bound: s.bound,
    clients: s.clients.slice(0, n).map((h) => client(h, labels)),
  });
  return {
    window: top.window,
    since: top.since,
    distinct: top.distinct,
    requests: side(top.requests),
    refusals: side(top.refusals),
  };
}

/** A limiter's configuration as plain data (policies, overrides), and whether it keeps traffic. */
export function limiterView(name: string, limiter: Limiter) {
  const config = limiter.config();
  return {
    name,
    policies: config.policies,
    overrides: config.overrides ?? {},
    traffic: limiter.traffic !== undefined,
  };
}

/** The override of one identifier, or null: only its own, never a name of Object's ("constructor"). */
export function overrideOf(limiter: Limiter, key: string) {
  const overrides = limiter.config().overrides ?? {};
  return Object.hasOwn(overrides, key) ? overrides[key]! : null;
}

/** The per-minute rates of one policy set: what the dashboard compares suggested limits with. */
export function policyRates(limiter: Limiter) {
  return limiter.policiesFor('').map((p) => ({
    name: p.name,
    algorithm: p.algorithm,
    limit: p.limit,
    window: p.window,
    perMinute: p.algorithm === 'concurrency' ? null : Math.round((p.limit * 60_000 * 100) / p.window) / 100,
  }));
}

/** One identifier's state in the store, by policy, as `peek` sees it (nothing is charged). */
export function stateView(key: string, limiter: Limiter, decision: Decision, labels: Labels, now: number) {
  const traffic = limiter.traffic?.top('15m', Number.MAX_SAFE_INTEGER);
  const find = (side: TopClients['requests'] | undefined) => side?.clients.find((h) => h.key === key);
  return {
    key,
    ...displayClient(key, labels),
    allowed: decision.allowed,
    policies: decision.policies.map((p) => ({
      policy: p.policy,
      algorithm: p.algorithm,
      limit: p.limit,
      remaining: p.remaining,
      allowed: p.allowed,
      resetAfter: p.resetAfter,
      retryAfter: Number.isFinite(p.retryAfter) ? p.retryAfter : null,
    })),
    override: overrideOf(limiter, key),
    last15m: {
      requests: find(traffic?.requests)?.count ?? null,
      refusals: find(traffic?.refusals)?.count ?? null,
    },
    at: now,
  };
}

/** What the dashboard shows of one limiter: its series, its heavy hitters, a suggested limit. */
export function dashboardView(name: string, limiter: Limiter, seconds: number, labels: Labels, now: number) {
  const traffic = limiter.traffic;
  if (traffic === undefined) return { ...limiterView(name, limiter), rates: policyRates(limiter) };
  const minute = traffic.top('1m', Number.MAX_SAFE_INTEGER);
  const quarter = traffic.top('15m', Number.MAX_SAFE_INTEGER);
  return {
    ...limiterView(name, limiter),
    rates: policyRates(limiter),
    series: traffic.points(seconds),
    top: topView(minute, 10, labels),
    top15m: topView(quarter, 10, labels),
    suggestion: suggestLimits(quarter, now),
  };
}

/** The shedder's limit against what is in flight. */
export function shedderView(shedder: Shedder | undefined) {
  if (shedder === undefined) return null;
  return {
    limit: shedder.limit,
    inflight: shedder.inflight,
    baseline: shedder.baseline ?? null,
    overloaded: shedder.overloaded,
    ...shedder.stats,
  };
}

export function isWindow(value: string | null): value is TrafficWindow {
  return value === '1m' || value === '15m';
}

/** The fleet's merged heavy hitters per limiter, with each client's display. */
export async function fleetView(fleet: Fleet, window: TrafficWindow, n: number, labels: Labels) {
  const v = await fleet.view(window, n);
  return {
    now: v.now,
    processes: v.processes,
    limiters: v.limiters.map((l) => ({
      name: l.name,
      processes: l.processes,
      top: topView(l.top, n, labels),
    })),
  };
}

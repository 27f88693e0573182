import type { Limiter } from '../limiter/limiter.js';
import { type Answer, badRequest, notFound } from './answer.js';
import type { ReadContext } from './reads.js';
import { dashboardView, fleetView, isWindow, shedderView, topView } from './views.js';

// The reads of what the limiters' traffic recorded: the dashboard's poll, the fleet's merge, a limiter's
// busiest clients and its per-second series.

/** `GET /api/dashboard?seconds=`: every limiter's series and busiest clients, the shedder, the stores. */
export function dashboardRead(query: URLSearchParams, context: ReadContext): Answer {
  const { now, found, sampler, shedderOf, labels } = context;
  const seconds = Math.min(900, Math.max(10, Number(query.get('seconds') ?? 300) || 300));
  sampler.sample(now, shedderOf(), found);
  const shedder = shedderView(shedderOf());
  return {
    status: 200,
    body: {
      now,
      limiters: [...found].map(([n, l]) => dashboardView(n, l, seconds, labels, now)),
      shedder: shedder && { ...shedder, series: sampler.shedderSeries(now, seconds) },
      stores: sampler.storesView(now, seconds, found),
    },
  };
}

/** `GET /api/fleet?window=&n=`: the busiest clients over every process sharing the store. */
export function fleetRead(query: URLSearchParams, context: ReadContext): Answer | Promise<Answer> {
  const window = query.get('window') ?? '1m';
  if (!isWindow(window)) return badRequest('window must be 1m or 15m');
  if (context.fleet === undefined) return notFound('fleet: this handler was given none');
  const n = Math.min(1000, Math.max(1, Number(query.get('n') ?? 10) || 10));
  return fleetView(context.fleet, window, n, context.labels).then((body) => ({ status: 200, body }));
}

/** `GET /api/limiters/NAME/top?window=&n=`: one limiter's busiest and most refused clients. */
export function topRead(limiter: Limiter, query: URLSearchParams, context: ReadContext): Answer {
  const window = query.get('window') ?? '1m';
  if (!isWindow(window)) return badRequest('window must be 1m or 15m');
  const n = Math.min(1000, Math.max(1, Number(query.get('n') ?? 10) || 10));
  if (limiter.traffic === undefined) return notFound('traffic: the limiter was made with traffic: false');
  return { status: 200, body: topView(limiter.traffic.top(window, n), n, context.labels) };
}

/** `GET /api/limiters/NAME/series?seconds=`: one limiter's outcomes, second by second. */
export function seriesRead(limiter: Limiter, query: URLSearchParams): Answer {
  const seconds = Math.min(900, Math.max(1, Number(query.get('seconds') ?? 900) || 900));
  if (limiter.traffic === undefined) return notFound('traffic: the limiter was made with traffic: false');
  return { status: 200, body: { seconds, points: limiter.traffic.points(seconds) } };
}

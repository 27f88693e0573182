import type { Limiter } from '../limiter/limiter.js';
import type { Shedder } from '../limiter/shedder.js';
import { type Answer, badRequest, notFound, unbound } from './answer.js';
import type { Fleet } from './fleet.js';
import type { Sampler } from './sampler.js';
import { dashboardRead, fleetRead, seriesRead, topRead } from './traffic-reads.js';
import { limiterView, shedderView, stateView } from './views.js';

/** What a read is answered from: the limiters as they are at this request, and the handler's own parts. */
export interface ReadContext {
  readonly now: number;
  readonly found: Map<string, Limiter>;
  readonly sampler: Sampler;
  readonly shedderOf: () => Shedder | undefined;
  readonly labels: ((key: string) => string | undefined) | undefined;
  readonly fleet: Fleet | undefined;
}

/** The reads of the admin API (`GET`/`HEAD /api/...`), by the path's segments below `api`. */
export function read(
  segments: readonly string[],
  query: URLSearchParams,
  context: ReadContext,
): Answer | Promise<Answer> {
  const { found } = context;
  if (segments.length === 0)
    return {
      status: 200,
      body: {
        limiters: [...found].map(([n, l]) => limiterView(n, l)),
        shedder: shedderView(context.shedderOf()),
      },
    };
  if (segments[0] === 'dashboard' && segments.length === 1) return dashboardRead(query, context);
  if (segments[0] === 'fleet' && segments.length === 1) return fleetRead(query, context);
  if (segments[0] !== 'limiters' || segments.length < 2) return notFound('such endpoint');
  const name = segments[1]!;
  const limiter = found.get(name);
  if (limiter === undefined) return notFound(`limiter named ${JSON.stringify(name)}`);
  const what = segments[2];
  if (what === undefined) return { status: 200, body: limiterView(name, limiter) };
  if (what === 'top' && segments.length === 3) return topRead(limiter, query, context);
  if (what === 'series' && segments.length === 3) return seriesRead(limiter, query);
  if (what === 'clients' && segments.length === 4) return clientRead(limiter, segments[3]!, context);
  return notFound('such endpoint');
}

/** `GET /api/limiters/NAME/clients/KEY`: one client's state in the store, without spending anything. */
function clientRead(limiter: Limiter, stored: string, context: ReadContext): Answer | Promise<Answer> {
  const key = unbound(stored);
  if (key === undefined)
    return badRequest('a long identifier (~#) is known only by its digest; ask by its full value');
  return limiter
    .peek(key)
    .then((d) => ({ status: 200, body: stateView(stored, limiter, d, context.labels, context.now) }));
}

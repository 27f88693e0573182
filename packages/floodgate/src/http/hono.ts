import type { Decision } from '../core/decision.js';
import { invalidOption } from '../core/errors.js';
import { normalizeIp } from '../core/ip.js';
import { HttpGuard } from './guard.js';
import type { HeaderList } from './headers.js';
import { type NodeResponseLike, setNodeHeaders, settleWhenDone } from './node-common.js';
import type { HttpLimitOptions } from './options.js';
import type { HttpResponse } from './problem.js';
import type { RequestView } from './request.js';

/** The parts of a Hono context the middleware uses. */
export interface HonoContextLike {
  readonly req: { readonly method: string; readonly path: string; header(name: string): string | undefined };
  readonly env?: unknown;
  readonly res: { readonly status: number; readonly headers: { get(name: string): string | null } };
  header(name: string, value: string): void;
  body(data: string, status: never, headers?: Record<string, string>): Response;
}

/** Hono's variables once the limiter let the request on: `new Hono<{ Variables: RateLimitVariables }>()` types `c.get('rateLimit')`. */
export interface RateLimitVariables {
  rateLimit?: Decision;
}

export interface HonoLimitOptions<C> extends HttpLimitOptions<C> {
  /**
   * The client's socket address. Default: the Node adapter's (`@hono/node-server`) socket. On runtimes
   * without one, return it from the platform (e.g. Deno's `info.remoteAddr`), or key on something else.
   */
  readonly address?: (c: C) => string | undefined;
}

export type HonoRateLimit<C> = ((c: C, next: () => Promise<void>) => Promise<Response | undefined>) & {
  readonly limiter: HttpGuard<C>['limiter'];
};

/**
 * The peer under `@hono/node-server`: '' when its socket is already gone; undefined on a runtime without
 * one (Bun, Deno, Workers, `app.request`), where only an `address` option can say who the client is.
 */
function nodeSocketAddress(c: HonoContextLike): string | undefined {
  const incoming = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming;
  return incoming === undefined ? undefined : (incoming.socket?.remoteAddress ?? '');
}

/**
 * What an `address` function answered, as a peer: anything but an address (undefined, '', a number, a
 * promise) is no address at all, so a limit by IP says so instead of making everyone one client.
 */
function given(address: unknown): string | undefined {
  return typeof address === 'string' && normalizeIp(address) !== '' ? address : undefined;
}

/** The Node response under `@hono/node-server`, when there is one. */
function nodeResponse(c: HonoContextLike): NodeResponseLike | undefined {
  const outgoing = (c.env as { outgoing?: Partial<NodeResponseLike> } | undefined)?.outgoing;
  return typeof outgoing?.setHeader === 'function' ? (outgoing as NodeResponseLike) : undefined;
}

/**
 * A response of the middleware's own (a 429...) under `@hono/node-server`: its fields go on the Node
 * response, as an allowed request's do, and Hono is given only the body and its Content-Type. Given them
 * all, Hono builds a Web `Headers` object field by field, which the server then converts back, on every
 * refused request: the cost of a refusal, where a flood is refused.
 */
function refuseOnNode<C extends HonoContextLike>(
  c: C,
  outgoing: NodeResponseLike,
  response: HttpResponse,
): Response {
  let type: string | undefined;
  const fields: HeaderList = [];
  for (const field of response.headers) {
    if (field[0].toLowerCase() === 'content-type') type = field[1];
    else fields.push(field);
  }
  setNodeHeaders(outgoing, fields);
  // Without a type, Hono's own default for a text body (text/plain), as when it was given every field.
  return type === undefined
    ? c.body(response.body, response.status as never)
    : c.body(response.body, response.status as never, { 'Content-Type': type });
}

/**
 * Hono middleware, on Node and on Web-standard runtimes: `app.use(rateLimit({ policies: ... }))`. Handlers
 * find the decision with `c.get('rateLimit')`.
 */
export function rateLimit<C extends HonoContextLike = HonoContextLike>(
  options: HonoLimitOptions<C>,
): HonoRateLimit<C> {
  const { address, ...rest } = options;
  if (address !== undefined && typeof address !== 'function') {
    throw invalidOption('address', 'a function of the context', address, 'type');
  }
  const guard = new HttpGuard<C>(rest);
  const middleware = async (c: C, next: () => Promise<void>): Promise<Response | undefined> => {
    const view: RequestView = {
      method: c.req.method,
      path: c.req.path,
      peer: address !== undefined ? given(address(c)) : nodeSocketAddress(c),
      header: (name) => c.req.header(name),
    };
    const verdict = await guard.decide(c, view);
    if (verdict.kind === 'respond') {
      const outgoing = nodeResponse(c);
      if (outgoing !== undefined) return refuseOnNode(c, outgoing, verdict);
      return c.body(verdict.body, verdict.status as never, Object.fromEntries(verdict.headers));
    }
    // On Node, the fields go on the Node response itself: a field set through Hono makes it build a Web
    // \`Headers\` object, and then convert the handler's response from it, on every allowed request.
    // Hono's \`set\` is typed by the app's variables, which the adapter cannot name: called as Hono defines it.
    if (verdict.decision !== undefined)
      (c as unknown as { set(key: string, value: unknown): void }).set('rateLimit', verdict.decision);
    const outgoing = nodeResponse(c);
    if (outgoing !== undefined) setNodeHeaders(outgoing, verdict.headers);
    else for (const [name, value] of verdict.headers) c.header(name, value);
    if (verdict.settle === undefined) {
      await next();
      return;
    }
    if (outgoing !== undefined) {
      // On Node, the response ends after the handler returns (a stream later still): settled when it does.
      settleWhenDone(outgoing, verdict.settle);
      await next();
      return;
    }
    try {
      await next();
    } finally {
      verdict.settle(c.res.status);
    }
    return;
  };
  return Object.assign(middleware, { limiter: guard.limiter });
}

import type { Decision } from '../core/decision.js';
import type { Verdict } from './guard.js';
import type { HeaderList } from './headers.js';
import type { RequestView } from './request.js';

/** The parts of node's `IncomingMessage` the adapters read (Express and Koa requests are ones too). */
export interface NodeRequestLike {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  readonly socket?: { readonly remoteAddress?: string | undefined } | null | undefined;
}

/** The parts of node's `ServerResponse` the adapters write. */
export interface NodeResponseLike {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  getHeader(name: string): unknown;
  end(body?: string): unknown;
  once(event: 'finish' | 'close', listener: () => void): unknown;
  /** True once the response (or its connection) has closed. */
  readonly closed?: boolean;
}

/** A node request as the guard reads it: one object per request, its method shared by all. */
class NodeView implements RequestView {
  readonly method: string;
  readonly path: string;
  readonly peer: string;
  readonly forwardedResolved: boolean;

  constructor(
    private readonly req: NodeRequestLike,
    peer: string | undefined,
    forwardedResolved: boolean,
  ) {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    this.method = req.method ?? 'GET';
    this.path = q === -1 ? url : url.slice(0, q);
    // A Node request always had a peer; none now means its socket is already gone.
    this.peer = peer ?? '';
    this.forwardedResolved = forwardedResolved;
  }

  header(name: string): string | undefined {
    const value = this.req.headers[name];
    return typeof value === 'string' ? value : value === undefined ? undefined : value.join(', ');
  }
}

/**
 * The guard's view of a node request. `resolvedPeer`, when given, is the client address the framework found
 * through its own trust-proxy setting (Express's `req.ip`), and stands for the socket's.
 */
export function nodeView(req: NodeRequestLike, resolvedPeer?: string): RequestView {
  return resolvedPeer === undefined
    ? new NodeView(req, req.socket?.remoteAddress, false)
    : new NodeView(req, resolvedPeer, true);
}

/**
 * Settles a verdict when its response ends: with the status the client was sent, or with undefined when
 * the connection closed before the response was complete (the client hung up, or the handler never
 * answered): its outcome never reached the client, so it is no success and no latency sample.
 */
export function settleWhenDone(
  res: Pick<NodeResponseLike, 'statusCode' | 'once' | 'closed'>,
  settle: (status: number | undefined) => void,
): void {
  // The client may have hung up while the decision was pending (a store call, an async key): the close
  // event is then past, and waiting for it would hold a slot forever.
  if (res.closed === true) {
    settle(undefined);
    return;
  }
  res.once('finish', () => settle(res.statusCode));
  res.once('close', () => settle(undefined)); // after a finish, a no-op: settle runs once
}

/** A request that went on past the limiter: `rateLimit` is its decision, for the handler to read. */
export type WithRateLimit<T> = T & { rateLimit?: Decision };

/** RateLimit and RateLimit-Policy are lists: a second limiter on the route adds its items to the first's. */
export function mergedValue(name: string, value: string, existing: unknown): string {
  const list = name === 'RateLimit' || name === 'RateLimit-Policy';
  if (list && typeof existing === 'string' && existing.startsWith('"') && value.startsWith('"')) {
    return `${existing}, ${value}`;
  }
  return value;
}

/** Responses Floodgate has written header fields to: only those can hold items to merge with. */
const written = new WeakSet<object>();

export function setNodeHeaders(res: NodeResponseLike, headers: HeaderList): void {
  // Reading a field back costs a lookup per field on every response; the first limiter has nothing to merge.
  if (!written.has(res)) {
    written.add(res);
    for (const [name, value] of headers) res.setHeader(name, value);
    return;
  }
  for (const [name, value] of headers) res.setHeader(name, mergedValue(name, value, res.getHeader(name)));
}

/**
 * Applies a verdict to a node response: the header fields, and either the response itself (false: the
 * request stops here) or the settle hook for when the response ends (true: the request goes on).
 */
export function applyToNodeResponse(req: NodeRequestLike, res: NodeResponseLike, verdict: Verdict): boolean {
  setNodeHeaders(res, verdict.headers);
  if (verdict.kind === 'respond') {
    res.statusCode = verdict.status;
    res.end(verdict.body);
    return false;
  }
  if (verdict.decision !== undefined) (req as WithRateLimit<NodeRequestLike>).rateLimit = verdict.decision;
  if (verdict.settle !== undefined) settleWhenDone(res, verdict.settle);
  return true;
}

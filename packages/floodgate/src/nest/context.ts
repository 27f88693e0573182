import type { ExecutionContext } from '@nestjs/common';
import type { Decision } from '../core/decision.js';
import { FloodgateError } from '../core/errors.js';
import type { Verdict } from '../http/guard.js';
import { mergedValue, type NodeRequestLike, type NodeResponseLike } from '../http/node-common.js';
import type { NestRequest } from './options.js';

/** The context types the guard limits: HTTP routes, GraphQL resolvers, WebSocket gateways' messages. */
export type LimitedContext = 'http' | 'graphql' | 'ws';

/** A request and where its answer goes, as the guard's `getRequestResponse` hook finds them. */
export interface RequestResponse {
  /** The request (in a gateway, the connection's handshake); undefined when the context carries none. */
  readonly request: NestRequest | undefined;
  /** Express's response or Fastify's reply; undefined in a gateway, where no header fields go. */
  readonly response: unknown;
}

/** A WebSocket client, as `ws` and socket.io make them: the handshake's headers and the peer's address. */
interface WsClient {
  readonly handshake?: { readonly headers?: NodeRequestLike['headers']; readonly address?: string };
  readonly request?: NodeRequestLike;
  readonly _socket?: { readonly remoteAddress?: string };
  readonly user?: unknown;
  readonly data?: { readonly user?: unknown };
}

/** Per connection, the request it stands for: made once, on its first message. */
const connections = new WeakMap<object, NestRequest & NodeRequestLike>();

/**
 * A connection as a request: socket.io's handshake, or the `ws` socket's peer (`ws` keeps no headers; an
 * application that wants them sets `client.request` to the upgrade request in `handleConnection`).
 */
function connectionRequest(client: WsClient): NestRequest & NodeRequestLike {
  let request = connections.get(client);
  if (request === undefined) {
    const headers = client.handshake?.headers ?? client.request?.headers ?? {};
    const ip =
      client.handshake?.address ?? client.request?.socket?.remoteAddress ?? client._socket?.remoteAddress;
    request = {
      headers,
      ip,
      socket: { remoteAddress: ip },
      get user() {
        return client.user ?? client.data?.user;
      },
    };
    connections.set(client, request);
  }
  return request;
}

/** The request and response of a context: HTTP's, GraphQL's context's (`req`/`res`, or `request`/`reply`), a gateway's connection. */
export function requestResponse(context: ExecutionContext, type: LimitedContext): RequestResponse {
  if (type === 'http') {
    const http = context.switchToHttp();
    return { request: http.getRequest<NestRequest>(), response: http.getResponse() };
  }
  if (type === 'graphql') {
    const gql = context.getArgByIndex<
      { req?: NestRequest; request?: NestRequest; res?: unknown; reply?: unknown } | undefined
    >(2);
    return { request: gql?.req ?? gql?.request, response: gql?.res ?? gql?.reply };
  }
  return { request: connectionRequest(context.switchToWs().getClient<WsClient>()), response: undefined };
}

/**
 * The decisions of calls that are not HTTP requests, by what is the call's own: a GraphQL field's resolve
 * info, a message's data (or, for data that is no object, its connection). One request or connection
 * carries many such calls.
 */
const callDecisions = new WeakMap<object, Decision>();

function callOf(context: ExecutionContext): object | undefined {
  const own = context.getArgByIndex<unknown>(context.getType<string>() === 'graphql' ? 3 : 1);
  if (typeof own === 'object' && own !== null) return own;
  const client = context.getArgByIndex<unknown>(0);
  return typeof client === 'object' && client !== null ? client : undefined;
}

/** Keeps the decision of a GraphQL field's or a message's call, for `@RateLimitDecision()`. */
export function keepDecision(context: ExecutionContext, decision: Decision): void {
  const call = callOf(context);
  if (call !== undefined) callDecisions.set(call, decision);
}

/** The decision the guard made for a context's call, for `@RateLimitDecision()`. */
export function decisionOf(context: ExecutionContext): Decision | undefined {
  if (context.getType() === 'http') return context.switchToHttp().getRequest<NestRequest>().rateLimit;
  const call = callOf(context);
  return call === undefined ? undefined : callDecisions.get(call);
}

/** What the guard writes headers to: Express's response, or Fastify's reply. */
export interface NestResponse {
  readonly raw?: NodeResponseLike;
  header?(name: string, value: string): unknown;
  setHeader?(name: string, value: string): unknown;
  getHeader(name: string): unknown;
}

/** The verdict's header fields, on either platform: Express's response, or Fastify's reply. */
export function writeHeaders(response: NestResponse, verdict: Verdict): void {
  const fastify = response.raw !== undefined && typeof response.header === 'function';
  for (const [name, value] of verdict.headers) {
    // Nest answers an exception with JSON, and Nest 11's Express adapter logs a warning for each answer whose
    // type is any other (problem+json included) before replacing it: the body's type is left to Nest.
    if (name === 'Content-Type') continue;
    const merged = mergedValue(name, value, response.getHeader(name));
    if (fastify) response.header!(name, merged);
    else response.setHeader!(name, merged);
  }
}

/** A GraphQL context without the request: the guard cannot tell clients apart, and says how to fix it. */
export function noRequest(): FloodgateError {
  return new FloodgateError(
    'ERR_FLOODGATE_NO_CLIENT_ADDRESS',
    "floodgate: this GraphQL context carries no request, so the limit cannot tell clients apart; give GraphQL's " +
      'module a context with it: context: ({ req, res }) => ({ req, res })',
  );
}

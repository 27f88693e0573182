import { type CanActivate, type ExecutionContext, HttpException, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { andThen, type MaybePromise } from '../core/maybe.js';
import type { HttpGuard, Verdict } from '../http/guard.js';
import {
  mergedValue,
  type NodeRequestLike,
  type NodeResponseLike,
  nodeView,
  settleWhenDone,
} from '../http/node-common.js';
import type { HttpResponse } from '../http/problem.js';
import { RATE_LIMIT, SKIP_RATE_LIMIT } from './decorators.js';
import { FloodgateLimits } from './limits.js';
import type { NestRequest, RouteLimitOptions } from './options.js';

/** What the guard writes headers to: Express's response, or Fastify's reply. */
interface NestResponse {
  readonly raw?: NodeResponseLike;
  header?(name: string, value: string): unknown;
  setHeader?(name: string, value: string): unknown;
  getHeader(name: string): unknown;
}

/**
 * A refusal (429, or 503 when shedding, 403 for a denied client, 400 for a missing key) as Nest's own
 * exception, so that exception filters see it; its response is the problem body (RFC 9457) the other
 * adapters send, which Nest serves as `application/json`.
 */
export class FloodgateException extends HttpException {
  constructor(response: HttpResponse) {
    // A refusal is not a fault: no stack is captured, which is most of what throwing through Nest costs.
    const depth = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(body(response.body), response.status);
    } finally {
      Error.stackTraceLimit = depth;
    }
  }
}

function body(text: string): string | object {
  try {
    return JSON.parse(text) as object;
  } catch {
    return text;
  }
}

/** Requests a Floodgate guard has decided: the guard registered globally and per controller decides once. */
const decided = new WeakSet<object>();

/**
 * The guard: global when the module's `global` is true (the default), or per controller or route with
 * `@UseGuards(FloodgateGuard)`. It reads `@RateLimit` and `@SkipRateLimit` on the controller and the route.
 */
export class FloodgateGuard implements CanActivate {
  readonly #limits: FloodgateLimits;
  readonly #reflector = new Reflector();
  /** Per controller, per handler: its guard, or null when it is skipped. Made on the route's first request. */
  readonly #routes = new WeakMap<object, WeakMap<object, HttpGuard<NestRequest> | null>>();

  constructor(limits: FloodgateLimits) {
    this.#limits = limits;
  }

  canActivate(context: ExecutionContext): MaybePromise<boolean> {
    if (context.getType() !== 'http') return true;
    const guard = this.#route(context);
    if (guard === null) return true;
    const http = context.switchToHttp();
    const request = http.getRequest<NestRequest>();
    if (decided.has(request)) return true;
    decided.add(request);
    const raw = request.raw ?? (request as NestRequest & NodeRequestLike);
    // The platform's `ip` follows the application's trust-proxy setting, unless Floodgate was given its own.
    const view = this.#limits.ownTrust
      ? nodeView(raw)
      : nodeView(raw, request.ip ?? raw.socket?.remoteAddress);
    return andThen(guard.decide(request, view), (verdict) =>
      apply(request, http.getResponse<NestResponse>(), verdict),
    );
  }

  #route(context: ExecutionContext): HttpGuard<NestRequest> | null {
    const controller = context.getClass();
    const handler = context.getHandler();
    let routes = this.#routes.get(controller);
    if (routes === undefined) {
      routes = new WeakMap();
      this.#routes.set(controller, routes);
    }
    let guard = routes.get(handler);
    if (guard === undefined) {
      const skip =
        this.#reflector.get<boolean | undefined>(SKIP_RATE_LIMIT, handler) ??
        this.#reflector.get<boolean | undefined>(SKIP_RATE_LIMIT, controller);
      guard =
        skip === true
          ? null
          : this.#limits.guard(
              this.#reflector.get<RouteLimitOptions | undefined>(RATE_LIMIT, controller),
              this.#reflector.get<RouteLimitOptions | undefined>(RATE_LIMIT, handler),
              { controller: controller.name, handler: handler.name },
            );
      routes.set(handler, guard);
    }
    return guard;
  }
}

/** The verdict, on either platform: header fields, then the decision for the handler, or the refusal thrown. */
function apply(request: NestRequest, response: NestResponse, verdict: Verdict): boolean {
  const fastify = response.raw !== undefined && typeof response.header === 'function';
  for (const [name, value] of verdict.headers) {
    // Nest answers an exception with JSON, and Nest 11's Express adapter logs a warning for each answer whose
    // type is any other (problem+json included) before replacing it: the body's type is left to Nest.
    if (name === 'Content-Type') continue;
    const merged = mergedValue(name, value, response.getHeader(name));
    if (fastify) response.header!(name, merged);
    else response.setHeader!(name, merged);
  }
  if (verdict.kind === 'respond') throw new FloodgateException(verdict);
  if (verdict.decision !== undefined) request.rateLimit = verdict.decision;
  if (verdict.settle !== undefined)
    settleWhenDone(fastify ? response.raw! : (response as unknown as NodeResponseLike), verdict.settle);
  return true;
}

// Nest's dependency injection, applied as functions: the library is compiled without decorator syntax.
Inject(FloodgateLimits)(FloodgateGuard, undefined, 0);
Injectable()(FloodgateGuard);

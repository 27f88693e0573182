// Real servers of each framework on loopback, each with the same routes, limited by the adapter under test.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { serve } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import Koa from 'koa';
import type { Decision } from '../../src/core/decision.js';
import { rateLimit as expressLimit } from '../../src/http/express.js';
import { floodgate as fastifyPlugin } from '../../src/http/fastify.js';
import { rateLimit as honoLimit, type RateLimitVariables } from '../../src/http/hono.js';
import { rateLimit as koaLimit, type RateLimitState } from '../../src/http/koa.js';
import { rateLimit as nodeLimit, type WithRateLimit } from '../../src/http/node.js';
import { atGate } from '../helpers/gate.js';

export interface Running {
  url: string;
  close(): Promise<void>;
}

/**
 * Routes: `/` answers 200, `/fail` 401; `/wait` waits for the gate (`holdRequests`) first; `/stream` sends a
 * first chunk, and the rest once the gate opens; `/decision` answers with what the handler found of the limiter's
 * decision, the framework's own way (`req.rateLimit`, `ctx.state`, `c.get`): `remaining=N`, or `none`; `/cpu`
 * does what `onCpuRequest` set, synchronously.
 */
export type Start = (options: object, host?: string) => Promise<Running>;

/** A GET over real HTTP: its status, header fields and body. */
export async function get(base: string, path = '/', headers: Record<string, string> = {}) {
  const res = await fetch(base + path, { headers });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

/** The statuses of `n` GETs one after the other. */
export async function statuses(base: string, n: number, path = '/', headers: Record<string, string> = {}) {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await get(base, path, headers)).status);
  return out;
}

/** Runs `body` against a server of `start`'s framework made with `options`, and closes it after. */
export function serving(start: Start) {
  return async (options: object, body: (s: Running) => Promise<void>, host?: string): Promise<void> => {
    const server = await start(options, host);
    try {
      await body(server);
    } finally {
      await server.close();
    }
  };
}

export { holdRequests } from '../helpers/gate.js';

/**
 * The body of `/stream`: a first chunk at once, the rest once the gate opens (a response that has begun, and
 * whose handler has returned, but that has not ended).
 */
function streamedBody(): Readable {
  const held = atGate();
  return Readable.from(
    (async function* () {
      yield 'first ';
      await held;
      yield 'last';
    })(),
  );
}

/** `/boom` handlers throw, as a crashed handler would: the framework answers 500. */
function crashOn(path: string): void {
  if (path.startsWith('/boom')) throw new Error('boom');
}

let cpuWork: () => void = () => {};

/** What each `/cpu` request does, synchronously, in its handler (a CPU-bound handler's work). */
export function onCpuRequest(work: () => void): void {
  cpuWork = work;
}

/** `/wait` requests wait at the gate; `/cpu` ones do their work; the others go straight on. */
function until(path: string): Promise<void> | undefined {
  if (path.startsWith('/cpu')) cpuWork();
  return path.startsWith('/wait') ? atGate() : undefined;
}

function statusFor(path: string): number {
  return path.startsWith('/fail') ? 401 : 200;
}

function bodyFor(path: string, decision: Decision | null | undefined): string {
  if (!path.startsWith('/decision')) return 'ok';
  return decision == null ? 'none' : `remaining=${decision.remaining}`;
}

function url(host: string, port: number): string {
  return host.includes(':') ? `http://[${host}]:${port}` : `http://${host}:${port}`;
}

async function listen(server: Server, host: string): Promise<Running> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return running(server, host);
}

/** A listening server as a `Running`: its URL, and a close that drops kept-alive connections. */
function running(server: Server, host: string): Running {
  const { port } = server.address() as AddressInfo;
  return {
    url: url(host, port),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const FRAMEWORKS: Record<string, Start> = {
  'node:http': async (options, host = '127.0.0.1') => {
    const limit = nodeLimit(options as never);
    const server = createServer(async (req, res) => {
      let go: boolean;
      try {
        go = await limit(req, res);
      } catch {
        // A callback of the options threw: what a server's own error handling would answer.
        res.statusCode = 500;
        res.end();
        return;
      }
      if (!go) return;
      if (req.url?.startsWith('/stream')) {
        streamedBody().pipe(res);
        return;
      }
      await until(req.url ?? '/');
      res.statusCode = statusFor(req.url ?? '/');
      res.end(bodyFor(req.url ?? '/', (req as WithRateLimit<IncomingMessage>).rateLimit));
    });
    return listen(server, host);
  },
  express: async (options, host = '127.0.0.1') => {
    const app = express();
    app.use(expressLimit(options as never));
    app.get(/.*/, async (req, res) => {
      if (req.path.startsWith('/stream')) {
        streamedBody().pipe(res);
        return;
      }
      await until(req.path);
      crashOn(req.path);
      res.status(statusFor(req.path)).send(bodyFor(req.path, req.rateLimit));
    });
    return listen(createServer(app), host);
  },
  fastify: async (options, host = '127.0.0.1') => {
    const app = Fastify();
    await app.register(fastifyPlugin, options as never);
    app.get('/*', async (request, reply) => {
      if (request.url.startsWith('/stream')) return reply.send(streamedBody());
      await until(request.url);
      crashOn(request.url);
      return reply
        .code(statusFor(request.url))
        .send(bodyFor(request.url, (request as WithRateLimit<typeof request>).rateLimit));
    });
    await app.listen({ port: 0, host });
    const { port } = app.server.address() as AddressInfo;
    return { url: url(host, port), close: () => app.close() };
  },
  hono: async (options, host = '127.0.0.1') => {
    const app = new Hono<{ Variables: RateLimitVariables }>();
    app.use(honoLimit(options as never));
    app.get('*', async (c) => {
      if (c.req.path.startsWith('/stream')) {
        return c.body(Readable.toWeb(streamedBody()) as ReadableStream<Uint8Array>);
      }
      await until(c.req.path);
      crashOn(c.req.path);
      return c.text(bodyFor(c.req.path, c.get('rateLimit')), statusFor(c.req.path) as 200);
    });
    const server = await new Promise<Server>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: host }, () => resolve(s as Server));
    });
    return running(server, host);
  },
  koa: async (options, host = '127.0.0.1') => {
    const app = new Koa();
    app.silent = true; // the /boom route's error is the point, not news
    app.use(koaLimit(options as never));
    app.use(async (ctx) => {
      if (ctx.path.startsWith('/stream')) {
        ctx.body = streamedBody();
        return;
      }
      await until(ctx.path);
      crashOn(ctx.path);
      ctx.status = statusFor(ctx.path);
      ctx.body = bodyFor(ctx.path, (ctx.state as RateLimitState).rateLimit);
    });
    return listen(createServer(app.callback()), host);
  },
};

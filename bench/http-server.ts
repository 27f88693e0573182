// One server for bench/http.ts, in its own process so its CPU time can be read: a framework, bare or behind
// a limiter. Reports its port over IPC and answers 'cpu' with process.cpuUsage(). Without IPC (under
// callgrind, for bench/instructions.ts) it prints `ready PORT` instead, and exits after REQUESTS responses.
//   node --import tsx bench/http-server.ts <framework> <variant> <allowed|denied> [redisPort]
// Variants: bare, floodgate, floodgate-untracked (the same limiter with `traffic: false`: what the traffic
// accounting costs, on its own), floodgate-redis, floodgate-redis-leases, usual, usual-redis.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fastifyRateLimit from '@fastify/rate-limit';
import { serve } from '@hono/node-server';
import express from 'express';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { rateLimiter as honoRateLimiter } from 'hono-rate-limiter';
import { Redis } from 'ioredis';
import Koa from 'koa';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { rateLimit as fgExpress } from '../packages/floodgate/src/http/express.js';
import { floodgate } from '../packages/floodgate/src/http/fastify.js';
import { rateLimit as fgHono } from '../packages/floodgate/src/http/hono.js';
import { rateLimit as fgKoa } from '../packages/floodgate/src/http/koa.js';
import { rateLimit as fgNode } from '../packages/floodgate/src/http/node.js';
import { Limiter } from '../packages/floodgate/src/limiter/limiter.js';
import { RedisStore } from '../packages/floodgate/src/stores/redis/index.js';

const [framework, variant, path, redisPort] = process.argv.slice(2) as [string, string, string, string?];
// Allowed: a limit the run never reaches. Denied: one request an hour, spent by the warm-up.
const limit = path === 'allowed' ? 100_000_000 : 1;
const windowMs = 3_600_000;
const policies = { algorithm: 'fixed-window' as const, limit, window: windowMs };
// What Floodgate's middleware is given.
const limits = variant.startsWith('floodgate-redis')
  ? {
      policies,
      store: new RedisStore({
        client: new Redis(Number(redisPort), '127.0.0.1'),
        leases: variant === 'floodgate-redis-leases',
      }),
    }
  : variant === 'floodgate-untracked'
    ? { limiter: new Limiter({ policies, traffic: false }) }
    : { policies };
const fg = variant.startsWith('floodgate');
const usual = variant === 'usual';
const usualRedis = variant === 'usual-redis' ? new Redis(Number(redisPort), '127.0.0.1') : undefined;

async function start(): Promise<Server> {
  const listen = async (server: Server) => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return server;
  };
  switch (framework) {
    case 'express': {
      const app = express();
      if (fg) app.use(fgExpress(limits));
      if (usual)
        app.use(expressRateLimit({ windowMs, limit, standardHeaders: 'draft-7', legacyHeaders: false }));
      app.get('/', (_req, res) => {
        res.send('hello');
      });
      return listen(createServer(app));
    }
    case 'fastify': {
      const app = Fastify();
      if (fg) await app.register(floodgate, limits);
      if (usual) await app.register(fastifyRateLimit, { max: limit, timeWindow: windowMs });
      if (usualRedis)
        await app.register(fastifyRateLimit, { max: limit, timeWindow: windowMs, redis: usualRedis });
      app.get('/', async () => 'hello');
      await app.listen({ port: 0, host: '127.0.0.1' });
      return app.server;
    }
    case 'hono': {
      const app = new Hono();
      if (fg) app.use(fgHono(limits));
      if (usual) {
        app.use(
          honoRateLimiter({
            windowMs,
            limit,
            keyGenerator: (c) =>
              (c.env as { incoming: { socket: { remoteAddress: string } } }).incoming.socket.remoteAddress,
          }),
        );
      }
      app.get('/', (c) => c.text('hello'));
      return new Promise<Server>((resolve) => {
        const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as Server));
      });
    }
    case 'koa': {
      const app = new Koa();
      if (fg) app.use(fgKoa(limits));
      app.use((ctx) => {
        ctx.body = 'hello';
      });
      return listen(createServer(app.callback()));
    }
    default: {
      const guard = fg ? fgNode(limits) : undefined;
      const rlf = usualRedis
        ? new RateLimiterRedis({ storeClient: usualRedis, points: limit, duration: windowMs / 1000 })
        : undefined;
      const server = createServer(async (req, res) => {
        if (guard !== undefined && !(await guard(req, res))) return;
        if (rlf !== undefined) {
          try {
            await rlf.consume(req.socket.remoteAddress!);
          } catch {
            res.statusCode = 429;
            res.end('Too Many Requests');
            return;
          }
        }
        res.end('hello');
      });
      return listen(server);
    }
  }
}

const server = await start();
const { port } = server.address() as AddressInfo;
if (process.send === undefined) {
  const total = Number(process.env.REQUESTS);
  let served = 0;
  server.on('request', (_req, res) =>
    res.on('finish', () => {
      if (++served === total) setImmediate(() => process.exit(0));
    }),
  );
  console.log(`ready ${port}`);
} else {
  process.on('message', (m) => {
    if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
    if (m === 'exit') process.exit(0);
  });
  process.send({ port });
}

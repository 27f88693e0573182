import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import express from 'express';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { rateLimit } from '../../src/http/express.js';
import { floodgate } from '../../src/http/fastify.js';
import { byBasicUser } from '../../src/http/index.js';
import { Limiter } from '../../src/limiter/limiter.js';
import { RedisStore } from '../../src/stores/redis/index.js';

async function listen(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const basic = (user: string) => `Basic ${Buffer.from(`${user}:pw`).toString('base64')}`;

describe('Fastify route-level limits', () => {
  it('per-route policies, per-route cost, routes turned off, and global: false', async () => {
    const app = Fastify();
    await app.register(floodgate, { policies: { name: 'global', limit: 3, window: '1m' } });
    app.get('/a', async () => 'a');
    app.get('/expensive', { config: { rateLimit: { cost: 3 } } }, async () => 'e');
    app.get(
      '/own',
      { config: { rateLimit: { policies: { name: 'own', limit: 1, window: '1m' } } } },
      async () => 'o',
    );
    app.get('/health', { config: { rateLimit: false } }, async () => 'h');
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const get = async (path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).status;
    try {
      assert.equal(await get('/own'), 200);
      assert.equal(await get('/own'), 429, 'the route has its own limit');
      assert.equal(await get('/expensive'), 200, 'costs 3 of the shared 3');
      assert.equal(await get('/a'), 429, 'the shared limit is spent');
      for (let i = 0; i < 5; i++) assert.equal(await get('/health'), 200);
    } finally {
      await app.close();
    }

    const opt = Fastify();
    await opt.register(floodgate, { policies: { limit: 1, window: '1m' }, global: false });
    opt.get('/free', async () => 'f');
    opt.get('/limited', { config: { rateLimit: {} } }, async () => 'l');
    await opt.listen({ port: 0, host: '127.0.0.1' });
    const p2 = (opt.server.address() as AddressInfo).port;
    try {
      const s = async (path: string) => (await fetch(`http://127.0.0.1:${p2}${path}`)).status;
      assert.deepEqual(
        [await s('/free'), await s('/free'), await s('/limited'), await s('/limited')],
        [200, 200, 200, 429],
      );
    } finally {
      await opt.close();
    }
  });

  it('rejects invalid plugin options at registration', async () => {
    const app = Fastify();
    await assert.rejects(async () => {
      await app.register(floodgate, { policies: { limit: 1, window: '1m' }, global: 'yes' as never });
      await app.ready();
    }, /option "global" must be a boolean/);
  });

  it('rejects a route with invalid limit settings when the route is declared, not at its first request', async () => {
    const app = Fastify();
    await app.register(floodgate, { policies: { limit: 1, window: '1m' } });
    await assert.rejects(async () => {
      app.get('/bad', { config: { rateLimit: { cost: -1 } } }, async () => 'x');
      await app.ready();
    }, /cost/);
  });

  it('limits requests no route matches, charges a HEAD once, and keeps hooks a route had', async () => {
    const app = Fastify();
    await app.register(floodgate, {
      policies: { name: 'p', algorithm: 'fixed-window', limit: 2, window: '1m' },
    });
    const seen: string[] = [];
    app.get('/own-hook', { onRequest: async () => void seen.push('route hook') }, async () => 'x');
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const call = async (path: string, method = 'GET') => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
      return [res.status, res.headers.get('ratelimit')];
    };
    try {
      assert.deepEqual(await call('/nowhere'), [404, '"p";r=1;t=60'], 'a 404 is counted');
      assert.deepEqual(await call('/own-hook', 'HEAD'), [200, '"p";r=0;t=60'], 'a HEAD costs 1');
      assert.deepEqual(seen, ['route hook']);
      assert.equal((await call('/own-hook'))[0], 429);
      assert.equal((await call('/elsewhere'))[0], 429);
      assert.deepEqual(seen, ['route hook', 'route hook'], "the route's own hook still runs");
    } finally {
      await app.close();
    }
  });
});

describe('Express: several limiters on one route, per-route cost, concurrency', () => {
  it('per IP and per user on the same route; both lists of RateLimit items are sent', async () => {
    const app = express();
    const perIp = rateLimit({ policies: { name: 'ip', limit: 3, window: '1m' } });
    const perUser = rateLimit({ policies: { name: 'user', limit: 2, window: '1m' }, key: byBasicUser() });
    app.get('/api', perIp, perUser, (_req, res) => {
      res.send('ok');
    });
    app.get(
      '/report',
      rateLimit({ policies: { name: 'report', limit: 10, window: '1m' }, cost: 4 }),
      (_req, res) => {
        res.send('r');
      },
    );
    const server = await listen(createServer(app));
    try {
      const first = await fetch(`${server.url}/api`, { headers: { authorization: basic('ann') } });
      assert.equal(first.headers.get('ratelimit-policy'), '"ip";q=3;w=60, "user";q=2;w=60');
      assert.equal(first.headers.get('ratelimit'), '"ip";r=2;t=20, "user";r=1;t=30');
      assert.equal(
        (await fetch(`${server.url}/api`, { headers: { authorization: basic('ann') } })).status,
        200,
      );
      assert.equal(
        (await fetch(`${server.url}/api`, { headers: { authorization: basic('ann') } })).status,
        429,
      );
      assert.equal(
        (await fetch(`${server.url}/api`, { headers: { authorization: basic('bob') } })).status,
        429,
        'IP spent',
      );
      const costs = [];
      for (let i = 0; i < 3; i++) costs.push((await fetch(`${server.url}/report`)).status);
      assert.deepEqual(costs, [200, 200, 429], 'cost 4 of 10');
    } finally {
      await server.close();
    }
  });

  it('a concurrency policy holds a slot for the request and frees it with the response', async () => {
    const app = express();
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    app.get(
      '/slow',
      rateLimit({ policies: { algorithm: 'concurrency', limit: 1, leaseTimeout: '30s' } }),
      async (_req, res) => {
        entered();
        await gate;
        res.send('done');
      },
    );
    const server = await listen(createServer(app));
    try {
      const slow = fetch(`${server.url}/slow`);
      await inside; // the first request holds the slot
      assert.equal((await fetch(`${server.url}/slow`)).status, 429);
      open();
      assert.equal((await slow).status, 200);
      // The slot came back when the response finished.
      assert.equal((await fetch(`${server.url}/slow`)).status, 200);
    } finally {
      await server.close();
    }
  });

  it('onLimited replaces the 429; onDecision sees every decision', async () => {
    const seen: boolean[] = [];
    const app = express();
    app.use(
      rateLimit({
        policies: { limit: 1, window: '1m' },
        onDecision: ({ decision }) => seen.push(decision.allowed),
        onLimited: (_req, decision) => ({
          status: 503,
          headers: [['Content-Type', 'text/plain']],
          body: `busy, ${Math.ceil(decision.retryAfter / 1000)} s`,
        }),
      }),
    );
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const server = await listen(createServer(app));
    try {
      await fetch(server.url);
      const res = await fetch(server.url);
      assert.equal(res.status, 503);
      assert.equal(await res.text(), 'busy, 60 s');
      assert.equal(res.headers.get('retry-after'), '60');
      assert.deepEqual(seen, [true, false]);
    } finally {
      await server.close();
    }
  });
});

describe("Express's own trust proxy", () => {
  async function server(trust: unknown, options: object = {}) {
    const app = express();
    if (trust !== undefined) app.set('trust proxy', trust);
    app.use(rateLimit({ policies: { limit: 1, window: '1m' }, ...options }));
    app.get('/', (req, res) => {
      res.send(req.ip);
    });
    return listen(createServer(app));
  }
  const from = (url: string, forwarded: string) => fetch(url, { headers: { 'x-forwarded-for': forwarded } });

  it("is honoured when Floodgate's trustProxy is not set: clients are told apart by req.ip", async () => {
    const s = await server('loopback');
    try {
      assert.equal((await from(s.url, '203.0.113.1')).status, 200);
      assert.equal((await from(s.url, '203.0.113.2')).status, 200, 'another client');
      assert.equal((await from(s.url, '203.0.113.1')).status, 429);
    } finally {
      await s.close();
    }
  });

  it("is not trusted when unset, and Floodgate's own trustProxy wins when given", async () => {
    for (const s of [await server(undefined), await server('loopback', { trustProxy: false })]) {
      try {
        assert.equal((await from(s.url, '203.0.113.1')).status, 200);
        assert.equal((await from(s.url, '203.0.113.2')).status, 429, 'the header is not believed');
      } finally {
        await s.close();
      }
    }
  });
});

describe('Middleware on a shared RedisStore', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.stop();
  });

  it('an app server whose clock is 30 s ahead of Redis still sends t, Retry-After and the body in agreement', async () => {
    const client = new Redis(redis.port, '127.0.0.1');
    const app = express();
    app.use(
      rateLimit({
        store: new RedisStore({ client }), // decides on Redis's clock
        clock: { now: () => Date.now() + 30_000 }, // this machine's clock, 30 s ahead
        policies: { name: 'per-minute', algorithm: 'fixed-window', limit: 2, window: '1m' },
        key: byBasicUser(),
      }),
    );
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const server = await listen(createServer(app));
    try {
      const headers = { authorization: basic('skewed') };
      const first = await fetch(server.url, { headers });
      assert.equal(first.status, 200);
      assert.match(first.headers.get('ratelimit') ?? '', /^"per-minute";r=1;t=(59|60)$/);
      await fetch(server.url, { headers });
      const refused = await fetch(server.url, { headers });
      assert.equal(refused.status, 429);
      const t = Number(/;t=(\d+)$/.exec(refused.headers.get('ratelimit') ?? '')?.[1]);
      assert.ok(t >= 59, `t=${t}`);
      assert.equal(refused.headers.get('retry-after'), String(t));
      const body = (await refused.json()) as { detail: string };
      assert.match(body.detail, new RegExp(`Wait ${t} seconds`));
    } finally {
      await server.close();
      client.disconnect();
    }
  });

  it('two Express servers enforce one limit jointly', async () => {
    const clients = [new Redis(redis.port, '127.0.0.1'), new Redis(redis.port, '127.0.0.1')];
    const servers = await Promise.all(
      clients.map((client) => {
        const app = express();
        app.use(
          rateLimit({
            store: new RedisStore({ client }),
            policies: { algorithm: 'fixed-window', limit: 5, window: '1m' },
            key: byBasicUser(),
          }),
        );
        app.get('/', (_req, res) => {
          res.send('ok');
        });
        return listen(createServer(app));
      }),
    );
    try {
      const responses = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          fetch(servers[i % 2]!.url, { headers: { authorization: basic('john_doe') } }),
        ),
      );
      assert.equal(responses.filter((r) => r.status === 200).length, 5);
      assert.equal(responses.filter((r) => r.status === 429).length, 45);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
      for (const c of clients) c.disconnect();
    }
  });
});

describe('Limiter shared by middleware', () => {
  it('works with a shared limiter instance too', async () => {
    const limiter = new Limiter({ policies: { limit: 1, window: '1m' } });
    const app = express();
    app.use(rateLimit({ limiter }));
    app.get('/', (_req, res) => {
      res.send('ok');
    });
    const server = await listen(createServer(app));
    try {
      await fetch(server.url);
      assert.equal((await fetch(server.url)).status, 429);
      await limiter.reset('ip:127.0.0.1');
      assert.equal((await fetch(server.url)).status, 200, 'keys are readable: ip:<address>');
    } finally {
      await server.close();
    }
  });
});

describe('Hono on a Web-standard runtime (no Node socket)', () => {
  it('limits through app.request with a key from the request, or an address function', async () => {
    const { Hono } = await import('hono');
    const { rateLimit: honoLimit } = await import('../../src/http/hono.js');
    const { byApiKey } = await import('../../src/http/index.js');
    const app = new Hono();
    app.use(
      '/keyed/*',
      honoLimit({ key: byApiKey(), policies: { limit: 1, window: '1m' }, onMissingKey: 'reject' }),
    );
    app.use('/addr/*', honoLimit({ address: () => '192.0.2.10', policies: { limit: 1, window: '1m' } }));
    app.get('*', (c) => c.text('ok'));
    const status = async (path: string, headers: Record<string, string> = {}) =>
      (await app.request(path, { headers })).status;
    assert.equal(await status('/keyed/x', { 'x-api-key': 'k1' }), 200);
    assert.equal(await status('/keyed/x', { 'x-api-key': 'k1' }), 429);
    assert.equal(await status('/keyed/x', { 'x-api-key': 'k2' }), 200);
    assert.equal(await status('/keyed/x'), 400);
    const allowed = await app.request('/addr/x');
    assert.equal(allowed.status, 200);
    assert.match(String(allowed.headers.get('ratelimit')), /r=0;t=60$/, 'fields set through Hono here');
    assert.equal(await status('/addr/x'), 429);
    assert.throws(
      () => honoLimit({ address: 'x' as never, policies: { limit: 1, window: '1s' } }),
      /"address" must be a function/,
    );
  });
});

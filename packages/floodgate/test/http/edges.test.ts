import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { serve } from '@hono/node-server';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import { floodgate } from '../../src/http/fastify.js';
import { rateLimit as honoLimit } from '../../src/http/hono.js';
import { Limiter } from '../../src/limiter/limiter.js';
import { Shedder } from '../../src/limiter/shedder.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { FRAMEWORKS, get, holdRequests, serving, statuses } from './servers.js';

// The attacks found at the edges, on every adapter, over real HTTP: IPv6 and IPv4-mapped clients against
// allow/deny lists, costs that are not numbers, clients that hang up on a counted login, a Redis that
// is gone under `onStoreError: "closed"`, forwarding headers nobody trusts.

let redis: RedisServer;
before(async () => {
  redis = await RedisServer.start();
});
after(async () => {
  if (redis.running) await redis.stop();
});

for (const [framework, start] of Object.entries(FRAMEWORKS)) {
  describe(`HTTP adapter at the edges: ${framework}`, () => {
    const withServer = serving(start);

    it('deny and allow lists match an IPv6 peer by its address, not its /64 group', async () => {
      const policies = { limit: 1, window: '1m' };
      for (const deny of [['::1'], ['::/0'], ['::1/128'], ['loopback']]) {
        await withServer(
          { policies, deny },
          async ({ url }) => assert.equal((await get(url)).status, 403, `deny ${deny}`),
          '::1',
        );
      }
      await withServer(
        { policies, allow: ['::1'] },
        async ({ url }) => assert.deepEqual(await statuses(url, 3), [200, 200, 200]),
        '::1',
      );
      // Behind a trusted proxy: the forwarded address, whichever notation the proxy writes.
      const behind = { policies, trustProxy: ['loopback'], deny: ['2001:db8::7', '198.51.100.9'] };
      await withServer(behind, async ({ url }) => {
        for (const xff of ['2001:db8::7', '2001:DB8:0:0:0:0:0:7', '::ffff:198.51.100.9', '::ffff:c633:6409'])
          assert.equal((await get(url, '/', { 'x-forwarded-for': xff })).status, 403, xff);
        assert.equal((await get(url, '/', { 'x-forwarded-for': '2001:db8::8' })).status, 200);
      });
    });

    it('IPv4-mapped addresses are IPv4 clients by value, in every notation', async () => {
      const options = { policies: { limit: 1, window: '1m' }, trustProxy: ['loopback'] };
      await withServer(options, async ({ url }) => {
        // Hex-written mapped addresses of two IPv4 clients are two clients, not one IPv6 /64.
        assert.equal((await get(url, '/', { 'x-forwarded-for': '::ffff:7f09:909' })).status, 200);
        assert.equal((await get(url, '/', { 'x-forwarded-for': '::ffff:7f09:90a' })).status, 200);
        // ...and each is the same client as its dotted forms.
        for (const same of ['127.9.9.9', '::ffff:127.9.9.9', '0:0:0:0:0:ffff:7f09:909', '[::FFFF:7F09:909]'])
          assert.equal((await get(url, '/', { 'x-forwarded-for': same })).status, 429, same);
      });
    });

    it('a cost that is not a non-negative integer is refused with 400, charges nothing, and is reported', async () => {
      const errors: unknown[] = [];
      let bad: unknown;
      const limiter = new Limiter({ policies: { limit: 5, window: '1m' } });
      const options = { limiter, cost: () => bad, onError: (e: unknown) => errors.push(e) };
      await withServer(options, async ({ url }) => {
        const values = [Number.NaN, -1, 0.5, '3', Number.POSITIVE_INFINITY, null, undefined, 2 ** 53, {}];
        for (const value of values) {
          bad = value;
          const res = await get(url);
          assert.equal(res.status, 400, `cost ${String(value)}`);
          assert.equal(JSON.parse(res.body).status, 400);
          assert.match(res.headers.get('content-type') ?? '', /problem\+json/);
        }
        bad = Promise.resolve(Number.NaN);
        assert.equal((await get(url)).status, 400, 'a promised NaN');
        assert.equal(errors.length, values.length + 1);
        for (const e of errors)
          assert.equal((e as { code?: string }).code, 'ERR_FLOODGATE_INVALID_REQUEST_VALUE');
        bad = 1;
        const ok = await get(url, '/decision');
        assert.equal(ok.body, 'remaining=4', 'no refused request was charged');
      });
    });

    it('a key function returning something that is not a key is refused with 400, never admitted', async () => {
      const errors: unknown[] = [];
      for (const value of [{}, ['a'], Number.NaN, true]) {
        await withServer(
          { policies: { limit: 1, window: '1m' }, key: () => value, onError: (e: unknown) => errors.push(e) },
          async ({ url }) => assert.deepEqual(await statuses(url, 2), [400, 400], String(value)),
        );
      }
      assert.equal(errors.length, 8);
    });

    it('countOnly "failed": a client that hangs up before the answer stays counted', async () => {
      const limiter = new Limiter({ policies: { limit: 3, window: '1m' } });
      // The shedder's slots show when each request has been settled (a slot is given back then).
      const shed = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 50 } });
      let decided = 0;
      let reached!: () => void;
      const allDecided = new Promise<void>((resolve) => {
        reached = resolve;
      });
      const onDecision = () => {
        if (++decided === 3) reached();
      };
      const open = holdRequests();
      const server = await start({ limiter, countOnly: 'failed', onDecision, shed });
      try {
        const clients = [0, 1, 2].map(() => {
          const abort = new AbortController();
          return { abort, done: fetch(`${server.url}/wait`, { signal: abort.signal }).catch(() => {}) };
        });
        await allDecided;
        assert.equal(shed.inflight, 3);
        for (const c of clients) c.abort.abort();
        await Promise.all(clients.map((c) => c.done));
        while (shed.inflight > 0) await new Promise((r) => setImmediate(r));
        const left = await limiter.peek('ip:127.0.0.1');
        assert.equal(
          left.allowed,
          false,
          'three guesses whose answers never arrived count as three failures',
        );
      } finally {
        await server.close();
        open();
      }
    });

    it('a client that hangs up while the decision is pending gives back its shed slot and its concurrency slot', async () => {
      const shed = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 50 } });
      let release!: () => void;
      const pending = new Promise<void>((resolve) => {
        release = resolve;
      });
      let asked = 0;
      const key = async () => {
        asked++;
        await pending;
        return 'one-client';
      };
      const policies = { algorithm: 'concurrency', limit: 3, leaseTimeout: '10m' };
      await withServer({ policies, key, shed }, async ({ url }) => {
        const clients = [0, 1, 2].map(() => {
          const abort = new AbortController();
          return { abort, done: fetch(`${url}/`, { signal: abort.signal }).catch(() => {}) };
        });
        while (asked < 3) await new Promise((r) => setImmediate(r));
        for (const c of clients) c.abort.abort();
        await Promise.all(clients.map((c) => c.done));
        assert.equal(shed.inflight, 3);
        release(); // the decisions now arrive, for responses already closed
        while (shed.inflight > 0) await new Promise((r) => setImmediate(r));
        assert.equal((await get(url)).status, 200, 'the concurrency slots came back too');
      });
    });

    it('an isFailure that throws is reported, keeps the request counted, and never ends the process', async () => {
      const errors: unknown[] = [];
      const options = {
        policies: { limit: 2, window: '1m' },
        countOnly: 'failed',
        isFailure: () => {
          throw new Error('broken isFailure');
        },
        onError: (e: unknown) => errors.push(e),
      };
      await withServer(options, async ({ url }) => {
        assert.deepEqual(await statuses(url, 3), [200, 200, 429]);
        while (errors.length < 2) await new Promise((r) => setImmediate(r));
        assert.match(String(errors[0]), /broken isFailure/);
      });
    });

    it('deny wins over allow, and IPv4-mapped blocks in the lists are the IPv4 blocks they map', async () => {
      const options = {
        policies: { limit: 5, window: '1m' },
        trustProxy: ['loopback'],
        allow: ['10.0.0.0/8'],
        deny: ['10.0.0.5', '::ffff:203.0.113.0/120', '::ffff:198.51.100.0/120'],
      };
      await withServer(options, async ({ url }) => {
        const at = (xff: string) => get(url, '/', { 'x-forwarded-for': xff }).then((r) => r.status);
        assert.equal(await at('10.0.0.5'), 403, 'denied inside an allowed block');
        assert.equal(await at('10.0.0.6'), 200);
        for (const ip of ['203.0.113.77', '::ffff:203.0.113.77', '::ffff:cb00:714d', '198.51.100.1'])
          assert.equal(await at(ip), 403, ip);
        assert.equal(await at('203.0.114.1'), 200);
      });
      await withServer({ policies: { limit: 5, window: '1m' }, deny: ['::/0'] }, async ({ url }) => {
        assert.equal((await get(url)).status, 403, '::/0 holds the IPv4-mapped block, so every IPv4 client');
      });
    });
    it('onStoreError "closed" on a Redis that is gone answers 503 with Retry-After, not 429', async () => {
      const dead = await RedisServer.start();
      const client = new Redis(dead.port, '127.0.0.1', { maxRetriesPerRequest: 0 });
      client.on('error', () => {});
      const store = new RedisStore({ client, onStoreError: 'closed', timeout: 100 });
      await dead.kill();
      try {
        await withServer({ policies: { limit: 5, window: '1m' }, store }, async ({ url }) => {
          const res = await get(url);
          assert.equal(res.status, 503);
          assert.ok(Number(res.headers.get('retry-after')) >= 1);
          assert.equal(JSON.parse(res.body).title, 'Service Unavailable');
        });
      } finally {
        client.disconnect();
        await dead.stop();
      }
    });

    it('warns once when forwarding headers arrive and no proxy is trusted', async () => {
      const warnings: Error[] = [];
      const onWarning = (w: Error) => {
        if ((w as { code?: string }).code === 'FLOODGATE_UNTRUSTED_FORWARDING') warnings.push(w);
      };
      process.on('warning', onWarning);
      try {
        await withServer({ policies: { limit: 10, window: '1m' } }, async ({ url }) => {
          await get(url);
          for (let i = 0; i < 3; i++) await get(url, '/', { 'x-forwarded-for': `203.0.113.${i}` });
          await get(url, '/', { forwarded: 'for=203.0.113.9' });
        });
        await withServer({ policies: { limit: 10, window: '1m' }, trustProxy: 1 }, async ({ url }) => {
          await get(url, '/', { 'x-forwarded-for': '203.0.113.1' });
        });
        await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
        assert.equal(warnings.length, 1, 'once per middleware, and never when a proxy is trusted');
        assert.match(warnings[0]!.message, /X-Forwarded-For.*trustProxy/s);
      } finally {
        process.off('warning', onWarning);
      }
    });
  });
}

describe('Hono on a runtime without client addresses (app.request, Bun, Deno, Workers)', () => {
  async function three(limit: ReturnType<typeof honoLimit>) {
    const app = new Hono();
    const errors: Error[] = [];
    app.onError((error, c) => {
      errors.push(error);
      return c.text('error', 500);
    });
    app.use(limit);
    app.get('/', (c) => c.text('ok'));
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await app.request('/')).status);
    return { statuses, errors };
  }

  it('fails loudly instead of limiting the whole world as one client', async () => {
    const { statuses, errors } = await three(honoLimit({ policies: { limit: 2, window: '1m' } }));
    assert.deepEqual(statuses, [500, 500, 500]);
    assert.equal((errors[0] as { code?: string }).code, 'ERR_FLOODGATE_NO_CLIENT_ADDRESS');
    assert.match(errors[0]!.message, /address/);
  });

  it('limits by the address the application gives, or by its own key', async () => {
    let n = 0;
    const byAddress = await three(
      honoLimit({ policies: { limit: 1, window: '1m' }, address: () => `203.0.113.${n++}` }),
    );
    assert.deepEqual(byAddress.statuses, [200, 200, 200], 'three clients, three budgets');
    const byKey = await three(
      honoLimit({ policies: { limit: 2, window: '1m' }, key: () => 'tenant-1', onMissingKey: 'reject' }),
    );
    assert.deepEqual(byKey.statuses, [200, 200, 429]);
  });
});

describe('Hono: an address function that answers no address', () => {
  for (const answer of [undefined, '', 'garbage', 42, Promise.resolve('203.0.113.1')]) {
    it(`${typeof answer === 'object' ? 'a promise' : JSON.stringify(answer)}: the limit by IP says so, never one shared client`, async () => {
      const app = new Hono();
      const errors: Error[] = [];
      app.onError((error, c) => {
        errors.push(error);
        return c.text('error', 500);
      });
      app.use(honoLimit({ policies: { limit: 5, window: '1m' }, address: () => answer as string }));
      app.get('/', (c) => c.text('ok'));
      assert.equal((await app.request('/')).status, 500);
      assert.equal((errors[0] as { code?: string }).code, 'ERR_FLOODGATE_NO_CLIENT_ADDRESS');
    });
  }

  it('address lists need an address too: no silent skip of a deny list', async () => {
    const app = new Hono();
    const errors: Error[] = [];
    app.onError((error, c) => {
      errors.push(error);
      return c.text('error', 500);
    });
    app.use(honoLimit({ policies: { limit: 5, window: '1m' }, key: () => 'k', deny: ['203.0.113.0/24'] }));
    app.get('/', (c) => c.text('ok'));
    assert.equal((await app.request('/')).status, 500);
    assert.equal((errors[0] as { code?: string }).code, 'ERR_FLOODGATE_NO_CLIENT_ADDRESS');
  });
});

describe('Hono on Node: a refusal written on the Node response', () => {
  it("keeps the fields other middleware set before it, and the limiter's own, with its body's type", async () => {
    const app = new Hono();
    app.use(async (c, next) => {
      c.header('X-Request-Id', 'r-1');
      await next();
    });
    let custom = false;
    app.use(
      honoLimit({
        policies: { limit: 1, window: '1h' },
        onLimited: () =>
          custom ? { status: 429, headers: [['X-Why', 'custom']], body: 'slow down' } : undefined,
      }),
    );
    app.get('/', (c) => c.text('ok'));
    const server = await new Promise<Server>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as Server));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      assert.equal((await get(url)).status, 200);
      const refused = await get(url);
      assert.equal(refused.status, 429);
      assert.equal(refused.headers.get('x-request-id'), 'r-1');
      assert.equal(refused.headers.get('content-type'), 'application/problem+json');
      assert.equal(refused.headers.get('retry-after'), '3600');
      assert.match(refused.headers.get('ratelimit') ?? '', /;r=0;t=\d+$/);
      assert.equal(JSON.parse(refused.body).status, 429);
      custom = true;
      const own = await get(url);
      assert.equal(own.status, 429);
      assert.equal(own.body, 'slow down');
      assert.equal(own.headers.get('x-why'), 'custom');
      assert.equal(own.headers.get('x-request-id'), 'r-1');
      assert.match(own.headers.get('content-type') ?? '', /^text\/plain/, "Hono's default for a text body");
      assert.match(own.headers.get('ratelimit') ?? '', /;r=0;t=\d+$/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('Fastify: the HEAD route Fastify adds for a GET route', () => {
  it("spends from the GET route's own budget", async () => {
    const app = Fastify();
    await app.register(floodgate, { policies: { limit: 100, window: '1m' } });
    app.get('/own', { config: { rateLimit: { policies: { limit: 2, window: '1m' } } } }, async () => 'ok');
    await app.ready();
    const codes: number[] = [];
    for (const method of ['GET', 'HEAD', 'GET', 'HEAD'] as const)
      codes.push((await app.inject({ method, url: '/own' })).statusCode);
    assert.deepEqual(codes, [200, 200, 429, 429]);
    await app.close();
  });
});

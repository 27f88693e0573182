import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExecutionContext } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { ManualClock } from '../../src/core/clock.js';
import { Limiter } from '../../src/limiter/limiter.js';
import { Shedder } from '../../src/limiter/shedder.js';
import {
  byApiKey,
  byUser,
  FloodgateGuard,
  FloodgateLimits,
  FloodgateModule,
  RateLimit,
  SkipRateLimit,
} from '../../src/nest/index.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { holdRequests } from '../helpers/gate.js';
import { useRedis } from '../helpers/redis.js';
import {
  AuthController,
  PLATFORMS,
  PlainController,
  SHARED,
  startApp,
  statuses,
  times,
  using,
} from './app.js';

// Real Nest applications on Express and Fastify, spoken to over HTTP.

/** Resolves once `check` holds, polling each turn of the event loop (no timer, no sleep). */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !check(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(check(), 'the condition never held');
}

let redis: Redis;
useRedis((client) => {
  redis = client;
});

for (const platform of PLATFORMS) {
  describe(`floodgate/nest on ${platform}`, () => {
    it('limits every route through the global guard: exactly the limit of 20 parallel requests get through', async () => {
      const floodgate = FloodgateModule.forRoot({
        policies: { algorithm: 'fixed-window', limit: 5, window: '1m' },
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        const replies = await Promise.all(times(20, () => fetch(`${url}/`)));
        assert.equal(replies.filter((r) => r.status === 200).length, 5);
        assert.equal(replies.filter((r) => r.status === 429).length, 15);
        const ok = replies.find((r) => r.status === 200)!;
        assert.match(ok.headers.get('ratelimit') ?? '', /^"fixed-window-5-per-1m";r=\d;t=\d+$/);
        assert.equal(ok.headers.get('ratelimit-policy'), '"fixed-window-5-per-1m";q=5;w=60');
        const refused = replies.find((r) => r.status === 429)!;
        assert.match(refused.headers.get('content-type') ?? '', /^application\/json/);
        assert.ok(Number(refused.headers.get('retry-after')) >= 1);
        const body = (await refused.json()) as Record<string, unknown>;
        assert.equal(body.status, 429);
        assert.equal(body.title, 'Too Many Requests');
        assert.equal(body.policy, 'fixed-window-5-per-1m');
      });
    });

    it('sheds with forRoot({ shed }) alone: no per-client limit, no header fields, routes with their own limits kept', async () => {
      const shedder = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 5 }, eventLoop: false });
      const floodgate = FloodgateModule.forRoot({ shed: shedder });
      // A route spending from the module's budget (`cost: 2`) has none to spend from: refused at start.
      await assert.rejects(startApp({ platform, floodgate }), /RootController\.expensive: option "cost"/);
      const controllers = [PlainController, AuthController];
      await using(startApp({ platform, floodgate, controllers }), async ({ url }) => {
        const open = holdRequests();
        try {
          const held = times(10, () => fetch(`${url}/plain/wait`));
          await until(() => shedder.inflight === 4 && shedder.stats.shed.default === 6);
          open();
          assert.deepEqual(await statuses(held), [200, 200, 200, 200, 503, 503, 503, 503, 503, 503]);
        } finally {
          open();
        }
        await until(() => shedder.inflight === 0);
        // One after another: the shedder's four default slots are the only limit.
        for (let i = 0; i < 30; i++) {
          const reply = await fetch(`${url}/plain/decision`);
          assert.equal(reply.status, 200);
          assert.equal(reply.headers.get('ratelimit'), null);
          assert.equal(await reply.text(), 'none');
        }
        // A controller's own policies still count (in a store of its own), behind the same shedder.
        const logins = await statuses(
          times(5, () => fetch(`${url}/auth/login`, { method: 'POST', headers: { 'x-password': 'wrong' } })),
        );
        assert.deepEqual(logins, [401, 401, 401, 429, 429]);
        await until(() => shedder.inflight === 0);
      });
    });

    it('gives handlers the decision, as a parameter and as request.rateLimit', async () => {
      const floodgate = FloodgateModule.forRoot({ policies: { limit: 10, window: '1m' } });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        assert.equal(await (await fetch(`${url}/decision`)).text(), 'remaining=9');
        assert.equal(await (await fetch(`${url}/decision`)).text(), 'remaining=8');
      });
    });

    it('skips routes and controllers marked @SkipRateLimit, and undoes it with @SkipRateLimit(false)', async () => {
      const floodgate = FloodgateModule.forRoot({ policies: { limit: 1, window: '1m' } });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        assert.deepEqual(await statuses(times(5, () => fetch(`${url}/health`))), [200, 200, 200, 200, 200]);
        assert.equal((await fetch(`${url}/health`)).headers.get('ratelimit'), null);
        assert.deepEqual(
          await statuses(times(5, () => fetch(`${url}/unlimited`))),
          [200, 200, 200, 200, 200],
        );
        assert.deepEqual(await statuses(times(3, () => fetch(`${url}/unlimited/but-this`))), [200, 429, 429]);
      });
    });

    it("charges a route's cost from the module's policies", async () => {
      const floodgate = FloodgateModule.forRoot({
        policies: { algorithm: 'fixed-window', limit: 5, window: '1m' },
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        assert.deepEqual(await statuses(times(4, () => fetch(`${url}/expensive`))), [200, 200, 429, 429]);
        assert.equal((await fetch(`${url}/`)).status, 200);
        assert.equal((await fetch(`${url}/`)).status, 429);
      });
    });

    it("gives a controller's own policies one budget for its routes, apart from the module's, and counts only failures", async () => {
      const floodgate = FloodgateModule.forRoot({ policies: { limit: 100, window: '1m' } });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        // Right passwords are given back; wrong ones, on either route, spend the controller's 3.
        for (let i = 0; i < 5; i++) {
          const reply = await fetch(`${url}/auth/login`, {
            method: 'POST',
            headers: { 'x-password': 'right' },
          });
          assert.equal(reply.status, 201);
        }
        const guesses = [
          ...times(10, () => fetch(`${url}/auth/login`, { method: 'POST' })),
          ...times(10, () => fetch(`${url}/auth/reset`, { method: 'POST' })),
        ];
        const got = await statuses(guesses);
        assert.equal(
          got.filter((s) => s === 401).length,
          3,
          `parallel guesses that reached the handler: ${got}`,
        );
        assert.equal(got.filter((s) => s === 429).length, 17);
        assert.equal((await fetch(`${url}/auth/status`)).status, 429);
        // The module's budget is untouched by the controller's.
        const root = await fetch(`${url}/decision`);
        assert.equal(await root.text(), 'remaining=99');
      });
    });

    it('keys by user, after an authentication guard', async () => {
      const floodgate = FloodgateModule.forRoot({
        policies: { limit: 2, window: '1m' },
        key: byUser(),
        global: false,
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        const as = (user: string) => fetch(`${url}/me`, { headers: { 'x-user': user } });
        assert.deepEqual(await statuses([as('ann'), as('ann'), as('ann')]), [200, 200, 429]);
        assert.deepEqual(await statuses([as('bob'), as('bob'), as('bob')]), [200, 200, 429]);
        // No user: by IP (the default onMissingKey).
        assert.deepEqual(await statuses(times(3, () => fetch(`${url}/me`))), [200, 200, 429]);
      });
    });

    it("keeps a route's own policies apart, with a function key", async () => {
      const floodgate = FloodgateModule.forRoot({
        policies: { limit: 5, window: '1m' },
        key: byUser(),
        global: false,
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        const as = (user: string, path = '/me/strict') =>
          fetch(`${url}${path}`, { headers: { 'x-user': user } });
        assert.deepEqual(await statuses([as('ann'), as('ann')]), [200, 429]);
        assert.equal((await as('bob')).status, 200);
        assert.equal((await as('ann', '/me')).status, 200);
      });
    });

    it("uses a route's own limiter, given by the application", async () => {
      await SHARED.reset('ip:127.0.0.1');
      const floodgate = FloodgateModule.forRoot({ policies: { limit: 100, window: '1m' } });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        const replies = await Promise.all(times(3, () => fetch(`${url}/shared`)));
        assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 429]);
        assert.match(replies[0]!.headers.get('ratelimit') ?? '', /^"shared";/);
      });
    });

    it("reads X-Forwarded-For by Floodgate's own trustProxy when it is given", async () => {
      const floodgate = FloodgateModule.forRoot({ policies: { limit: 1, window: '1m' }, trustProxy: true });
      const from = (url: string, ip: string) => fetch(`${url}/`, { headers: { 'x-forwarded-for': ip } });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        assert.deepEqual(await statuses([from(url, '192.0.2.7'), from(url, '192.0.2.8')]), [200, 200]);
      });
    });

    it('limits only guarded controllers when global is false', async () => {
      const floodgate = FloodgateModule.forRoot({ policies: { limit: 1, window: '1m' }, global: false });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        assert.deepEqual(await statuses(times(3, () => fetch(`${url}/`))), [200, 200, 200]);
        assert.deepEqual(await statuses(times(3, () => fetch(`${url}/guarded`))), [200, 429, 429]);
      });
    });

    it("decides a request once when the guard is both global and the controller's", async () => {
      const floodgate = FloodgateModule.forRoot({
        policies: { algorithm: 'fixed-window', limit: 4, window: '1m' },
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        assert.deepEqual(
          await statuses(times(6, () => fetch(`${url}/guarded`))),
          [200, 200, 200, 200, 429, 429],
        );
      });
    });

    it("finds the client by the platform's trust-proxy setting", async () => {
      const floodgate = FloodgateModule.forRoot({ policies: { limit: 1, window: '1m' } });
      const from = (url: string, ip: string) => fetch(`${url}/`, { headers: { 'x-forwarded-for': ip } });
      await using(startApp({ platform, floodgate, trustProxy: true }), async ({ url }) => {
        assert.deepEqual(
          await statuses([from(url, '192.0.2.1'), from(url, '192.0.2.2'), from(url, '192.0.2.3')]),
          [200, 200, 200],
        );
        assert.equal((await from(url, '192.0.2.1')).status, 429);
      });
      const untrusting = FloodgateModule.forRoot({ policies: { limit: 1, window: '1m' } });
      await using(startApp({ platform, floodgate: untrusting }), async ({ url }) => {
        assert.deepEqual(await statuses([from(url, '192.0.2.1'), from(url, '192.0.2.2')]), [200, 429]);
      });
    });

    it('keys by API key, hashed, and answers 400 to a request without one when asked to', async () => {
      const floodgate = FloodgateModule.forRoot({
        policies: { limit: 1, window: '1m' },
        key: byApiKey(),
        onMissingKey: 'reject',
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        const key = (k: string) => fetch(`${url}/`, { headers: { 'x-api-key': k } });
        assert.deepEqual(await statuses([key('a'), key('b'), key('a')]), [200, 200, 429]);
        const missing = await fetch(`${url}/`);
        assert.equal(missing.status, 400);
        assert.match(((await missing.json()) as { detail: string }).detail, /API key/);
      });
    });

    it("lets the application's exception filters answer refusals", async () => {
      const floodgate = FloodgateModule.forRoot({ policies: { limit: 1, window: '1m' } });
      await using(startApp({ platform, floodgate, filter: true }), async ({ url }) => {
        await fetch(`${url}/`);
        const refused = await fetch(`${url}/`);
        assert.equal(refused.status, 418);
        assert.deepEqual(await refused.json(), { refused: 429 });
      });
    });

    it('takes its options from a factory, with what it injects', async () => {
      const clock = new ManualClock(0);
      const floodgate = FloodgateModule.forRootAsync({
        useFactory: (limit: number) => ({
          policies: { algorithm: 'fixed-window', limit, window: '1m' },
          clock,
        }),
        inject: ['LIMIT'],
        imports: [limitModule(2)],
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        assert.deepEqual(await statuses(times(3, () => fetch(`${url}/`))), [200, 200, 429]);
      });
    });

    it('shares one exact budget between two applications on one Redis', async () => {
      const limiter = () =>
        new Limiter({
          policies: { algorithm: 'fixed-window', limit: 25, window: '1m' },
          store: new RedisStore({ client: redis, prefix: `nest-${platform}:` }),
        });
      const a = await startApp({ platform, floodgate: FloodgateModule.forRoot({ limiter: limiter() }) });
      const b = await startApp({ platform, floodgate: FloodgateModule.forRoot({ limiter: limiter() }) });
      try {
        const got = await statuses(times(100, (i) => fetch(`${i % 2 === 0 ? a.url : b.url}/`)));
        assert.equal(got.filter((s) => s === 200).length, 25);
        assert.equal(got.filter((s) => s === 429).length, 75);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}

function limitModule(limit: number) {
  return {
    module: class LimitModule {},
    providers: [{ provide: 'LIMIT', useValue: limit }],
    exports: ['LIMIT'],
    global: false,
  };
}

for (const platform of PLATFORMS) {
  describe(`floodgate/nest on ${platform}, at the edges`, () => {
    it('deny and allow lists match an IPv6 client by its address', async () => {
      const policies = { algorithm: 'fixed-window', limit: 1, window: '1m' } as const;
      for (const deny of [['::1'], ['::/0']]) {
        const floodgate = FloodgateModule.forRoot({ policies, deny });
        await using(startApp({ platform, floodgate, host: '::1' }), async ({ url }) => {
          assert.equal((await fetch(`${url}/`)).status, 403, `deny ${deny}`);
        });
      }
      const floodgate = FloodgateModule.forRoot({ policies, allow: ['::1'] });
      await using(startApp({ platform, floodgate, host: '::1' }), async ({ url }) => {
        assert.deepEqual(await statuses(times(3, () => fetch(`${url}/`))), [200, 200, 200]);
      });
    });

    it('refuses a cost that is not a non-negative integer with 400, never admitting it', async () => {
      let bad: unknown = Number.NaN;
      const floodgate = FloodgateModule.forRoot({
        policies: { algorithm: 'fixed-window', limit: 5, window: '1m' },
        cost: () => bad as number,
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        for (const value of [Number.NaN, -1, 0.5, '3', null, Number.POSITIVE_INFINITY]) {
          bad = value;
          assert.equal((await fetch(`${url}/`)).status, 400, `cost ${String(value)}`);
        }
        bad = 1;
        assert.equal(await (await fetch(`${url}/decision`)).text(), 'remaining=4', 'nothing was charged');
      });
    });
  });
}

describe('floodgate/nest options', () => {
  it('refuses bad module options at start, naming the option', () => {
    assert.throws(
      () => FloodgateModule.forRoot({ policies: { limit: -1, window: '1m' } }),
      /policies.*limit/,
    );
    assert.throws(
      () => FloodgateModule.forRoot({ policies: { limit: 1, window: '1m' }, global: 'yes' as never }),
      /global/,
    );
    assert.throws(
      () => FloodgateModule.forRoot({ policies: { limit: 1, window: '1m' }, ttl: 60 } as never),
      /ttl/,
    );
    assert.throws(() => FloodgateModule.forRootAsync({} as never), /useFactory/);
  });

  it('passes RPC (microservice) calls through', () => {
    const guard = new FloodgateGuard(new FloodgateLimits({ policies: { limit: 1, window: '1m' } }));
    const context = { getType: () => 'rpc' } as unknown as ExecutionContext;
    assert.equal(guard.canActivate(context), true);
    assert.equal(guard.canActivate(context), true);
  });

  it('keys by user id, sub or userId, or by what a function picks', () => {
    const request = (user: unknown) => ({ headers: {}, user });
    assert.equal(byUser()(request({ id: 7 })), 'user:7');
    assert.equal(byUser()(request({ sub: 'auth0|x' })), 'user:auth0|x');
    assert.equal(byUser()(request({ userId: 'u' })), 'user:u');
    assert.equal(byUser()(request({ name: 'no id' })), undefined);
    assert.equal(byUser()(request(undefined)), undefined);
    assert.equal(byUser((u: { tenant: string }) => u.tenant)(request({ tenant: 't1' })), 'user:t1');
    assert.throws(() => byUser('id' as never), /byUser/);
  });

  it('refuses bad route settings where the decorator is written', () => {
    assert.throws(() => RateLimit(null as never), /@RateLimit/);
    assert.throws(() => FloodgateModule.forRoot(null as never), /options/);
    assert.throws(() => RateLimit({ cost: -1 }), /cost/);
    assert.throws(() => RateLimit({ policies: { limit: 0, window: '1m' } }), /policies.*limit/);
    assert.throws(() => RateLimit({ store: {} } as never), /store.*module's/);
    assert.throws(() => RateLimit({ limit: 5 } as never), /limit/);
    assert.throws(() => SkipRateLimit('no' as never), /@SkipRateLimit/);
  });

  it("fails the application's start when a factory's options are bad", async () => {
    const floodgate = FloodgateModule.forRootAsync({
      useFactory: () => ({ policies: { limit: 1, window: 'soon' as never } }),
    });
    await assert.rejects(startApp({ platform: 'express', floodgate }), /policies.*window/);
  });
});

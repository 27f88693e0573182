import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Controller, Get, Module, Post } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { FloodgateModule, RateLimit } from '../../src/nest/index.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { useRedis } from '../helpers/redis.js';
import { PLATFORMS, type RunningApp, startApp, statuses, times, using } from './app.js';

// Where a budget applies, and when a route's settings are checked: real applications on both platforms.

function admitted(got: number[]): number {
  return got.filter((s) => s < 400).length;
}

let redis: Redis;
useRedis((client) => {
  redis = client;
});

const THREE = { algorithm: 'fixed-window', limit: 3, window: '1m' } as const;

/** A base class of CRUD controllers, its budget declared once for every controller that extends it. */
@RateLimit({ policies: THREE })
class Crud {
  @Get()
  list(): string {
    return 'list';
  }
}

@Controller('users')
class UsersController extends Crud {}

@Controller('orders')
class OrdersController extends Crud {}

/** A `UsersController` of a versioned module: two of them, one per module, of one name. */
function versioned(version: string) {
  @Controller(`${version}/users`)
  @RateLimit({ policies: THREE })
  class UsersController {
    @Get()
    list(): string {
      return version;
    }
  }
  return UsersController;
}

@Module({ controllers: [versioned('v1')] })
class V1Module {}

@Module({ controllers: [versioned('v2')] })
class V2Module {}

@Controller('login')
class LoginController {
  @Post()
  @RateLimit({ countOnly: 'failed' })
  login(): string {
    return 'welcome';
  }
}

@Controller('a')
class AController {
  @Get()
  get(): string {
    return 'a';
  }

  @Get('too')
  too(): string {
    return 'a too';
  }
}

@Controller('b')
@RateLimit({ policies: THREE })
class BController {
  @Get()
  get(): string {
    return 'b';
  }

  @Get('too')
  too(): string {
    return 'b too';
  }

  @Get('own')
  @RateLimit({ scope: 'route' })
  own(): string {
    return 'b own';
  }
}

/** Limits that depend on the caller: a plan's tier, named per request. */
@Controller('plans')
@RateLimit({
  tiers: {
    free: { algorithm: 'fixed-window', limit: 1, window: '1m' },
    pro: { algorithm: 'fixed-window', limit: 3, window: '1m' },
  },
  tier: (request) => {
    const plan = request.headers['x-plan'];
    return plan === 'pro' ? 'pro' : plan === 'bad' ? 'gold' : 'free';
  },
})
class PlansController {
  @Get()
  get(): string {
    return 'plan';
  }
}

async function both(
  setup: () => Promise<RunningApp>,
  run: (a: RunningApp, b: RunningApp) => Promise<void>,
): Promise<void> {
  const a = await setup();
  const b = await setup();
  try {
    await run(a, b);
  } finally {
    await a.close();
    await b.close();
  }
}

for (const platform of PLATFORMS) {
  describe(`floodgate/nest budgets on ${platform}`, () => {
    it('refuses a route setting that the module options make impossible when the application starts, naming the route', async () => {
      const floodgate = FloodgateModule.forRoot({
        policies: { algorithm: 'concurrency', limit: 2, leaseTimeout: '1m' },
      });
      await assert.rejects(
        startApp({ platform, floodgate, controllers: [LoginController] }),
        /@RateLimit on AppModule\.LoginController\.login: option "countOnly" must be absent when a policy is a concurrency limit/,
      );
      const async = FloodgateModule.forRootAsync({
        useFactory: async () => ({
          policies: { algorithm: 'concurrency', limit: 2, leaseTimeout: '1m' } as const,
        }),
      });
      await assert.rejects(
        startApp({ platform, floodgate: async, controllers: [LoginController] }),
        /LoginController\.login.*countOnly/,
      );
    });

    it('gives each controller that inherits @RateLimit({ policies }) its own budget, the same in every process', async () => {
      const prefix = `crud-${platform}:`;
      const setup = () =>
        startApp({
          platform,
          floodgate: FloodgateModule.forRoot({
            policies: THREE,
            store: new RedisStore({ client: redis, prefix }),
          }),
          controllers: [UsersController, OrdersController],
        });
      await both(setup, async (a, b) => {
        // Each application first meets a different subclass: neither may name the budget after it.
        assert.equal((await fetch(`${a.url}/orders`)).status, 200);
        assert.equal((await fetch(`${b.url}/users`)).status, 200);
        const users = await statuses(times(10, (i) => fetch(`${i % 2 ? a.url : b.url}/users`)));
        const orders = await statuses(times(10, (i) => fetch(`${i % 2 ? a.url : b.url}/orders`)));
        assert.equal(admitted(users), 2, `users: ${users}`);
        assert.equal(admitted(orders), 2, `orders: ${orders}`);
      });
      const keys = await redis.keys(`${prefix}*`);
      assert.ok(
        keys.some((k) => k.includes('AppModule.UsersController:ip:')),
        keys.join(' '),
      );
      assert.ok(
        keys.some((k) => k.includes('AppModule.OrdersController:ip:')),
        keys.join(' '),
      );
    });

    it('gives same-named controllers of two modules a budget each', async () => {
      const prefix = `versions-${platform}:`;
      const setup = () =>
        startApp({
          platform,
          floodgate: FloodgateModule.forRoot({
            policies: THREE,
            store: new RedisStore({ client: redis, prefix }),
          }),
          controllers: [],
          imports: [V1Module, V2Module],
        });
      await both(setup, async (a, b) => {
        const v1 = await statuses(times(8, (i) => fetch(`${i % 2 ? a.url : b.url}/v1/users`)));
        const v2 = await statuses(times(8, (i) => fetch(`${i % 2 ? a.url : b.url}/v2/users`)));
        assert.equal(admitted(v1), 3, `v1: ${v1}`);
        assert.equal(admitted(v2), 3, `v2: ${v2}`);
      });
    });

    it('refuses two classes of one name in one module that would count in one budget', async () => {
      const [first, second] = [versioned('x'), versioned('y')];
      await assert.rejects(
        startApp({
          platform,
          floodgate: FloodgateModule.forRoot({ policies: THREE }),
          controllers: [first, second],
        }),
        /both named AppModule\.UsersController/,
      );
    });

    it('shares the module budget across the application by default, and counts per route with scope "route"', async () => {
      const policies = THREE;
      const paths = ['/a', '/a/too'];
      await using(
        startApp({ platform, floodgate: FloodgateModule.forRoot({ policies }), controllers: [AController] }),
        async ({ url }) => {
          const got = await statuses(paths.flatMap((p) => times(4, () => fetch(`${url}${p}`))));
          assert.equal(admitted(got), 3, `one budget across routes: ${got}`);
        },
      );
      const perRoute = FloodgateModule.forRoot({ policies, scope: 'route' });
      await using(
        startApp({ platform, floodgate: perRoute, controllers: [AController] }),
        async ({ url }) => {
          for (const path of paths) {
            const got = await statuses(times(5, () => fetch(`${url}${path}`)));
            assert.deepEqual(got, [200, 200, 200, 429, 429], path);
          }
        },
      );
    });

    it("shares a controller's own budget across its routes, unless a route asks for its own", async () => {
      await using(
        startApp({
          platform,
          floodgate: FloodgateModule.forRoot({ policies: { limit: 100, window: '1m' } }),
          controllers: [BController],
        }),
        async ({ url }) => {
          const got = await statuses(['/b', '/b/too'].flatMap((p) => times(3, () => fetch(`${url}${p}`))));
          assert.equal(admitted(got), 3, `${got}`);
          assert.deepEqual(await statuses(times(4, () => fetch(`${url}/b/own`))), [200, 200, 200, 429]);
        },
      );
      const perRoute = FloodgateModule.forRoot({ policies: { limit: 100, window: '1m' }, scope: 'route' });
      await using(
        startApp({ platform, floodgate: perRoute, controllers: [BController] }),
        async ({ url }) => {
          for (const path of ['/b', '/b/too'])
            assert.deepEqual(
              await statuses(times(4, () => fetch(`${url}${path}`))),
              [200, 200, 200, 429],
              path,
            );
        },
      );
    });
  });
}

for (const platform of PLATFORMS) {
  describe(`floodgate/nest tiers on ${platform}`, () => {
    it('limits each call by the policies of the tier it names, and refuses a tier nobody configured', async () => {
      const errors: unknown[] = [];
      const floodgate = FloodgateModule.forRoot({
        policies: { limit: 100, window: '1m' },
        onError: (e) => errors.push(e),
      });
      await using(startApp({ platform, floodgate, controllers: [PlansController] }), async ({ url }) => {
        const as = (plan?: string) =>
          fetch(`${url}/plans`, { headers: plan === undefined ? {} : { 'x-plan': plan } });
        assert.deepEqual(await statuses(times(3, () => as())), [200, 429, 429]);
        assert.deepEqual(await statuses(times(5, () => as('pro'))), [200, 200, 200, 429, 429]);
        const bad = await as('bad');
        assert.equal(bad.status, 400);
        assert.match(((await bad.json()) as { detail: string }).detail, /tier is not valid/);
        assert.match(String(errors[0]), /tier must be one of free, pro; got "gold"/);
      });
    });
  });
}

describe('floodgate/nest scope option', () => {
  it('checks tiers where they are written', () => {
    const tier = () => 'free';
    assert.throws(
      () => RateLimit({ tiers: { free: { limit: 0, window: '1m' } }, tier }),
      /"tiers\.free\.limit" must be a positive integer/,
    );
    assert.throws(
      () => RateLimit({ tiers: { free: { limit: 1, window: '1m' } } }),
      /"tier" must be a function/,
    );
    assert.throws(() => RateLimit({ tiers: {}, tier }), /"tiers" must be policy sets by name/);
    assert.throws(
      () =>
        RateLimit({
          tiers: { free: { limit: 1, window: '1m' } },
          tier,
          policies: { limit: 1, window: '1m' },
        }),
      /"policies" must be absent when tiers are given/,
    );
  });

  it('is checked where it is written', () => {
    assert.throws(
      () => FloodgateModule.forRoot({ policies: THREE, scope: 'handler' as never }),
      /"scope" must be one of "app", "route"/,
    );
    assert.throws(() => RateLimit({ scope: 1 as never }), /scope/);
  });

  it('closes a store given to the module when the application shuts down, and never a limiter given whole', async () => {
    class ClosingStore extends MemoryStore {
      closed = 0;
      close(): void {
        this.closed++;
      }
    }
    const store = new ClosingStore();
    const app = await startApp({
      platform: 'express',
      floodgate: FloodgateModule.forRoot({ policies: THREE, store }),
      controllers: [AController],
    });
    assert.equal((await fetch(`${app.url}/a`)).status, 200);
    assert.equal(store.closed, 0);
    await app.close();
    assert.equal(store.closed, 1);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Controller, type ExecutionContext, Get, HttpException, Injectable, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import {
  type FloodgateException,
  FloodgateGuard,
  FloodgateModule,
  type FloodgateOptionsFactory,
  type LimitedRoute,
  type NestRequest,
  type RequestResponse,
} from '../../src/nest/index.js';
import { PLATFORMS, startApp, statuses, times, using } from './app.js';

// The guard extended through its hooks, forRootAsync's other forms, and the refusal's body.

@Controller('hooks')
class HooksController {
  @Get()
  get(): string {
    return 'ok';
  }

  @Get('other')
  other(): string {
    return 'other';
  }
}

const keys: string[] = [];

/** Keys by tenant (async, as a lookup would be), counts per route under its own names, skips internal calls, refuses with 418. */
@Injectable()
class TenantGuard extends FloodgateGuard {
  protected override async getTracker(request: NestRequest): Promise<string | undefined> {
    const tenant = request.headers['x-tenant'];
    return typeof tenant === 'string' ? `tenant:${tenant}` : undefined;
  }

  protected override generateKey(route: LimitedRoute, key: string): string {
    const stored = `${route.handler.name}/${key}`;
    keys.push(stored);
    return stored;
  }

  protected override shouldSkip(context: ExecutionContext): boolean {
    return context.switchToHttp().getRequest<NestRequest>().headers['x-internal'] === 'yes';
  }

  protected override throwThrottlingException(
    _context: ExecutionContext,
    refusal: FloodgateException,
  ): never {
    throw new HttpException({ tooMany: refusal.getStatus() }, 418);
  }
}

/** Finds the request itself: here the platform's, seen through the hook. */
let found = 0;
@Injectable()
class FindingGuard extends FloodgateGuard {
  protected override getRequestResponse(context: ExecutionContext): RequestResponse {
    found++;
    return super.getRequestResponse(context);
  }
}

class OptionsFactory implements FloodgateOptionsFactory {
  createFloodgateOptions() {
    return { policies: { algorithm: 'fixed-window', limit: 2, window: '1m' } } as const;
  }
}

@Module({ providers: [OptionsFactory], exports: [OptionsFactory] })
class ConfigModule {}

for (const platform of PLATFORMS) {
  describe(`floodgate/nest extended on ${platform}`, () => {
    it('keys, names, skips and refuses through the hooks of a subclass registered as the application guard', async () => {
      keys.length = 0;
      const floodgate = FloodgateModule.forRoot({
        policies: { algorithm: 'fixed-window', limit: 2, window: '1m' },
        global: false,
      });
      const setup = {
        platform,
        floodgate,
        controllers: [HooksController],
        providers: [{ provide: APP_GUARD, useClass: TenantGuard }],
      };
      await using(startApp(setup), async ({ url }) => {
        const as = (tenant: string, path = '/hooks') =>
          fetch(`${url}${path}`, { headers: { 'x-tenant': tenant } });
        assert.deepEqual(await statuses(times(4, () => as('acme'))), [200, 200, 418, 418]);
        assert.deepEqual(await statuses(times(3, () => as('globex'))), [200, 200, 418]);
        const refused = await as('acme');
        assert.deepEqual(await refused.json(), { tooMany: 429 });
        // generateKey named the budgets by handler: another route counts apart.
        assert.deepEqual(await statuses(times(3, () => as('acme', '/hooks/other'))), [200, 200, 418]);
        assert.ok(keys.includes('get/tenant:acme') && keys.includes('other/tenant:acme'), keys.join(' '));
        // Skipped calls cost nothing and carry no header fields.
        const internal = await fetch(`${url}/hooks`, {
          headers: { 'x-tenant': 'acme', 'x-internal': 'yes' },
        });
        assert.equal(internal.status, 200);
        assert.equal(internal.headers.get('ratelimit'), null);
        // No tenant: onMissingKey limits by IP.
        assert.deepEqual(await statuses(times(3, () => fetch(`${url}/hooks`))), [200, 200, 418]);
      });
    });

    it('finds the request and response through getRequestResponse when a subclass overrides it', async () => {
      found = 0;
      const floodgate = FloodgateModule.forRoot({ policies: { limit: 2, window: '1m' }, global: false });
      const providers = [{ provide: APP_GUARD, useClass: FindingGuard }];
      await using(
        startApp({ platform, floodgate, controllers: [HooksController], providers }),
        async ({ url }) => {
          const replies = await Promise.all(times(3, () => fetch(`${url}/hooks`)));
          assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 429]);
          assert.match(replies.find((r) => r.ok)!.headers.get('ratelimit') ?? '', /;r=\d;/);
          assert.equal(found, 3);
        },
      );
    });

    it("honours global: false returned by forRootAsync's factory", async () => {
      const floodgate = FloodgateModule.forRootAsync({
        useFactory: async () => ({ policies: { limit: 1, window: '1m' }, global: false }),
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        assert.deepEqual(await statuses(times(3, () => fetch(`${url}/`))), [200, 200, 200]);
        assert.deepEqual(await statuses(times(3, () => fetch(`${url}/guarded`))), [200, 429, 429]);
      });
      // The factory's answer wins over the one beside it.
      const global = FloodgateModule.forRootAsync({
        global: false,
        useFactory: () => ({ policies: { limit: 1, window: '1m' }, global: true }),
      });
      await using(startApp({ platform, floodgate: global }), async ({ url }) => {
        assert.deepEqual(await statuses(times(2, () => fetch(`${url}/`))), [200, 429]);
      });
      const beside = FloodgateModule.forRootAsync({
        global: false,
        useFactory: () => ({ policies: { limit: 1, window: '1m' } }),
      });
      await using(startApp({ platform, floodgate: beside }), async ({ url }) => {
        assert.deepEqual(await statuses(times(2, () => fetch(`${url}/`))), [200, 200]);
      });
    });

    it('takes its options from a factory class, made (useClass) or provided by another module (useExisting)', async () => {
      for (const floodgate of [
        FloodgateModule.forRootAsync({ useClass: OptionsFactory }),
        FloodgateModule.forRootAsync({ imports: [ConfigModule], useExisting: OptionsFactory }),
      ]) {
        await using(startApp({ platform, floodgate }), async ({ url }) => {
          assert.deepEqual(await statuses(times(3, () => fetch(`${url}/`))), [200, 200, 429]);
        });
      }
    });

    it("answers a refusal with the problem fields and Nest's statusCode and message", async () => {
      const floodgate = FloodgateModule.forRoot({
        policies: { algorithm: 'fixed-window', limit: 1, window: '1m' },
      });
      await using(startApp({ platform, floodgate }), async ({ url }) => {
        await fetch(`${url}/`);
        const refused = await fetch(`${url}/`);
        const body = (await refused.json()) as Record<string, unknown>;
        assert.equal(body.statusCode, 429);
        assert.equal(body.status, 429);
        assert.equal(body.title, 'Too Many Requests');
        assert.match(String(body.message), /^Wait \d+ seconds? before trying again\.$/);
        assert.equal(body.message, body.detail);
      });
    });
  });
}

describe('floodgate/nest forRootAsync options', () => {
  it('takes exactly one of useFactory, useClass, useExisting', () => {
    assert.throws(() => FloodgateModule.forRootAsync({} as never), /useFactory/);
    assert.throws(
      () =>
        FloodgateModule.forRootAsync({
          useClass: OptionsFactory,
          useFactory: () => ({ policies: { limit: 1, window: 1 } }),
        }),
      /one of useFactory/,
    );
    assert.throws(() => FloodgateModule.forRootAsync({ useClass: 'x' as never }), /useClass/);
  });

  it("fails the start when a factory's global is not a boolean", async () => {
    const floodgate = FloodgateModule.forRootAsync({
      useFactory: () => ({ policies: { limit: 1, window: '1m' }, global: 'no' as never }),
    });
    await assert.rejects(startApp({ platform: 'express', floodgate }), /"global" must be a boolean/);
  });
});

describe('floodgate/nest imports', () => {
  it('loads neither @nestjs/graphql nor @nestjs/websockets unless the application has a gateway', async () => {
    const { readdir, readFile } = await import('node:fs/promises');
    const dir = new URL('../../src/nest/', import.meta.url);
    for (const file of await readdir(dir)) {
      const source = await readFile(new URL(file, dir), 'utf8');
      assert.doesNotMatch(source, /from '@nestjs\/(graphql|websockets|apollo)'/, file);
      assert.doesNotMatch(source, /import\('@nestjs\/graphql'\)/, file);
    }
  });
});

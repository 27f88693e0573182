import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { invalidOption } from '../core/errors.js';
import { Limiter } from '../limiter/limiter.js';
import { FloodgateGuard } from './guard.js';
import { FloodgateLimits } from './limits.js';
import {
  type FloodgateModuleAsyncOptions,
  type FloodgateModuleOptions,
  globalOption,
  type NestRequest,
} from './options.js';

/** The token of the module's options, as given (or made by `forRootAsync`'s factory). */
export const FLOODGATE_OPTIONS = 'floodgate:options';

/**
 * Floodgate for a Nest application: import it once, in the root module. It provides `FloodgateGuard`
 * (registered for every route unless `global: false`), `FloodgateLimits`, and the module's `Limiter`.
 *
 *     @Module({ imports: [FloodgateModule.forRoot({ policies: { limit: 100, window: '1m' } })] })
 *     export class AppModule {}
 */
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest module is a class, which Nest's injector identifies it by
export class FloodgateModule {
  /** Options checked here, where the module is imported: a bad one fails as the application loads. */
  static forRoot<Req = NestRequest>(options: FloodgateModuleOptions<Req>): DynamicModule {
    const limits = new FloodgateLimits(options as FloodgateModuleOptions<NestRequest>);
    return FloodgateModule.#module(options.global !== false, [
      { provide: FloodgateLimits, useValue: limits },
    ]);
  }

  /** Options from a factory (a config service, a Redis client made by another module): checked when it runs. */
  static forRootAsync<Req = NestRequest>(options: FloodgateModuleAsyncOptions<Req>): DynamicModule {
    if (typeof options !== 'object' || options === null || typeof options.useFactory !== 'function') {
      throw invalidOption(
        'useFactory',
        'a function that returns the module options',
        options?.useFactory,
        'type',
      );
    }
    const global = globalOption(options.global);
    return FloodgateModule.#module(
      global,
      [
        {
          provide: FLOODGATE_OPTIONS,
          useFactory: options.useFactory,
          inject: [...(options.inject ?? [])] as never[],
        },
        {
          provide: FloodgateLimits,
          useFactory: (given: FloodgateModuleOptions<NestRequest>) => new FloodgateLimits(given),
          inject: [FLOODGATE_OPTIONS],
        },
      ],
      [...(options.imports ?? [])] as never[],
    );
  }

  static #module(
    global: boolean,
    providers: Provider[],
    imports: DynamicModule['imports'] = [],
  ): DynamicModule {
    return {
      module: FloodgateModule,
      // Provided everywhere, so that `@UseGuards(FloodgateGuard)` resolves in any module.
      global: true,
      imports,
      providers: [
        ...providers,
        {
          provide: Limiter,
          useFactory: (limits: FloodgateLimits) => limits.limiter,
          inject: [FloodgateLimits],
        },
        FloodgateGuard,
        ...(global ? [{ provide: APP_GUARD, useExisting: FloodgateGuard }] : []),
      ],
      exports: [FloodgateLimits, Limiter, FloodgateGuard],
    };
  }
}

Module({})(FloodgateModule);

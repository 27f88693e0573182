import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { invalidOption } from '../core/errors.js';
import { Limiter } from '../limiter/limiter.js';
import { FloodgateGuard } from './guard.js';
import { FloodgateLimits } from './limits.js';
import {
  type FloodgateModuleAsyncOptions,
  type FloodgateModuleOptions,
  type FloodgateOptionsFactory,
  globalOption,
  type NestRequest,
} from './options.js';

/** The token of the module's options, as given (or made by `forRootAsync`'s factory). */
export const FLOODGATE_OPTIONS = 'floodgate:options';

/** The application's guard when the options say `global: false`: every call goes on. */
const UNGUARDED = Object.freeze({ canActivate: () => true });

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
    return FloodgateModule.#module(
      [{ provide: FloodgateLimits, useValue: limits }],
      limits.global ? [{ provide: APP_GUARD, useExisting: FloodgateGuard }] : [],
    );
  }

  /**
   * Options from a factory (a config service, a Redis client made by another module): `useFactory` with
   * `inject`, or a `FloodgateOptionsFactory` class (`useClass`, or `useExisting` for one already provided).
   * Checked when it runs, so bad options fail the application's start.
   */
  static forRootAsync<Req = NestRequest>(options: FloodgateModuleAsyncOptions<Req>): DynamicModule {
    const given = ['useFactory', 'useClass', 'useExisting'].filter(
      (name) => (options as unknown as Record<string, unknown> | null)?.[name] !== undefined,
    );
    if (typeof options !== 'object' || options === null || given.length !== 1) {
      throw invalidOption(
        'useFactory',
        'one of useFactory (a function that returns the module options), useClass or useExisting',
        options?.useFactory,
        'type',
      );
    }
    if (options.useFactory !== undefined && typeof options.useFactory !== 'function')
      throw invalidOption(
        'useFactory',
        'a function that returns the module options',
        options.useFactory,
        'type',
      );
    if (options.useClass !== undefined && typeof options.useClass !== 'function')
      throw invalidOption('useClass', 'a class with createFloodgateOptions()', options.useClass, 'type');
    const fallback = globalOption(options.global);
    const factory: Provider[] =
      options.useFactory !== undefined
        ? [
            {
              provide: FLOODGATE_OPTIONS,
              useFactory: options.useFactory,
              inject: [...(options.inject ?? [])] as never[],
            },
          ]
        : [
            ...(options.useClass === undefined ? [] : [options.useClass as never]),
            {
              provide: FLOODGATE_OPTIONS,
              useFactory: (made: FloodgateOptionsFactory<Req>) => made.createFloodgateOptions(),
              inject: [(options.useClass ?? options.useExisting) as never],
            },
          ];
    return FloodgateModule.#module(
      [
        ...factory,
        {
          provide: FloodgateLimits,
          // The factory's `global`, when it gives one, wins over the one beside it.
          useFactory: (made: FloodgateModuleOptions<NestRequest>) =>
            new FloodgateLimits(
              typeof made === 'object' && made !== null && made.global === undefined
                ? { ...made, global: fallback }
                : made,
            ),
          inject: [FLOODGATE_OPTIONS],
        },
      ],
      [
        {
          provide: APP_GUARD,
          useFactory: (limits: FloodgateLimits, guard: FloodgateGuard) => (limits.global ? guard : UNGUARDED),
          inject: [FloodgateLimits, FloodgateGuard],
        },
      ],
      [...(options.imports ?? [])] as never[],
    );
  }

  static #module(
    providers: Provider[],
    appGuard: Provider[],
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
        ...appGuard,
      ],
      exports: [FloodgateLimits, Limiter, FloodgateGuard],
    };
  }
}

Module({})(FloodgateModule);

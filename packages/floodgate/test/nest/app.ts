// Real Nest applications on loopback, on either HTTP platform, with the controllers the tests limit.
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import {
  type ArgumentsHost,
  type CanActivate,
  Catch,
  Controller,
  type DynamicModule,
  type ExecutionContext,
  Get,
  Module,
  Post,
  Req,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { BaseExceptionFilter, NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { Decision } from '../../src/core/decision.js';
import { Limiter } from '../../src/limiter/limiter.js';
import {
  FloodgateException,
  FloodgateGuard,
  type NestRequest,
  RateLimit,
  RateLimitDecision,
  SkipRateLimit,
} from '../../src/nest/index.js';
import { atGate } from '../helpers/gate.js';

export type Platform = 'express' | 'fastify';
export const PLATFORMS: readonly Platform[] = ['express', 'fastify'];

/** Sets `request.user` from `x-user`, as an authentication guard would. */
class FakeAuth implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<NestRequest & { user?: { id: string } }>();
    const user = request.headers['x-user'];
    if (typeof user === 'string') request.user = { id: user };
    return true;
  }
}

/** A limiter of the application's own, given to one route. */
export const SHARED = new Limiter({
  policies: { name: 'shared', algorithm: 'fixed-window', limit: 2, window: '1m' },
});

@Controller()
export class RootController {
  @Get()
  root(): string {
    return 'ok';
  }

  @Get('wait')
  async wait(): Promise<string> {
    await atGate();
    return 'ok';
  }

  @Get('decision')
  decision(@RateLimitDecision() decision: Decision | undefined, @Req() request: NestRequest): string {
    assertSame(decision, request.rateLimit);
    return decision === undefined ? 'none' : `remaining=${decision.remaining}`;
  }

  @Get('health')
  @SkipRateLimit()
  health(): string {
    return 'healthy';
  }

  @Get('expensive')
  @RateLimit({ cost: 2 })
  expensive(): string {
    return 'ok';
  }

  @Get('shared')
  @RateLimit({ limiter: SHARED })
  shared(): string {
    return 'ok';
  }
}

function assertSame(a: unknown, b: unknown): void {
  if (a !== b) throw new Error('the decision parameter is not request.rateLimit');
}

/** Its own policies: one budget for both routes, apart from the module's. */
/** Routes with no limit settings of their own: what an application that only sheds can have. */
@Controller('plain')
export class PlainController {
  @Get('wait')
  async wait(): Promise<string> {
    await atGate();
    return 'ok';
  }

  @Get('decision')
  decision(@RateLimitDecision() decision: Decision | undefined): string {
    return decision === undefined ? 'none' : `remaining=${decision.remaining}`;
  }
}

@Controller('auth')
@RateLimit({ policies: { limit: 3, window: '1m' }, countOnly: 'failed' })
export class AuthController {
  @Post('login')
  login(@Req() request: NestRequest): string {
    if (request.headers['x-password'] !== 'right') throw new UnauthorizedException();
    return 'welcome';
  }

  @Post('reset')
  reset(): string {
    throw new UnauthorizedException();
  }

  @Get('status')
  @SkipRateLimit(false)
  status(): string {
    return 'ok';
  }
}

@Controller('unlimited')
@SkipRateLimit()
export class UnlimitedController {
  @Get()
  get(): string {
    return 'free';
  }

  @Get('but-this')
  @SkipRateLimit(false)
  limited(): string {
    return 'limited';
  }
}

/** Limited by user, set by an authentication guard that runs first. */
@Controller('me')
@UseGuards(FakeAuth, FloodgateGuard)
export class MeController {
  @Get()
  me(): string {
    return 'me';
  }

  @Get('strict')
  @RateLimit({ policies: { limit: 1, window: '1m' } })
  strict(): string {
    return 'strict';
  }
}

/** Limited only through `@UseGuards`, for a module with `global: false`. */
@Controller('guarded')
@UseGuards(FloodgateGuard)
export class GuardedController {
  @Get()
  get(): string {
    return 'guarded';
  }
}

/** Turns Floodgate's refusals into the application's own body: filters see `FloodgateException`. */
@Catch(FloodgateException)
export class TeapotFilter extends BaseExceptionFilter {
  override catch(exception: FloodgateException, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<{ status?: (n: number) => unknown }>();
    const reply = response as unknown as {
      code?: (n: number) => { send(b: unknown): void };
      status: (n: number) => { json(b: unknown): void };
    };
    const body = { refused: exception.getStatus() };
    if (typeof reply.code === 'function') reply.code(418).send(body);
    else reply.status(418).json(body);
  }
}

export const CONTROLLERS = [
  RootController,
  AuthController,
  UnlimitedController,
  MeController,
  GuardedController,
];

export interface RunningApp {
  url: string;
  close(): Promise<void>;
}

export interface AppSetup {
  platform: Platform;
  floodgate: DynamicModule;
  trustProxy?: boolean;
  filter?: boolean;
  /** The loopback address to listen on: `127.0.0.1` or `::1`. */
  host?: string;
  /** The application's controllers (default: every test controller above) and other modules. */
  controllers?: readonly (new (
    ...args: never[]
  ) => unknown)[];
  imports?: readonly unknown[];
  providers?: readonly unknown[];
}

/** A Nest application with the module and every test controller, listening on a free loopback port. */
export async function startApp({
  platform,
  floodgate,
  trustProxy = false,
  filter = false,
  host = '127.0.0.1',
  controllers = CONTROLLERS,
  imports = [],
  providers = [],
}: AppSetup): Promise<RunningApp> {
  @Module({
    imports: [floodgate, ...(imports as never[])],
    controllers: [...controllers],
    providers: [...(providers as never[])],
  })
  class AppModule {}
  const adapter = platform === 'express' ? new ExpressAdapter() : new FastifyAdapter({ trustProxy });
  const app = await NestFactory.create(AppModule, adapter, { logger: false, abortOnError: false });
  if (platform === 'express' && trustProxy)
    (app.getHttpAdapter().getInstance() as { set(k: string, v: unknown): void }).set('trust proxy', true);
  if (filter) app.useGlobalFilters(new TeapotFilter(app.getHttpAdapter()));
  await app.listen(0, host);
  const { port } = app.getHttpServer().address() as AddressInfo;
  const origin = host.includes(':') ? `[${host}]` : host;
  return { url: `http://${origin}:${port}`, close: () => app.close() };
}

/** The statuses of replies, sorted. */
export async function statuses(replies: Promise<Response>[]): Promise<number[]> {
  return (await Promise.all(replies)).map((r) => r.status).sort((a, b) => a - b);
}

export function times<T>(n: number, make: (i: number) => T): T[] {
  return Array.from({ length: n }, (_, i) => make(i));
}

/** Runs `run` against an application, and closes it however `run` ends. */
export async function using(
  app: Promise<RunningApp>,
  run: (app: RunningApp) => Promise<void>,
): Promise<void> {
  const running = await app;
  try {
    await run(running);
  } finally {
    await running.close();
  }
}

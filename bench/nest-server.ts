// One Nest application for bench/nest.ts, in its own process so its CPU time can be read: a platform, bare,
// behind Floodgate's module or behind @nestjs/throttler. Reports its port over IPC and answers 'cpu'.
//   node --import tsx bench/nest-server.ts <express|fastify> <bare|floodgate|throttler> <allowed|denied>
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { Controller, Get, Module } from '@nestjs/common';
import { APP_GUARD, NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { ThrottlerGuard, ThrottlerModule } from '@nestjs/throttler';
import { FloodgateModule } from '../packages/floodgate/src/nest/index.js';

const [platform, variant, path] = process.argv.slice(2) as [string, string, string];
// Allowed: a limit the run never reaches. Denied: one request an hour, spent by the warm-up.
const limit = path === 'allowed' ? 100_000_000 : 1;
const ttl = 3_600_000;

@Controller()
class HelloController {
  @Get()
  hello(): string {
    return 'hello';
  }
}

const imports =
  variant === 'floodgate'
    ? [FloodgateModule.forRoot({ policies: { algorithm: 'fixed-window', limit, window: ttl } })]
    : variant === 'throttler'
      ? [ThrottlerModule.forRoot([{ ttl, limit }])]
      : [];
const providers = variant === 'throttler' ? [{ provide: APP_GUARD, useClass: ThrottlerGuard }] : [];

@Module({ imports, controllers: [HelloController], providers })
class AppModule {}

const adapter = platform === 'fastify' ? new FastifyAdapter() : new ExpressAdapter();
const app = await NestFactory.create(AppModule, adapter, { logger: false, abortOnError: false });
await app.listen(0, '127.0.0.1');
const { port } = app.getHttpServer().address() as AddressInfo;
process.on('message', (m) => {
  if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
});
process.send!({ port });

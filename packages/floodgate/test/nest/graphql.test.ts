import 'reflect-metadata';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GraphQLModule, Query, Resolver } from '@nestjs/graphql';
import { ExpressAdapter } from '@nestjs/platform-express';
import type { Decision } from '../../src/core/decision.js';
import { FloodgateModule, RateLimit, RateLimitDecision, SkipRateLimit } from '../../src/nest/index.js';

// A real GraphQL application (Apollo on Express): resolvers limited through the same decorators.

@Resolver()
class HelloResolver {
  @Query()
  hello(@RateLimitDecision() decision: Decision | undefined): string {
    return `remaining=${decision?.remaining}`;
  }

  @Query()
  @RateLimit({ policies: { name: 'strict', limit: 1, window: '1m' } })
  strict(): string {
    return 'strict';
  }

  @Query()
  @SkipRateLimit()
  free(): string {
    return 'free';
  }
}

const typeDefs = 'type Query { hello: String  strict: String  free: String }';

async function start(
  floodgate = FloodgateModule.forRoot({ policies: { algorithm: 'fixed-window', limit: 3, window: '1m' } }),
) {
  @Module({
    imports: [
      floodgate,
      GraphQLModule.forRoot<ApolloDriverConfig>({
        driver: ApolloDriver,
        typeDefs,
        // The request and the response, for the guard (as @nestjs/throttler asks too).
        context: ({ req, res }: { req: unknown; res: unknown }) => ({ req, res }),
      }),
    ],
    providers: [HelloResolver],
  })
  class GraphQLApp {}
  const app = await NestFactory.create(GraphQLApp, new ExpressAdapter(), {
    logger: false,
    abortOnError: false,
  });
  await app.listen(0, '127.0.0.1');
  const url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}/graphql`;
  return { app, url };
}

interface GraphQLReply {
  data?: Record<string, string | null> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

async function query(
  url: string,
  text: string,
): Promise<{ status: number; body: GraphQLReply; ratelimit: string | null }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: text }),
  });
  return {
    status: res.status,
    body: (await res.json()) as GraphQLReply,
    ratelimit: res.headers.get('ratelimit'),
  };
}

describe('floodgate/nest on GraphQL', () => {
  it('limits each resolver call: exactly the limit of parallel queries is answered, the rest refused as GraphQL errors', async () => {
    const { app, url } = await start();
    try {
      const replies = await Promise.all(Array.from({ length: 10 }, () => query(url, '{ hello }')));
      const answered = replies.filter((r) => r.body.data?.hello?.startsWith('remaining='));
      const refused = replies.filter((r) => r.body.errors !== undefined);
      assert.equal(answered.length, 3);
      assert.equal(refused.length, 7);
      assert.deepEqual(answered.map((r) => r.body.data!.hello).sort(), [
        'remaining=0',
        'remaining=1',
        'remaining=2',
      ]);
      assert.match(answered[0]!.ratelimit ?? '', /^"fixed-window-3-per-1m";r=\d;t=\d+$/);
      const error = refused[0]!.body.errors![0]!;
      assert.match(error.message, /Wait \d+ seconds? before trying again/);
      // Apollo names no code for 429: Nest's transform keeps the status and the refusal's body.
      assert.equal(error.extensions?.status, 429);
      const original = error.extensions?.originalError as Record<string, unknown>;
      assert.equal(original.statusCode, 429);
      assert.equal(original.title, 'Too Many Requests');
      assert.equal(original.policy, 'fixed-window-3-per-1m');
    } finally {
      await app.close();
    }
  });

  it("gives a resolver's own policies their own budget, and skips one marked @SkipRateLimit", async () => {
    const { app, url } = await start();
    try {
      const first = await query(url, '{ strict }');
      assert.equal(first.body.data?.strict, 'strict');
      const second = await query(url, '{ strict }');
      assert.equal(second.body.data?.strict ?? null, null);
      assert.match(second.body.errors?.[0]?.message ?? '', /Wait/);
      for (let i = 0; i < 5; i++) assert.equal((await query(url, '{ free }')).body.data?.free, 'free');
      // Two fields of one operation are two calls, each charged.
      const both = await query(url, '{ a: hello b: hello }');
      assert.deepEqual(both.body.data, { a: 'remaining=2', b: 'remaining=1' });
    } finally {
      await app.close();
    }
  });
});

import 'reflect-metadata';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { type ArgumentsHost, Catch, Module, UseFilters } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { WsAdapter } from '@nestjs/platform-ws';
import { BaseWsExceptionFilter, SubscribeMessage, WebSocketGateway, WsException } from '@nestjs/websockets';
import { io, type Socket } from 'socket.io-client';
import { WebSocket } from 'ws';
import type { Decision } from '../../src/core/decision.js';
import {
  byApiKey,
  FloodgateModule,
  RateLimit,
  RateLimitDecision,
  SkipRateLimit,
} from '../../src/nest/index.js';

// A real WebSocket gateway (@nestjs/platform-ws): messages limited through the same decorators.

/** `ws` clients get no `exception` event of their own: this filter sends it, as a `ws` application would. */
@Catch(WsException)
class SendingFilter extends BaseWsExceptionFilter {
  override catch(exception: WsException, host: ArgumentsHost): void {
    host
      .switchToWs()
      .getClient<WebSocket>()
      .send(JSON.stringify({ event: 'exception', data: exception.getError() }));
  }
}

let handled = 0;

@WebSocketGateway()
@UseFilters(new SendingFilter())
class ChatGateway {
  @SubscribeMessage('say')
  say(@RateLimitDecision() decision: Decision | undefined): { event: string; data: string } {
    handled++;
    return { event: 'said', data: `remaining=${decision?.remaining}` };
  }

  @SubscribeMessage('shout')
  @RateLimit({ policies: { name: 'shout', limit: 1, window: '1m' } })
  shout(): { event: string; data: string } {
    return { event: 'shouted', data: 'ok' };
  }

  @SubscribeMessage('ping')
  @SkipRateLimit()
  ping(): { event: string; data: string } {
    return { event: 'pong', data: 'ok' };
  }
}

@WebSocketGateway()
class CountingGateway {
  @SubscribeMessage('login')
  @RateLimit({ countOnly: 'failed' })
  login(): string {
    return 'no';
  }
}

@WebSocketGateway()
class EchoGateway {
  @SubscribeMessage('echo')
  echo(): string {
    return 'echoed';
  }
}

async function start(gateway: new () => unknown = ChatGateway, library: 'ws' | 'socket.io' = 'ws') {
  const policies = { algorithm: 'fixed-window', limit: 3, window: '1m' } as const;
  @Module({
    imports: [FloodgateModule.forRoot(library === 'ws' ? { policies } : { policies, key: byApiKey() })],
    providers: [gateway],
  })
  class WsApp {}
  const app = await NestFactory.create(WsApp, new ExpressAdapter(), { logger: false, abortOnError: false });
  app.useWebSocketAdapter(library === 'ws' ? new WsAdapter(app) : new IoAdapter(app));
  await app.listen(0, '127.0.0.1');
  const url = `ws://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  return { app, url };
}

/** A connected client, and the messages it has received so far. */
async function connect(
  url: string,
): Promise<{ socket: WebSocket; received: { event: string; data: unknown }[] }> {
  const socket = new WebSocket(url);
  const received: { event: string; data: unknown }[] = [];
  socket.on('message', (raw) => received.push(JSON.parse(String(raw))));
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  return { socket, received };
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
}

describe('floodgate/nest on a WebSocket gateway', () => {
  it('limits messages per client: exactly the limit of a burst reaches the handler, the rest are refused', async () => {
    const { app, url } = await start();
    const one = await connect(url);
    const two = await connect(url);
    try {
      handled = 0;
      for (let i = 0; i < 10; i++) one.socket.send(JSON.stringify({ event: 'say', data: {} }));
      await until(() => one.received.length === 10);
      assert.equal(handled, 3);
      const said = one.received.filter((m) => m.event === 'said').map((m) => m.data);
      assert.deepEqual(said.sort(), ['remaining=0', 'remaining=1', 'remaining=2']);
      const refused = one.received.filter((m) => m.event === 'exception');
      assert.equal(refused.length, 7);
      const body = refused[0]!.data as Record<string, unknown>;
      assert.equal(body.statusCode, 429);
      assert.equal(body.status, 429);
      assert.match(String(body.message), /Wait \d+ seconds? before trying again/);
      // Both connections come from 127.0.0.1: one client, by IP.
      two.socket.send(JSON.stringify({ event: 'say', data: {} }));
      await until(() => two.received.length === 1);
      assert.equal(two.received[0]!.event, 'exception');
      // Own policies, and a skipped message.
      for (const event of ['shout', 'shout', 'ping', 'ping'])
        one.socket.send(JSON.stringify({ event, data: {} }));
      await until(() => one.received.length === 14);
      assert.deepEqual(
        one.received
          .slice(10)
          .map((m) => m.event)
          .sort(),
        ['exception', 'pong', 'pong', 'shouted'],
      );
    } finally {
      one.socket.close();
      two.socket.close();
      await app.close();
    }
  });

  it('refuses countOnly on a gateway when the application starts: a message has no status', async () => {
    await assert.rejects(
      start(CountingGateway),
      /CountingGateway\.login: option "countOnly" must be absent on a WebSocket gateway/,
    );
  });
});

describe('floodgate/nest on a socket.io gateway', () => {
  it("keys messages by the handshake's headers and sends refusals as exception events", async () => {
    const { app, url } = await start(EchoGateway, 'socket.io');
    const clients: Socket[] = [];
    const connect = async (key: string) => {
      const socket = io(url.replace('ws:', 'http:'), {
        transports: ['websocket'],
        extraHeaders: { 'x-api-key': key },
      });
      clients.push(socket);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      return socket;
    };
    try {
      const [a, b] = [await connect('key-a'), await connect('key-b')];
      const refusals: Record<string, unknown>[] = [];
      a.on('exception', (error: Record<string, unknown>) => refusals.push(error));
      const answers: unknown[] = [];
      for (let i = 0; i < 5; i++) a.emit('echo', {}, (answer: unknown) => answers.push(answer));
      // Each message is either answered or refused: wait until all five are one or the other.
      await until(() => answers.length + refusals.length === 5);
      assert.deepEqual(answers, ['echoed', 'echoed', 'echoed']);
      assert.equal(refusals.length, 2);
      assert.equal(refusals[0]!.statusCode, 429);
      // Another API key, another budget.
      assert.equal(await b.emitWithAck('echo', {}), 'echoed');
    } finally {
      for (const socket of clients) socket.disconnect();
      await app.close();
    }
  });
});

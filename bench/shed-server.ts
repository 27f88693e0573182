// The server of bench/shed.ts: Fastify, whose handler waits on a simulated database that runs `parallel`
// queries at once, `ms` each (more wait in line), or burns `ms` of CPU synchronously (`cpu`). Unprotected,
// behind @fastify/under-pressure, or behind Floodgate's shedder (gradient2 or aimd). Reports its port over
// IPC; takes `{ service: ms }` (the database slower or faster from now on) and `{ limit: true }` (answers
// with the shedder's limit, and how many it shed, for the event loop's sake or any).
//   node --import tsx bench/shed-server.ts <none|under-pressure|floodgate|floodgate-aimd|floodgate-no-loop> <db|cpu> <parallel> <ms>
import type { AddressInfo } from 'node:net';
import underPressure from '@fastify/under-pressure';
import Fastify from 'fastify';
import { floodgate } from '../packages/floodgate/src/http/fastify.js';
import { Shedder } from '../packages/floodgate/src/limiter/shedder.js';

const [variant, work, parallel, ms] = process.argv.slice(2);
const DB_PARALLEL = Number(parallel);
let service = Number(ms);

/** A database with a fixed number of connections: queries beyond them wait for one. */
let busy = 0;
const line: (() => void)[] = [];
async function query(): Promise<void> {
  if (busy >= DB_PARALLEL) await new Promise<void>((resolve) => line.push(resolve));
  else busy++;
  await new Promise((r) => setTimeout(r, service));
  const next = line.shift();
  if (next !== undefined) next();
  else busy--;
}

/** A handler's synchronous work: `service` ms of CPU. */
function burn(): void {
  const until = performance.now() + service;
  while (performance.now() < until);
}

const app = Fastify();
let shedder: Shedder | undefined;
if (variant === 'under-pressure') {
  // The ecosystem's choice, with its documented thresholds for a service that should answer in 250 ms.
  await app.register(underPressure, { maxEventLoopDelay: 100, retryAfter: 1 });
}
if (variant?.startsWith('floodgate')) {
  // Shedding alone: no per-client limit, only the server's own; every other option at its default
  // (`floodgate-no-loop`: without the event loop's watch, to see what it does).
  shedder = new Shedder({
    limit: variant === 'floodgate-aimd' ? 'aimd' : 'gradient2',
    latencyObjective: '250ms',
    ...(variant === 'floodgate-no-loop' ? { eventLoop: false as const } : {}),
  });
  await app.register(floodgate, { shed: shedder });
}
app.get('/', async () => {
  if (work === 'cpu') burn();
  else await query();
  return 'ok';
});
process.on('message', (message: { service?: number; limit?: boolean }) => {
  if (message.service !== undefined) service = message.service;
  if (message.limit === true) {
    process.send!({
      limit: shedder?.limit ?? null,
      waitedTooLong: shedder?.stats.waitedTooLong ?? 0,
      shed: shedder === undefined ? 0 : shedder.stats.shed.default,
    });
  }
});
await app.listen({ port: 0, host: '127.0.0.1' });
process.send!({ port: (app.server.address() as AddressInfo).port });

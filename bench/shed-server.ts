// The server of bench/shed.ts: Fastify, whose handler waits on a simulated database that runs DB_PARALLEL
// queries at once, DB_MS each (more wait in line). Unprotected, behind @fastify/under-pressure, or behind
// Floodgate's shedder. Reports its port over IPC.
//   node --import tsx bench/shed-server.ts <none|under-pressure|floodgate> <DB_PARALLEL> <DB_MS>
import type { AddressInfo } from 'node:net';
import underPressure from '@fastify/under-pressure';
import Fastify from 'fastify';
import { floodgate } from '../packages/floodgate/src/http/fastify.js';

const [variant, parallel, ms, work = 'db'] = process.argv.slice(2);
const DB_PARALLEL = Number(parallel);
const DB_MS = Number(ms);

/** A database with a fixed number of connections: queries beyond them wait for one. */
let busy = 0;
const line: (() => void)[] = [];
async function query(): Promise<void> {
  if (busy >= DB_PARALLEL) await new Promise<void>((resolve) => line.push(resolve));
  else busy++;
  await new Promise((r) => setTimeout(r, DB_MS));
  const next = line.shift();
  if (next !== undefined) next();
  else busy--;
}

const app = Fastify();
if (variant === 'under-pressure') {
  // The ecosystem's choice, with its documented thresholds for a service that should answer in 250 ms.
  await app.register(underPressure, { maxEventLoopDelay: 100, retryAfter: 1 });
}
if (variant === 'floodgate') {
  await app.register(floodgate, {
    policies: { limit: 100_000_000, window: '1h' }, // no per-client limit here: only the server's own
    shed: { limit: 'gradient2', latencyObjective: '250ms', eventLoop: { maxDelay: '100ms' } },
  });
}
/** Or a handler that burns DB_MS / DB_PARALLEL ms of CPU: the same capacity, spent on the event loop. */
function burn(): void {
  const until = performance.now() + DB_MS / DB_PARALLEL;
  while (performance.now() < until);
}
app.get('/', async () => {
  if (work === 'cpu') burn();
  else await query();
  return 'ok';
});
await app.listen({ port: 0, host: '127.0.0.1' });
process.send!({ port: (app.server.address() as AddressInfo).port });

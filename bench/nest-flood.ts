// One contender of bench/nest.ts's flood, alone in its process: 1,000,000 requests from distinct clients
// through the module's store, as its guard calls it. Prints the heap it holds afterwards (after a full GC)
// and the timers it created, as JSON.
//   node --expose-gc --import tsx bench/nest-flood.ts <floodgate|throttler> [keys]
import 'reflect-metadata';
import { createHook } from 'node:async_hooks';
import { ThrottlerStorageService } from '@nestjs/throttler';
import { Limiter } from '../packages/floodgate/src/limiter/limiter.js';

const [contender, count = '1000000'] = process.argv.slice(2) as [string, string?];
const keys = Number(count);
const ttl = 60_000;
const gc = globalThis.gc!;
let timers = 0;
createHook({
  init(_id, type) {
    if (type === 'Timeout') timers++;
  },
}).enable();

gc();
const before = process.memoryUsage().heapUsed;
const started = process.hrtime.bigint();
let keep: unknown;
if (contender === 'floodgate') {
  const limiter = new Limiter({ policies: { algorithm: 'fixed-window', limit: 10, window: ttl } });
  for (let i = 0; i < keys; i++)
    limiter.consumeSync(`ip:10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}-${i}`);
  keep = limiter;
} else {
  const storage = new ThrottlerStorageService();
  for (let i = 0; i < keys; i++)
    await storage.increment(`${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}-${i}`, ttl, 10, 0, 'default');
  keep = storage;
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
gc();
const held = process.memoryUsage().heapUsed - before;
console.log(JSON.stringify({ contender, keys, heldBytes: held, timers, seconds, kept: keep !== undefined }));
process.exit(0);

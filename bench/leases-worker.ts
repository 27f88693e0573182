// The processes of bench/leases.ts.
//   fair <redisPort>: told a key, a rate and a duration over IPC, offers that load and reports what passed.
//   http <redisPort> <bare|exact|leases>: a node:cluster primary with 4 node:http workers on one port.
import cluster from 'node:cluster';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { rateLimit } from '../packages/floodgate/src/http/node.js';
import { Limiter } from '../packages/floodgate/src/index.js';
import { RedisStore } from '../packages/floodgate/src/stores/redis/index.js';

const [mode, redisPort, variant] = process.argv.slice(2) as [string, string, string];

interface Fair {
  key: string;
  leases: boolean;
  rate: number;
  seconds: number;
  limit: number;
}

if (mode === 'fair') {
  const client = new Redis(Number(redisPort), '127.0.0.1');
  process.on('message', async (m: Fair) => {
    const store = new RedisStore({ client, leases: m.leases });
    const limiter = new Limiter({
      store,
      policies: { algorithm: 'fixed-window', limit: m.limit, window: 1000 },
    });
    let offered = 0;
    let allowed = 0;
    const pending: Promise<void>[] = [];
    const start = performance.now();
    // Fixed arrival times: the load does not slow down when answers do (an open loop).
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const elapsed = (performance.now() - start) / 1000;
        if (elapsed >= m.seconds) {
          clearInterval(timer);
          resolve();
          return;
        }
        const due = Math.floor(elapsed * m.rate);
        for (; offered < due; offered++) {
          pending.push(
            limiter.consume(m.key).then((d) => {
              if (d.allowed) allowed++;
            }),
          );
        }
      }, 10);
    });
    await Promise.all(pending);
    const { scripts, lapsedUnits } = store.stats;
    await store.close();
    process.send!({ offered, allowed, scripts, local: store.stats.localDecisions, lapsed: lapsedUnits });
  });
  client.on('ready', () => process.send!('ready'));
} else if (cluster.isPrimary) {
  const workers = Array.from({ length: 4 }, () => cluster.fork());
  const stats = new Map<number, { scripts: number; decisions: number }>();
  let listening = 0;
  for (const w of workers) {
    w.on('listening', (address: AddressInfo) => {
      if (++listening === workers.length) process.send!({ port: address.port });
    });
    w.on('message', (m: { id: number; scripts: number; decisions: number }) => {
      stats.set(m.id, m);
      if (stats.size === workers.length) {
        const sum = (f: 'scripts' | 'decisions') => [...stats.values()].reduce((s, x) => s + x[f], 0);
        process.send!({ scripts: sum('scripts'), decisions: sum('decisions') });
      }
    });
  }
  process.on('message', (m) => {
    if (m === 'stats') for (const w of workers) w.send('stats');
  });
  process.on('SIGTERM', () => {
    for (const w of workers) w.kill();
    process.exit(0);
  });
} else {
  const store =
    variant === 'bare'
      ? undefined
      : new RedisStore({
          client: new Redis(Number(redisPort), '127.0.0.1'),
          leases: variant === 'leases',
        });
  const guard =
    store === undefined
      ? undefined
      : rateLimit({ store, policies: { algorithm: 'fixed-window', limit: 100_000_000, window: '1h' } });
  const server = createServer(async (req, res) => {
    if (guard !== undefined && !(await guard(req, res))) return;
    res.end('hello');
  });
  // Workers share the port: the primary hands out the one the first worker was given.
  server.listen(Number(process.env.BENCH_PORT ?? 0), '127.0.0.1');
  process.on('message', (m) => {
    if (m !== 'stats') return;
    const s = store?.stats;
    const decisions = s === undefined ? 0 : s.decisions + s.localDecisions + s.cacheHits;
    process.send!({ id: cluster.worker!.id, scripts: s?.scripts ?? 0, decisions });
  });
}

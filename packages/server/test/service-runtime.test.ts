import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import { Limiter, MemoryStore } from 'floodgate';
import { RedisStore } from 'floodgate/redis';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { ServiceRuntime } from '../src/shared/runtime.js';
import { openStores } from '../src/shared/stores.js';

// The commands' runtime: a store factory (one URL, one error counter, a close that ends every store it
// made), an admin listener with a route table, the reload's counting, and the stop's order.

const log = pino({ level: 'silent' });

async function errorsCounted(registry: Registry): Promise<number> {
  const metric = await registry.getSingleMetric('floodgate_store_errors_total')!.get();
  return metric.values[0]?.value ?? 0;
}

describe('openStores', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(() => redis.stop());

  it('memory: a memory store, and the error counter at 0', async () => {
    const registry = new Registry();
    const stores = await openStores({ url: 'memory' }, log, registry);
    assert.equal(stores.kind, 'memory');
    assert.ok(stores.store instanceof MemoryStore);
    assert.equal(stores.redis, undefined);
    assert.throws(() => stores.withOutagePolicy('fallback'), /no outage policy/);
    assert.equal(await errorsCounted(registry), 0);
    await stores.close();
  });

  it('redis: every store on the client counts its failures in one counter, and close ends them all', async () => {
    const registry = new Registry();
    const stores = await openStores({ url: redis.url, onStoreError: 'open' }, log, registry);
    assert.equal(stores.kind, 'redis');
    assert.ok(stores.redis instanceof RedisStore && stores.store === stores.redis);
    const logins = stores.withOutagePolicy('fallback');
    const closed: string[] = [];
    for (const [name, store] of [
      ['api', stores.redis],
      ['logins', logins],
    ] as const) {
      const close = store.close.bind(store);
      store.close = () => close().then(() => void closed.push(name));
    }
    const policies = { algorithm: 'fixed-window', limit: 5, window: '1m' } as const;
    const api = new Limiter({ store: stores.store, policies });
    const guard = new Limiter({ store: logins, policies });
    assert.equal((await api.consume('k')).allowed, true);
    await redis.kill();
    const open = await api.consume('k');
    const fallback = await guard.consume('k');
    assert.deepEqual([open.reason, fallback.reason], ['store-open', 'store-fallback']);
    assert.equal(await errorsCounted(registry), 2, 'one failed call each, counted once');
    await redis.restart();
    await stores.close();
    assert.deepEqual(closed.sort(), ['api', 'logins']);
    await stores.close();
    assert.equal(closed.length, 2, 'a second close is the first one');
  });
});

describe('openStores against a frozen redis-server', () => {
  it('close ends all the same: the give-backs fail, QUIT is never answered, the connection is dropped', {
    timeout: 30_000,
  }, async () => {
    const redis = await RedisServer.start();
    try {
      const stores = await openStores({ url: redis.url, leases: true }, log, new Registry());
      const limiter = new Limiter({
        store: stores.store,
        policies: { algorithm: 'fixed-window', limit: 1000, window: '1h' },
      });
      for (let i = 0; i < 50; i++) await limiter.consume('busy');
      redis.pause();
      await stores.close();
    } finally {
      await redis.stop();
    }
  });
});

describe('ServiceRuntime', () => {
  const open = () => ServiceRuntime.open({ log, registry: new Registry(), store: { url: 'memory' } });

  it('serves /metrics, /health and any route added to its table; 404 for the rest', async () => {
    const runtime = await open();
    runtime.adminRoutes.set('/extra', (_req, res) => res.end('extra'));
    const url = await runtime.startAdmin({
      address: { host: '127.0.0.1', port: 0 },
      health: () => ({ rules: 3 }),
      names: { port: '--admin-port', host: '--admin-port' },
    });
    assert.equal(url, runtime.adminUrl);
    const get = async (path: string) => {
      const res = await fetch(`${url}${path}`);
      return [res.status, await res.text()] as const;
    };
    assert.deepEqual(await get('/extra'), [200, 'extra']);
    assert.deepEqual(await get('/health'), [200, '{"status":"ok","rules":3}']);
    assert.match((await get('/metrics'))[1], /floodgate_store_errors_total 0/);
    assert.equal((await get('/nope'))[0], 404);
    await runtime.stop({ drain: async () => {} });
    await assert.rejects(fetch(`${url}/health`), 'the admin listener is closed');
  });

  it('startAdmin(false) starts nothing', async () => {
    const runtime = await open();
    assert.equal(await runtime.startAdmin(false), undefined);
    assert.equal(runtime.adminUrl, undefined);
    await runtime.stop({ drain: async () => {} });
  });

  it('a reload is applied or rejected, and counted either way', async () => {
    const runtime = await open();
    const counter = new Counter({
      name: 'reloads',
      help: 'h',
      labelNames: ['result'] as const,
      registers: [],
    });
    let valid = true;
    const reload = runtime.reloader({
      counter,
      source: { file: 'x.yaml' },
      apply: () => {
        if (!valid) throw new Error('bad');
        return {};
      },
    });
    assert.equal(reload(), true);
    valid = false;
    assert.equal(reload(), false);
    const values = (await counter.get()).values.map((v) => [v.labels.result, v.value]);
    assert.deepEqual(values.sort(), [
      ['applied', 1],
      ['rejected', 1],
    ]);
    await runtime.stop({ drain: async () => {} });
  });

  it("stops in order, once: drain, the command's resources, then the store", async () => {
    const runtime = await open();
    const order: string[] = [];
    const close = runtime.stores.close;
    (runtime.stores as { close(): Promise<void> }).close = () => close().then(() => void order.push('store'));
    const steps = {
      drain: async () => void order.push('drain'),
      release: () => void order.push('release'),
    };
    await Promise.all([runtime.stop(steps), runtime.stop(steps)]);
    assert.deepEqual(order, ['drain', 'release', 'store']);
  });
});

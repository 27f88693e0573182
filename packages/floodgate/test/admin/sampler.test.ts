import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { adminHandler } from '../../src/admin/handler.js';
import { Sampler } from '../../src/admin/sampler.js';
import { HttpGuard } from '../../src/http/guard.js';
import { Limiter } from '../../src/limiter/limiter.js';
import { Shedder } from '../../src/limiter/shedder.js';
import { History, perSecond } from '../../src/observe/history.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import { useRedis } from '../helpers/redis.js';

const T0 = 1_700_000_000_000;

describe('History', () => {
  it('keeps one sample per second for its ring; seconds not sampled, or a ring ago, read null', () => {
    const h = new History(['a', 'b'] as const, 5);
    h.record(T0, [1, 2]);
    h.record(T0 + 400, [3, 4]);
    h.record(T0 + 2000, [5, Number.NaN]);
    assert.deepEqual(h.points(T0 + 2000, 3), [
      { at: T0, a: 3, b: 4 },
      { at: T0 + 1000, a: null, b: null },
      { at: T0 + 2000, a: 5, b: null },
    ]);
    assert.deepEqual(
      h.points(T0 + 5000, 5).map((p) => p.a),
      [null, 5, null, null, null],
      'the first second is more than a ring ago',
    );
    h.record(T0 + 5000, [9, 9]);
    assert.equal(h.points(T0 + 5000, 10).length, 5, 'never more than the ring');
  });

  it('perSecond turns running totals into the increase of each second', () => {
    const h = new History(['n'] as const, 10);
    for (const [s, n] of [
      [0, 10],
      [1, 13],
      [3, 20],
      [4, 20],
    ] as const)
      h.record(T0 + s * 1000, [n]);
    assert.deepEqual(
      perSecond(h.points(T0 + 4000, 5), ['n']).map((p) => p.n),
      [3, null, null, 0],
    );
  });
});

describe('Sampler: the shedder and the store', () => {
  it("samples the shedder's limit, in flight and baseline", () => {
    const shedder = new Shedder();
    const sampler = new Sampler();
    const permits = [shedder.acquire(), shedder.acquire()];
    sampler.sample(T0, shedder, []);
    permits[0]!.release();
    sampler.sample(T0 + 1000, shedder, []);
    const points = sampler.shedderSeries(T0 + 1000, 2);
    assert.deepEqual(
      points.map((p) => [p.limit, p.inflight]),
      [
        [shedder.limit, 2],
        [shedder.limit, 1],
      ],
    );
    assert.equal(points[0]!.baseline, null, 'no baseline before a request came back');
    assert.equal(typeof points[1]!.baseline, 'number', 'one since a request came back');
    permits[1]!.release();
  });

  it('the HTTP guard with shed gives its shedder to the handler', () => {
    const guard = new HttpGuard({ policies: { limit: 5, window: '1m' }, shed: {} });
    assert.ok(guard.shedder instanceof Shedder);
    assert.equal(new HttpGuard({ policies: { limit: 5, window: '1m' } }).shedder, undefined);
  });
});

let redis: Redis;
useRedis((client) => {
  redis = client;
});

describe('Sampler and dashboard on Redis: script calls and quota grants', () => {
  const servers: Server[] = [];
  after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

  it("counts each second's script calls exactly; two limiters on one store show as one", async () => {
    const store = new RedisStore({ client: redis, prefix: `sampler-${process.pid}:` });
    const a = new Limiter({ policies: { limit: 100, window: '1m' }, store, traffic: true });
    const b = new Limiter({ policies: { limit: 100, window: '1m' }, store, traffic: true });
    const limiters = [
      ['a', a],
      ['b', b],
    ] as const;
    const sampler = new Sampler();
    sampler.sample(T0, undefined, limiters);
    const before = store.stats.scripts;
    for (let i = 0; i < 3; i++) await a.consume(`k${i}`);
    await b.consume('other');
    sampler.sample(T0 + 1000, undefined, limiters);
    const [view, ...others] = sampler.storesView(T0 + 1000, 1, limiters);
    assert.equal(others.length, 0, 'one store');
    assert.deepEqual(view!.limiters, ['a', 'b']);
    assert.equal(view!.series.at(-1)!.scripts, store.stats.scripts - before);
    assert.ok(store.stats.scripts - before >= 1);
    assert.equal(view!.totals.scripts, store.stats.scripts);
    assert.equal(view!.totals.decisions, store.stats.decisions);
  });

  it('the dashboard answers the shedder series and the store counters; a memory store shows none', async () => {
    const store = new RedisStore({ client: redis, prefix: `dashboard-${process.pid}:` });
    const onRedis = new Limiter({ policies: { limit: 100, window: '1m' }, store, traffic: true });
    const inMemory = new Limiter({ policies: { limit: 100, window: '1m' }, traffic: true });
    const shedder = new Shedder();
    await onRedis.consume('x');
    const server = createServer(adminHandler({ limiters: { redis: onRedis, memory: inMemory }, shedder }));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/dashboard?seconds=60`;
    const permit = shedder.acquire();
    // biome-ignore lint/suspicious/noExplicitAny: the answer is read as the JSON it is
    const d = (await (await fetch(url)).json()) as any;
    permit!.release();
    assert.equal(d.shedder.series.length, 60);
    assert.deepEqual([d.shedder.series.at(-1).limit, d.shedder.series.at(-1).inflight], [shedder.limit, 1]);
    assert.equal(d.stores.length, 1);
    assert.deepEqual(d.stores[0].limiters, ['redis']);
    assert.equal(d.stores[0].totals.scripts, store.stats.scripts);
  });
});

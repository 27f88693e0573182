import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { RedisCluster } from '@floodgate/test-support';
import { Cluster } from 'ioredis';
import { createCluster } from 'redis';
import { Limiter } from '../../src/limiter/limiter.js';
import { hashSlot, RedisStore } from '../../src/stores/redis/index.js';
import { redisUnderTest, storeConformance } from '../helpers/vectors.js';

let cluster: RedisCluster;
let ioredis: Cluster;
let nodeRedis: ReturnType<typeof createCluster>;

before(async () => {
  cluster = await RedisCluster.start(3);
  ioredis = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
  nodeRedis = createCluster({
    rootNodes: cluster.ports.map((port) => ({ url: `redis://127.0.0.1:${port}` })),
  });
  await nodeRedis.connect();
});

after(async () => {
  ioredis.disconnect();
  await nodeRedis.close();
  await cluster.stop();
});

storeConformance(
  'RedisStore on a 3-master Cluster (ioredis)',
  redisUnderTest(() => ioredis),
);
storeConformance(
  'RedisStore on a 3-master Cluster (node-redis)',
  redisUnderTest(() => nodeRedis),
);

describe('RedisStore on a Cluster', () => {
  it('matches Redis on the slot of a key, with and without hash tags', () => {
    const port = String(cluster.ports[0]);
    for (const key of ['user:1', 'floodgate:{alice}:per-second:tb:1:1000', '{}x', 'a{b}c{d}', 'é{ü}']) {
      const slot = Number(
        execFileSync('redis-cli', ['-p', port, 'cluster', 'keyslot', key], { encoding: 'utf8' }),
      );
      assert.equal(hashSlot(key), slot, key);
    }
  });

  for (const [name, client] of [
    ['ioredis', () => ioredis],
    ['node-redis', () => nodeRedis],
  ] as const) {
    it(`decides many identifiers with several policies each, in one tick, across every master (${name})`, async () => {
      const errors: Error[] = [];
      const store = new RedisStore({
        client: client(),
        onError: (e) => errors.push(e),
        onStoreError: 'closed',
      });
      const limiter = new Limiter({
        store,
        policies: [
          { name: 'burst', limit: 3, window: '10s' },
          { name: 'sustained', algorithm: 'fixed-window', limit: 5, window: '1m' },
        ],
      });
      const ids = Array.from({ length: 60 }, (_, i) => `${name}-user-{${i}}`);
      const rounds = await Promise.all(
        [0, 1, 2, 3].map(() => Promise.all(ids.map((id) => limiter.consume(id)))),
      );
      assert.deepEqual(errors, []);
      for (let i = 0; i < ids.length; i++) {
        const allowed = rounds.filter((r) => r[i]!.allowed).length;
        assert.equal(allowed, 3, `${ids[i]} got ${allowed} of 4 with a burst of 3`);
      }
      // Each master holds some of these identifiers' state: the batches were routed by slot.
      for (const port of cluster.ports) {
        const keys = execFileSync(
          'redis-cli',
          ['-p', String(port), '--scan', '--pattern', `floodgate:{${name}-user-*`],
          {
            encoding: 'utf8',
          },
        );
        assert.ok(keys.trim().split('\n').length >= 10, `master on port ${port} holds keys`);
      }
    });
  }

  it('decides groups across slots by charging each and giving back: exactly the tighter limit of 100 parallel groups', async () => {
    const store = new RedisStore({ client: ioredis, prefix: `group-${Date.now()}:` });
    const user = new Limiter({
      store,
      policies: { name: 'user', algorithm: 'fixed-window', limit: 200, window: '1h' },
    });
    const route = new Limiter({
      store,
      policies: { name: 'route', algorithm: 'fixed-window', limit: 25, window: '1h' },
    });
    assert.notEqual(hashSlot('{user-a}'), hashSlot('{route-b}'));
    const replies = await Promise.all(
      Array.from({ length: 100 }, () =>
        Limiter.consumeAll([
          { limiter: user, key: 'user-a' },
          { limiter: route, key: 'route-b' },
        ]),
      ),
    );
    assert.equal(replies.filter((ds) => ds.every((d) => d.allowed)).length, 25);
    // The user was charged for every group and given back what the 75 refused ones took.
    assert.equal((await user.peek('user-a', { cost: 0 })).remaining, 175);
  });
});

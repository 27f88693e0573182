// A separate process hammering one identifier: told what to do over IPC, it answers how many were allowed.
import { Redis } from 'ioredis';
import type { PolicySpec } from '../../../src/core/policy.js';
import { Limiter } from '../../../src/limiter/limiter.js';
import { RedisStore } from '../../../src/stores/redis/index.js';

interface Round {
  key: string;
  policy: PolicySpec | PolicySpec[];
  requests: number;
  maxBatch: number;
  leases?: boolean;
}

const client = new Redis(Number(process.env.REDIS_PORT), '127.0.0.1');

process.on('message', async (round: Round) => {
  // Counted per round, so one slow round does not fail the ones after it.
  let failures = 0;
  const store = new RedisStore({
    client,
    maxBatch: round.maxBatch,
    leases: round.leases ?? false,
    onStoreError: 'closed',
    // This test is about exact counts, not about timeouts: on a loaded machine 1,000 single-decision
    // calls queue behind each other far longer than the default 250 ms.
    timeout: 10_000,
    onError: () => failures++,
  });
  const limiter = new Limiter({ store, policies: round.policy });
  const decisions = await Promise.all(
    Array.from({ length: round.requests }, () => limiter.consume(round.key)),
  );
  await store.close();
  const lapsed = store.stats.lapsedUnits;
  process.send!({ allowed: decisions.filter((d) => d.allowed).length, failures, lapsed });
});
client.on('ready', () => process.send!('ready'));
process.on('disconnect', () => client.disconnect());

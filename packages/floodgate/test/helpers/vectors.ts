import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { policySet, resolvePolicies } from '../../src/core/policy.js';
import { RedisStore } from '../../src/stores/redis/index.js';
import type { Store, StoreMode } from '../../src/stores/store.js';

interface Step {
  at: number;
  op?: StoreMode;
  cost: number;
  lease?: string;
  expect: { allowed: boolean; remaining: number; resetAt: number; retryAfter: number | null }[];
}
interface Case {
  name: string;
  start: number;
  policies: unknown[];
  steps: Step[];
}
export interface VectorFile {
  algorithm: string;
  about: string;
  cases: Case[];
}

const dir = new URL('../vectors/', import.meta.url);

/** Every vector file in `test/vectors/`. */
export function loadVectors(): VectorFile[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as VectorFile);
}

/** A store driven by the suite: `setNow` moves the time the store decides at. */
export interface StoreUnderTest {
  store: Store;
  setNow(time: number): void;
  /** Overrides how the suite calls the store (e.g. through its synchronous path). */
  apply?: Store['apply'];
  close?(): Promise<void>;
}

let unique = 0;

/** Runs every vector against a store. Each case uses a fresh identifier. */
export function storeConformance(label: string, make: () => StoreUnderTest | Promise<StoreUnderTest>): void {
  describe(`decision vectors: ${label}`, () => {
    for (const file of loadVectors()) {
      for (const c of file.cases) {
        it(`${file.algorithm}: ${c.name}`, async () => {
          const sut = await make();
          try {
            const set = policySet(resolvePolicies(c.policies, 'policies'));
            const key = `vector:${file.algorithm}:${++unique}:${process.pid}`;
            const apply = sut.apply ?? sut.store.apply.bind(sut.store);
            for (const [i, step] of c.steps.entries()) {
              sut.setNow(c.start + step.at);
              const results = await apply(key, set, step.cost, step.op ?? 'consume', step.lease);
              const actual = results.map((r) => ({
                allowed: r.allowed,
                remaining: r.remaining,
                resetAt: r.resetAt - c.start,
                retryAfter: r.retryAfter === Number.POSITIVE_INFINITY ? null : r.retryAfter,
              }));
              assert.deepEqual(
                actual,
                step.expect,
                `step ${i} (at ${step.at}, ${step.op ?? 'consume'} ${step.cost})`,
              );
            }
          } finally {
            await sut.close?.();
          }
        });
      }
    }
  });
}

/** A RedisStore on `client()` whose time the suite drives (a failed call answers "closed", never "allowed"). */
export function redisUnderTest(client: () => unknown): () => StoreUnderTest {
  return () => {
    let now = 0;
    return {
      store: new RedisStore({ client: client(), clock: { now: () => now }, onStoreError: 'closed' }),
      setNow: (t: number) => (now = t),
    };
  };
}

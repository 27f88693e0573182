import { invalidOption } from '../../core/errors.js';

/**
 * The little a store needs from a Redis client: run a script by hash or by source, and say whether it
 * talks to a Cluster (then every script call must stay within one hash slot). `redisAdapter` builds one for
 * ioredis, iovalkey and node-redis clients; write your own for another client.
 */
export interface RedisAdapter {
  /** Runs a cached script; must reject with an error whose message starts with `NOSCRIPT` if it is not cached. */
  evalsha(sha: string, keys: readonly string[], args: readonly string[]): Promise<unknown>;
  /** Runs (and caches) a script by its source. */
  eval(script: string, keys: readonly string[], args: readonly string[]): Promise<unknown>;
  /** True for a Redis Cluster client. */
  readonly cluster: boolean;
}

/** An ioredis or iovalkey `Redis` or `Cluster`. */
interface IoredisLike {
  evalsha(sha: string, numkeys: number, ...args: string[]): Promise<unknown>;
  eval(script: string, numkeys: number, ...args: string[]): Promise<unknown>;
  isCluster?: boolean;
}

/** A node-redis (`redis`, `@redis/client`) client or cluster. */
interface NodeRedisLike {
  evalSha(sha: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  getSlotMaster?: unknown;
}

function isAdapter(client: object): client is RedisAdapter {
  // ioredis has a `cluster()` method (the CLUSTER command): an adapter's `cluster` is a boolean.
  const candidate = client as Partial<RedisAdapter>;
  return typeof candidate.cluster === 'boolean' && typeof candidate.evalsha === 'function';
}

/**
 * Wraps a client of ioredis, iovalkey or node-redis (standalone or Cluster). An object that already is a
 * `RedisAdapter` is returned as it is.
 */
export function redisAdapter(client: unknown, option = 'client'): RedisAdapter {
  if (typeof client !== 'object' || client === null) {
    throw invalidOption(
      option,
      'an ioredis, iovalkey or node-redis client, or a RedisAdapter',
      client,
      'type',
    );
  }
  if (isAdapter(client)) return client;
  const node = client as Partial<NodeRedisLike>;
  if (typeof node.evalSha === 'function' && typeof node.eval === 'function') {
    const c = client as NodeRedisLike;
    return {
      cluster: typeof node.getSlotMaster === 'function',
      evalsha: (sha, keys, args) => c.evalSha(sha, { keys: [...keys], arguments: [...args] }),
      eval: (script, keys, args) => c.eval(script, { keys: [...keys], arguments: [...args] }),
    };
  }
  const io = client as Partial<IoredisLike>;
  if (typeof io.evalsha === 'function' && typeof io.eval === 'function') {
    const c = client as IoredisLike;
    return {
      cluster: io.isCluster === true,
      evalsha: (sha, keys, args) => c.evalsha(sha, keys.length, ...keys, ...args),
      eval: (script, keys, args) => c.eval(script, keys.length, ...keys, ...args),
    };
  }
  throw invalidOption(
    option,
    'an ioredis, iovalkey or node-redis client (with evalsha/evalSha), or a RedisAdapter',
    client,
    'type',
  );
}

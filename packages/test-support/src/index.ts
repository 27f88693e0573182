// Test helpers both packages (and the benchmarks) use. Private: never published.
export { freePort, RedisCluster, RedisServer, requireBinary } from './redis-server.js';

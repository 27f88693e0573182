// Test helpers both packages (and the benchmarks) use. Private: never published.

export { codeBlocks, docSection, readDoc } from './docs.js';
export { type Reply, send } from './http.js';
export { freePort, RedisCluster, RedisServer, requireBinary } from './redis-server.js';

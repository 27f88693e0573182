export { type RedisAdapter, redisAdapter } from './adapter.js';
export {
  RedisStore,
  type RedisStoreOptions,
  type RedisStoreStats,
  type StoreErrorPolicy,
} from './redis-store.js';
export { hashSlot } from './slot.js';

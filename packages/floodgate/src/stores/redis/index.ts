export { type RedisAdapter, redisAdapter } from './adapter.js';
export type { QuotaGrantOptions, RedisStoreOptions, StoreErrorPolicy } from './options.js';
export { RedisStore, type RedisStoreStats } from './redis-store.js';
export { hashSlot } from './slot.js';

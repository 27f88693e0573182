import type { FlatBacked } from './flat.js';
import { type GcraState, gcra } from './gcra.js';

/**
 * Token bucket: a bucket of `burst` tokens (default: `limit`) refilled continuously at `limit` tokens per
 * `window`; a request takes `cost` tokens or is refused and takes none. token-throttler's
 * `TokenBucket(replenish_time, max_tokens)` is `{ limit: max_tokens, window: replenish_time }`.
 *
 * A token bucket and GCRA are the same machine: the bucket's level at any time is a function of GCRA's
 * theoretical arrival time, so the state is that one (exact) number and the decisions are GCRA's.
 *
 * Guarantee: over any interval of length `d` ms, the allowed cost is at most `burst + d * limit / window`.
 */
export const tokenBucket: FlatBacked<GcraState> = { ...gcra, name: 'token-bucket' };

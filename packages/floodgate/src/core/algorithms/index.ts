import { concurrency } from './concurrency.js';
import { fixedWindow } from './fixed-window.js';
import { gcra } from './gcra.js';
import { slidingWindowCounter } from './sliding-window-counter.js';
import { slidingWindowLog } from './sliding-window-log.js';
import { tokenBucket } from './token-bucket.js';
import type { Algorithm, AlgorithmName } from './types.js';

/** Every algorithm by name. */
export const algorithms: Readonly<Record<AlgorithmName, Algorithm<unknown>>> = {
  'token-bucket': tokenBucket as Algorithm<unknown>,
  gcra: gcra as Algorithm<unknown>,
  'fixed-window': fixedWindow as Algorithm<unknown>,
  'sliding-window-log': slidingWindowLog as Algorithm<unknown>,
  'sliding-window-counter': slidingWindowCounter as Algorithm<unknown>,
  concurrency: concurrency as Algorithm<unknown>,
};

export const algorithmNames = Object.keys(algorithms) as AlgorithmName[];

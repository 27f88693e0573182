import type { AlgorithmName } from './types.js';

/**
 * Per algorithm, what stores derive their codes from: `state`, the short name its state ids carry (so
 * state kept under one algorithm is never read as another's), and `machine`, the algorithm file whose
 * functions decide it (a token bucket is GCRA's machine: the same state, the same decisions). The Redis
 * script's table of Lua modules and the codes the codec sends are both derived from this one table.
 */
export const ALGORITHM_CODES = {
  'token-bucket': { state: 'tb', machine: 'gcra' },
  gcra: { state: 'gcra', machine: 'gcra' },
  'fixed-window': { state: 'fw', machine: 'fixed-window' },
  'sliding-window-log': { state: 'swl', machine: 'sliding-window-log' },
  'sliding-window-counter': { state: 'swc', machine: 'sliding-window-counter' },
  concurrency: { state: 'cc', machine: 'concurrency' },
} as const satisfies Record<AlgorithmName, { readonly state: string; readonly machine: AlgorithmName }>;

/** The algorithms that decide on their own machine, in the table's order. */
export type MachineName = (typeof ALGORITHM_CODES)[AlgorithmName]['machine'];

import { createHash } from 'node:crypto';
import { ALGORITHM_CODES, type MachineName } from '../../core/algorithms/codes.js';
import type { AlgorithmName } from '../../core/algorithms/types.js';
import { CONCURRENCY_LUA } from './lua/concurrency.lua.js';
import { DECIDE_LUA } from './lua/decide.lua.js';
import { FIXED_WINDOW_LUA } from './lua/fixed-window.lua.js';
import { GCRA_LUA } from './lua/gcra.lua.js';
import { PRELUDE } from './lua/prelude.lua.js';
import { SETS_LUA } from './lua/sets.lua.js';
import { SLIDING_WINDOW_COUNTER_LUA } from './lua/sliding-window-counter.lua.js';
import { SLIDING_WINDOW_LOG_LUA } from './lua/sliding-window-log.lua.js';

/** Each machine's Lua module, named like its TypeScript twin in `core/algorithms`. */
const MODULES: Record<MachineName, string> = {
  gcra: GCRA_LUA,
  'fixed-window': FIXED_WINDOW_LUA,
  'sliding-window-log': SLIDING_WINDOW_LOG_LUA,
  'sliding-window-counter': SLIDING_WINDOW_COUNTER_LUA,
  concurrency: CONCURRENCY_LUA,
};

/** The machines in the code table's order: a machine's code in the script is its place here, from 1. */
const MACHINES = [...new Set(Object.values(ALGORITHM_CODES).map((c) => c.machine))];

/** The code the codec sends for each algorithm: its machine's place in the script's module table. */
export const MACHINE_CODES = Object.fromEntries(
  Object.entries(ALGORITHM_CODES).map(([name, c]) => [name, String(MACHINES.indexOf(c.machine) + 1)]),
) as Readonly<Record<AlgorithmName, string>>;

function assemble(): string {
  // One function holds every module, each in its branch: a call makes the closures of the modules it uses.
  const branches = MACHINES.map(
    (m, i) => `${i === 0 ? 'if' : 'elseif'} code == ${i + 1} then\n${MODULES[m]}`,
  );
  const make = `local function make_machine(code)\n${branches.join('')}end\nend\n`;
  return `${PRELUDE}${make}${SETS_LUA}${DECIDE_LUA}`;
}

/**
 * The one script every call runs, as a value: its source, assembled from one Lua module per machine, and
 * its SHA (EVALSHA first, EVAL only on NOSCRIPT). Redis runs a script to completion before any other
 * command, so no other client can slip between reading and writing a counter (the GET-then-SETEX race).
 * Each module mirrors its pure TypeScript twin line for line; the shared decision vectors hold both to the
 * same answers. A module's functions are made only in calls that decide one of its policies.
 *
 * KEYS: every operation's policy keys, in order.
 * ARGV: now ('' = the server's TIME); the number of policy sets in the call, then per set its number of
 *       policies and per policy machine code, limit, window, burst (a set goes once however many operations
 *       use it); then the operations, each its kind and that kind's fields (see `encodeOperation`).
 * Reply: the time decided at (ms), then per operation (after the units granted, for a grant) and policy
 *        4 integers: allowed (1/0), remaining, resetAt, retryAfter (-1: never). A reset answers nothing.
 */
const source = assemble();
export const SCRIPT = Object.freeze({ source, sha: createHash('sha1').update(source).digest('hex') });

/**
 * The two kinds of failure the command reports, each with its exit code: what the operator typed or wrote
 * is wrong (2), or the world is (1: a database, Redis or port that cannot be had). Both are printed as
 * their message alone, without a stack.
 */
export class UsageError extends Error {
  readonly exitCode = 2;
}

export class EnvironmentError extends Error {
  readonly exitCode = 1;
}

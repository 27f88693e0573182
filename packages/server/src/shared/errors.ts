/** What went wrong, as the command reports it: a usage error (2) or the environment's (1). */
export type ExitCode = typeof USAGE | typeof ENVIRONMENT;

/** What the operator typed or wrote is wrong: a flag, a variable, a configuration file. */
export const USAGE = 2;
/** The world is: a database, Redis or port that cannot be had. */
export const ENVIRONMENT = 1;

/**
 * The one error the command reports as such: its message alone, no stack, and its exit code. Everything
 * else that reaches the command line is a bug, printed with its stack.
 */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** A usage error (exit 2). */
export function usageError(message: string): CliError {
  return new CliError(USAGE, message);
}

/** An error of the environment (exit 1). */
export function environmentError(message: string): CliError {
  return new CliError(ENVIRONMENT, message);
}

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';

/** The installed entry point of the `floodgate` command. */
export const bin = resolve(import.meta.dirname, '../../bin/floodgate.js');

export interface RunningCommand {
  url: string;
  child: ChildProcess;
  /** The JSON log lines written so far. */
  logs(): Record<string, unknown>[];
  /** Sends SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Spawns `floodgate ...args` and resolves once it logs the URL it listens on; rejects if it exits first. */
export function startCommand(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunningCommand> {
  const child = spawn(process.execPath, [bin, ...args], {
    ...(options.cwd ? { cwd: options.cwd } : {}),
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const logs = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return new Promise((resolvePromise, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const ready = logs().find((l) => typeof l.url === 'string');
      if (ready !== undefined) {
        resolvePromise({
          url: ready.url as string,
          child,
          logs,
          stop: async () => {
            const exited = once(child, 'exit');
            child.kill('SIGTERM');
            return (await exited)[0] as number | null;
          },
        });
      }
    });
    child.once('exit', (code) => reject(new Error(`floodgate ${args[0]} exited with ${code}: ${err}${out}`)));
  });
}

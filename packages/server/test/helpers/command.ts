import assert from 'node:assert/strict';
import { type ChildProcess, type SpawnSyncReturns, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
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

/**
 * Spawns `floodgate ...args` and resolves once it logs the URL it listens on; rejects if it exits first.
 * `command` is the program and its first arguments (default: this Node running the workspace's `bin`).
 */
export function startCommand(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; command?: readonly [string, ...string[]] } = {},
): Promise<RunningCommand> {
  const [program, ...before] = options.command ?? [process.execPath, bin];
  const child = spawn(program, [...before, ...args], {
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

/** A connection that sends half a request and never the rest: what must not hold a stopping server up. */
export async function halfSentRequest(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => {});
  socket.resume(); // read whatever comes, so the server's close is seen
  await once(socket, 'connect');
  socket.write('GET /continents HTTP/1.1\r\nHost: x\r\n'); // the header section never ends
  // The server has read it once it answers nothing for a turn of its loop; a round trip on another
  // connection makes sure of that.
  await fetch(`${url}/health`).then(
    (r) => r.arrayBuffer(),
    () => undefined,
  );
  return socket;
}

/** Each run of the command exits 2 with a message matching its pattern, and no stack trace. */
export function assertUsageErrors(
  floodgate: (...args: string[]) => SpawnSyncReturns<string>,
  cases: readonly [args: string[], message: RegExp][],
): void {
  for (const [args, message] of cases) {
    const run = floodgate(...args);
    assert.equal(run.status, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
  }
}

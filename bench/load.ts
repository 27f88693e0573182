// Loads a server that runs in a child process of its own and reads that process's CPU time around the load:
// the server script reports `{ port }` over IPC and answers the message 'cpu' with process.cpuUsage().
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import autocannon from 'autocannon';

export interface Measure {
  rps: number;
  /** The server process's CPU time (user + system) per request, µs. */
  cpuUs: number;
  non2xx: number;
  total: number;
}

async function cpu(child: ChildProcess): Promise<number> {
  const reply = once(child, 'message');
  child.send('cpu');
  const [{ cpu: c }] = (await reply) as [{ cpu: NodeJS.CpuUsage }];
  return c.user + c.system;
}

/** Starts `script` with `args`, warms it up for a second, then loads it for `seconds` with autocannon. */
export async function measureServer(
  script: URL,
  args: string[],
  {
    connections,
    seconds,
    loader = 'tsx',
  }: {
    connections: number;
    seconds: number;
    /** How the script is loaded: `tsx/esm` leaves `require` to Node. */
    loader?: string;
  },
): Promise<Measure> {
  const child = fork(script, args, {
    execArgv: ['--import', loader],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  try {
    const [{ port }] = (await once(child, 'message')) as [{ port: number }];
    const url = `http://127.0.0.1:${port}/`;
    await autocannon({ url, connections, duration: 1 });
    const before = await cpu(child);
    const r = await autocannon({ url, connections, duration: seconds });
    const used = (await cpu(child)) - before;
    const total = r.requests.total;
    return { rps: r.requests.average, cpuUs: used / total, non2xx: r.non2xx, total };
  } finally {
    child.kill();
  }
}

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { RedisServer } from '@floodgate/test-support';
import autocannon from 'autocannon';

const redis = await RedisServer.start();
async function count(variant: string, requests: number): Promise<number> {
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--callgrind-out-file=/tmp/cg.out',
      'node',
      '--single-threaded',
      '--import',
      'tsx',
      'bench/http-server.ts',
      'node:http',
      variant,
      'allowed',
      String(redis.port),
    ],
    { env: { ...process.env, REQUESTS: String(requests) }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  let stdout = '';
  const port = await new Promise<number>((res) =>
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /ready (\d+)/.exec(stdout);
      if (m) res(Number(m[1]));
    }),
  );
  const exited = once(child, 'exit');
  await autocannon({ url: `http://127.0.0.1:${port}/`, connections: 1, amount: requests });
  await exited;
  return Number(/Collected : (\d+)/.exec(stderr)![1]);
}
for (const v of process.argv.slice(2)) {
  const few = await count(v, 4000);
  const many = await count(v, 12000);
  console.log(v, Math.round((many - few) / 8000));
}
await redis.stop();

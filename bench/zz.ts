import { fork } from 'node:child_process';
import { once } from 'node:events';
import { RedisServer } from '@floodgate/test-support';
import autocannon from 'autocannon';

const redis = await RedisServer.start();
const variant = process.argv[2]!;
const child = fork(
  new URL('./http-server.ts', import.meta.url),
  ['node:http', variant, 'allowed', String(redis.port)],
  {
    execArgv: ['--import', 'tsx', '--cpu-prof', '--cpu-prof-dir=/tmp/prof2'],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  },
);
const [{ port }] = (await once(child, 'message')) as [{ port: number }];
await autocannon({ url: `http://127.0.0.1:${port}/`, connections: 32, duration: 4 });
child.send('exit');
await once(child, 'exit');
await redis.stop();

// One server for bench/rls.ts, in its own process: reports its address over IPC and answers 'cpu' with its
// own process.cpuUsage(). `echo` is plain @grpc/grpc-js with the same service, answering OK without deciding:
// the transport's ceiling; otherwise `floodgate rls` on the store given.
//   node --import tsx bench/rls-server.ts <config.yaml> <echo|memory|redis URL>
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { pino } from 'pino';
import { rateLimitService } from '../packages/server/src/rls/protocol.js';
import { startRls } from '../packages/server/src/rls/rls.js';

async function echo(): Promise<string> {
  const server = new Server();
  server.addService(rateLimitService().service, {
    shouldRateLimit: (_call: unknown, callback: (error: null, reply: object) => void) =>
      callback(null, { overall_code: 'OK' }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
      error === null ? resolve(bound) : reject(error),
    ),
  );
  return `127.0.0.1:${port}`;
}

const [config, store] = process.argv.slice(2) as [string, string];
const address =
  store === 'echo'
    ? await echo()
    : (
        await startRls(
          config,
          { listen: { host: '127.0.0.1', port: 0 }, admin: false, store },
          { log: pino({ level: 'silent' }), watch: false },
        )
      ).address;
process.on('message', (m) => {
  if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
  // An exit of its own, not a signal: `--cpu-prof` writes its profile only then.
  if (m === 'exit') process.exit(0);
});
process.send!({ address });

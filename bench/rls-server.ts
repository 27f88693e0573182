// One server for bench/rls.ts, in its own process: reports its address over IPC and answers 'cpu' with its
// own process.cpuUsage().
//   node --import tsx bench/rls-server.ts <config.yaml> <echo|answer|memory|redis URL>
// `echo` is plain @grpc/grpc-js with the same service, answering OK without deciding: the transport's
// ceiling. `answer` is the same server answering, without deciding, the answer floodgate rls gives the
// bench's calls (made once, at start): what the transport costs for its bytes. Otherwise `floodgate rls`
// on the store given.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { MemoryStore } from 'floodgate';
import { pino } from 'pino';
import { loadRlsConfig } from '../packages/server/src/rls/config.js';
import { rateLimitService, toWire } from '../packages/server/src/rls/protocol.js';
import { startRls } from '../packages/server/src/rls/rls.js';
import { RateLimitService } from '../packages/server/src/rls/service.js';

async function echo(config: string, full: boolean): Promise<string> {
  let reply: object = { overall_code: 'OK' };
  if (full) {
    const service = new RateLimitService(loadRlsConfig(config), new MemoryStore());
    const answer = await service.decide({
      domain: 'bench',
      hitsAddend: 0,
      descriptors: [
        { entries: [{ key: 'client', value: 'c0' }] },
        { entries: [{ key: 'path', value: '/api' }] },
      ],
    });
    reply = toWire(answer);
  }
  const server = new Server();
  server.addService(rateLimitService().service, {
    shouldRateLimit: (_call: unknown, callback: (error: null, reply: object) => void) =>
      callback(null, reply),
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
  store === 'echo' || store === 'answer'
    ? await echo(config, store === 'answer')
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

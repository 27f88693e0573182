// One `floodgate rls` for bench/rls.ts, in its own process: reports its address over IPC and answers 'cpu'.
//   node --import tsx bench/rls-server.ts <config.yaml> <memory|redis URL>
import { pino } from 'pino';
import { startRls } from '../packages/server/src/rls/rls.js';

const [config, store] = process.argv.slice(2) as [string, string];
const rls = await startRls(
  config,
  { listen: { host: '127.0.0.1', port: 0 }, admin: false, store },
  { log: pino({ level: 'silent' }), watch: false },
);
process.on('message', (m) => {
  if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
});
process.send!({ address: rls.address });

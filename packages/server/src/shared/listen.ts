import type { Server } from 'node:http';
import { environmentError } from './errors.js';

/** Listens on host:port; a port in use or a host that is not ours becomes an environment error naming the setting. */
export async function listen(
  server: Server,
  host: string,
  port: number,
  names = { port: '--port', host: '--host' },
): Promise<string> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw environmentError(`port ${port} on ${host} is already in use; choose another with ${names.port}`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
      throw environmentError(`cannot listen on host "${host}" (${names.host})`);
    if (code === 'EACCES')
      throw environmentError(
        `not allowed to listen on port ${port}; choose one above 1023 with ${names.port}`,
      );
    throw error;
  }
  const { port: bound } = server.address() as { port: number };
  return `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
}

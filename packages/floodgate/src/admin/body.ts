import type { IncomingMessage } from 'node:http';

/** The largest request body the admin API reads (an override's policies). */
export const BODY_LIMIT = 64 * 1024;

/** Whether a Content-Type is JSON: what no form of another site can send without a preflight. */
export function isJson(type: string | undefined): boolean {
  return /^application\/json\s*(?:;|$)/i.test(type ?? '');
}

/** The body as text; undefined when it is larger than BODY_LIMIT (the request is then dropped) or fails. */
export function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > BODY_LIMIT) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(undefined));
  });
}

import type { IncomingMessage } from 'node:http';

/** The largest request body the admin API reads (an override's policies). */
export const BODY_LIMIT = 64 * 1024;

/**
 * The most of a body too large that is read through and dropped so that its 413 arrives whole: a client
 * still sending when the connection closes under it gets a reset, which may lose the answer. Past it, the
 * connection is cut.
 */
export const DRAIN_LIMIT = 64 * 1024 * 1024;

/** Whether a Content-Type is JSON: what no form of another site can send without a preflight. */
export function isJson(type: string | undefined): boolean {
  return /^application\/json\s*(?:;|$)/i.test(type ?? '');
}

/** What `readBody` found: the text, a body over BODY_LIMIT, or a request that broke off. */
export type Body = { readonly text: string } | 'too-large' | 'failed';

/**
 * The body as text, up to BODY_LIMIT. A larger one (by its Content-Length, or once it passes the limit)
 * is no longer kept: the rest is read and dropped, up to DRAIN_LIMIT, while the caller answers 413; the
 * connection is closed once it is all in (see `closeWhenRead`).
 */
export function readBody(req: IncomingMessage): Promise<Body> {
  return new Promise((resolve) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > BODY_LIMIT) {
      drain(req);
      return resolve('too-large');
    }
    let size = 0;
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= BODY_LIMIT) return void chunks.push(chunk);
      req.off('data', onData);
      drain(req, size);
      resolve('too-large');
    };
    req.on('data', onData);
    req.on('end', () => resolve({ text: Buffer.concat(chunks).toString('utf8') }));
    req.on('error', () => resolve('failed'));
  });
}

/** Reads the rest of `req` and drops it; past DRAIN_LIMIT, the connection is cut. */
function drain(req: IncomingMessage, read = 0): void {
  let size = read;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > DRAIN_LIMIT) req.socket.destroy();
  });
  req.resume();
}

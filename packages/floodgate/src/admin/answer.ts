import type { IncomingMessage, ServerResponse } from 'node:http';

/** What a route of the admin API answers: a status and a JSON body. */
export interface Answer {
  readonly status: number;
  readonly body: unknown;
  /** A request whose body is still coming in (and being dropped): the connection closes once it is in. */
  readonly closeAfter?: IncomingMessage;
}

export const notFound = (what: string): Answer => ({ status: 404, body: { error: `no ${what}` } });
export const badRequest = (error: string): Answer => ({ status: 400, body: { error } });

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  503: 'Service Unavailable',
};

/**
 * Writes an answer, unless one was already written: JSON, or for an error an RFC 9457 problem (`detail`,
 * and `error` as the page reads it). With `closeAfter`, a request whose body is still coming: the answer
 * is written at once, and the connection closed once the body is all in. Closed earlier, with the client
 * still sending, the connection would be reset under it, which may lose the answer.
 */
export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: [string, string][] = [],
  closeAfter?: IncomingMessage,
): void {
  if (res.headersSent) return;
  const error = status >= 400 ? (body as { error?: unknown } | null)?.error : undefined;
  const text = JSON.stringify(
    typeof error === 'string'
      ? { type: 'about:blank', title: TITLES[status] ?? 'Error', status, detail: error, error }
      : body,
  );
  const type = typeof error === 'string' ? 'application/problem+json' : 'application/json';
  const fields: [string, string][] = [
    ['Content-Type', type],
    ['Content-Length', String(Buffer.byteLength(text))],
    ['Cache-Control', 'no-store'],
    ...headers,
  ];
  if (closeAfter === undefined) {
    res.writeHead(status, fields.flat());
    res.end(text);
    return;
  }
  res.writeHead(status, [...fields, ['Connection', 'close']].flat());
  res.write(text);
  if (closeAfter.complete) res.end();
  else {
    closeAfter.once('end', () => res.end());
    closeAfter.once('close', () => res.end());
  }
}

/** The identifier as the limiter is given it, from the one the summaries hold (bounded by `boundKey`). */
export function unbound(key: string): string | undefined {
  if (key.startsWith('~~')) return key.slice(1);
  return key.startsWith('~#') ? undefined : key;
}

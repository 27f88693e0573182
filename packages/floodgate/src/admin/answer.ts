import type { ServerResponse } from 'node:http';

/** What a route of the admin API answers: a status and a JSON body. */
export interface Answer {
  readonly status: number;
  readonly body: unknown;
}

export const notFound = (what: string): Answer => ({ status: 404, body: { error: `no ${what}` } });
export const badRequest = (error: string): Answer => ({ status: 400, body: { error } });

/** Writes a JSON answer, unless one was already written. */
export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: [string, string][] = [],
): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(
    status,
    [['Content-Type', 'application/json'], ['Cache-Control', 'no-store'], ...headers].flat(),
  );
  res.end(text);
}

/** The identifier as the limiter is given it, from the one the summaries hold (bounded by `boundKey`). */
export function unbound(key: string): string | undefined {
  if (key.startsWith('~~')) return key.slice(1);
  return key.startsWith('~#') ? undefined : key;
}

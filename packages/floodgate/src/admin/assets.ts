import type { ServerResponse } from 'node:http';
import { PAGE } from './page/index.js';

/**
 * Serves the dashboard's files (the page, its script and styles, uPlot) by their path below the handler's
 * base; false when there is no such file.
 */
export function serveAsset(res: ServerResponse, path: string, head: boolean): boolean {
  const asset = PAGE[path];
  if (asset === undefined) return false;
  res.writeHead(200, {
    'Content-Type': asset.type,
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(head ? undefined : asset.body);
  return true;
}

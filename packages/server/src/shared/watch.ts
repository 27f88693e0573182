import { type FSWatcher, statSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';

/**
 * Calls `changed` when `file` (or a file in the directory `file`) changes, a moment after the last write. The directory is watched, not the
 * file: editors and config managers replace the file, which ends a watch on it.
 */
export function watchConfig(file: string, changed: () => void, log: Logger): FSWatcher {
  // A directory of files (floodgate rls takes one): any change in it.
  const directory = statSync(file, { throwIfNoEntry: false })?.isDirectory() === true;
  const name = basename(file);
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(directory ? file : dirname(file), (_event, which) => {
    if (!directory && which !== null && which !== name) return;
    clearTimeout(timer);
    timer = setTimeout(changed, 100);
  });
  watcher.on('error', (error) => log.warn({ err: error.message }, 'cannot watch the configuration file'));
  return watcher;
}

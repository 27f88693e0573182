import { type FSWatcher, realpathSync, statSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';

/** What the path names now, through any symlinks: a change of target is a change. */
function identity(file: string): string {
  try {
    const { ino, size, mtimeMs } = statSync(file);
    return JSON.stringify([realpathSync(file), ino, size, mtimeMs]);
  } catch {
    return 'missing';
  }
}

/**
 * Calls `changed` when `file` (or a file in the directory `file`) changes, a moment after the last write. The
 * directory is watched, not the file: editors and config managers replace the file, which ends a watch on
 * it. A file whose symlink resolves elsewhere after a change in the directory changed too: a Kubernetes
 * ConfigMap's `config.yaml` is a link through `..data`, which is swapped for a link to a new folder while
 * `config.yaml` itself is never touched.
 */
export function watchConfig(file: string, changed: () => void, log: Logger): FSWatcher {
  // A directory of files (floodgate rls takes one): any change in it.
  const directory = statSync(file, { throwIfNoEntry: false })?.isDirectory() === true;
  const name = basename(file);
  let seen = directory ? '' : identity(file);
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(directory ? file : dirname(file), (_event, which) => {
    if (!directory && which !== name) {
      const now = identity(file);
      if (now === seen) return;
      seen = now;
    }
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (!directory) seen = identity(file);
      changed();
    }, 100);
  });
  watcher.on('error', (error) => log.warn({ err: error.message }, 'cannot watch the configuration file'));
  return watcher;
}

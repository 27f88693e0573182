import { readFileSync } from 'node:fs';
import { isSea } from 'node:sea';
import { fileURLToPath } from 'node:url';
import { environmentError } from '../shared/errors.js';

// The databases' drivers are optional dependencies: better-sqlite3 compiles native code wherever no
// prebuilt binary fits, and only `serve` needs either, so `proxy` and `rls` install without a compiler
// (`npm install --omit=optional`). Each is imported when `serve` opens a database of its kind, and its
// absence is reported as what it is, with the command that installs it.

/** The folder the command is installed in, where a driver must be installed to be found. */
const PACKAGE_DIR = fileURLToPath(new URL('../../', import.meta.url));

/** The version range this package declares for `name`, so the advice installs one that fits. */
function declaredRange(name: string): string | undefined {
  try {
    const manifest = JSON.parse(readFileSync(`${PACKAGE_DIR}package.json`, 'utf8')) as {
      optionalDependencies?: Record<string, string>;
    };
    return manifest.optionalDependencies?.[name];
  } catch {
    return undefined;
  }
}

/** Whether `error` says that `name` itself (not something it requires) cannot be found. */
function isMissing(error: unknown, name: string): boolean {
  const { code, message } = error as { code?: unknown; message?: unknown };
  return (
    // The single executable's require knows Node's built-in modules only.
    (code === 'ERR_MODULE_NOT_FOUND' ||
      code === 'MODULE_NOT_FOUND' ||
      code === 'ERR_UNKNOWN_BUILTIN_MODULE') &&
    typeof message === 'string' &&
    (message.includes(`'${name}'`) || message.includes(`"${name}"`) || message.endsWith(`: ${name}`))
  );
}

/** The sentence that says `name` is missing, what needs it, and how to install it. */
export function missingDriver(name: string, needs: string): string {
  if (isSea())
    return (
      `${needs} needs the package ${name}, which the single executable file does not carry; ` +
      `install the command with npm for it (see the README)`
    );
  const range = declaredRange(name);
  const spec = range === undefined ? name : `${name}@${range}`;
  return (
    `${needs} needs the package ${name}, which is not installed (it is optional, so that the other ` +
    `commands install without a compiler); install it beside the command: ` +
    `npm install --no-save --prefix "${PACKAGE_DIR.replace(/\/$/, '')}" ${spec}`
  );
}

/** `load()`, or a CliError naming the package and its install command when the package is absent. */
export async function importDriver<T>(name: string, needs: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if (isMissing(error, name)) throw environmentError(missingDriver(name, needs));
    throw error;
  }
}

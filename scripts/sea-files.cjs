// The first part of the single executable's script (see build-sea.mjs): the files the command reads at
// run time, which a single executable on Node 20 cannot carry as assets, served from memory. Only paths
// under one root that exists nowhere on disk are answered; every other path goes to the file system as
// before. `files` maps each path under `root` to its text.
// biome-ignore lint/correctness/noUnusedVariables: build-sea.mjs calls it in the script this text begins
function serveFilesFromMemory(root, files) {
  const fs = require('node:fs');
  const { fileURLToPath } = require('node:url');
  const pathOf = (p) => (p instanceof URL ? fileURLToPath(p) : typeof p === 'string' ? p : undefined);
  const held = (p) => {
    const path = pathOf(p);
    return path?.startsWith(root) ? path.slice(root.length) : undefined;
  };
  const missing = (syscall, path) =>
    Object.assign(new Error(`ENOENT: no such file or directory, ${syscall} '${path}'`), {
      code: 'ENOENT',
      errno: -2,
      syscall,
      path,
    });
  const { readFileSync, accessSync, existsSync } = fs;
  fs.readFileSync = (path, options, ...rest) => {
    const name = held(path);
    if (name === undefined) return readFileSync(path, options, ...rest);
    if (!Object.hasOwn(files, name)) throw missing('open', pathOf(path));
    const encoding = typeof options === 'string' ? options : options?.encoding;
    const bytes = Buffer.from(files[name], 'utf8');
    return encoding ? bytes.toString(encoding) : bytes;
  };
  fs.accessSync = (path, ...rest) => {
    const name = held(path);
    if (name === undefined) return accessSync(path, ...rest);
    if (!Object.hasOwn(files, name)) throw missing('access', pathOf(path));
  };
  fs.existsSync = (path) => {
    const name = held(path);
    return name === undefined ? existsSync(path) : Object.hasOwn(files, name);
  };
}

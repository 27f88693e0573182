// The packages one workspace package needs at run time, read from the workspace's package-lock.json: each
// as the lock file's folder (where `npm ci` installed it, the version the tests ran) and the folder it takes
// in the package's own node_modules, resolved as Node resolves a require from each package's folder.
// Optional dependencies and everything reached only through them are left out.

/** The folder whose node_modules a package at `location` resolves from after its own. */
function parentOf(location) {
  const at = location.lastIndexOf('node_modules/');
  return at <= 0 ? '' : location.slice(0, at - 1);
}

/** Where Node finds `name` from `location` in the lock's tree, as a lock key; undefined when nowhere. */
function resolveIn(packages, name, location) {
  for (let from = location; ; from = parentOf(from)) {
    const key = `${from === '' ? '' : `${from}/`}node_modules/${name}`;
    if (packages[key] !== undefined) return key;
    if (from === '') return undefined;
  }
}

/**
 * @param lock the workspace's package-lock.json, parsed
 * @param workspace the package's folder in the workspace, e.g. "packages/server"
 * @param manifest the package's package.json
 * @param skip names of direct dependencies to leave out (provided otherwise)
 * @returns [lock key, folder in the package] pairs, e.g. ["node_modules/ioredis", "node_modules/ioredis"]
 */
export function requiredPackages(lock, workspace, manifest, skip = []) {
  const { packages } = lock;
  /** lock key → folder in the package */
  const placed = new Map();
  const visit = (name, from) => {
    const key = resolveIn(packages, name, from);
    if (key === undefined) throw new Error(`${from} needs ${name}, which the lock file does not hold`);
    if (placed.has(key)) return;
    const target = key.startsWith(`${workspace}/`) ? key.slice(workspace.length + 1) : key;
    if ([...placed.values()].includes(target))
      throw new Error(`two versions of ${name} would have to be installed at ${target}`);
    placed.set(key, target);
    const entry = packages[key];
    if (entry.link) throw new Error(`${name} is a workspace link: bundle it as a package of its own`);
    const peers = Object.keys(entry.peerDependencies ?? {}).filter(
      (n) => !entry.peerDependenciesMeta?.[n]?.optional,
    );
    for (const dep of [...Object.keys(entry.dependencies ?? {}), ...peers]) visit(dep, key);
  };
  for (const name of Object.keys(manifest.dependencies ?? {}))
    if (!skip.includes(name)) visit(name, workspace);
  return [...placed].sort((a, b) => a[1].localeCompare(b[1]));
}

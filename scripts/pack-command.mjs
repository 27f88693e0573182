// Packs the `floodgate` command as one tarball that installs on its own, before any release of the library:
//   node scripts/pack-command.mjs [--out DIR] [--no-build]   (npm run pack-command)
// then, on any machine with Node.js and npm:  npm install -g --omit=optional ./floodgate-server-0.1.0.tgz
//
// The command's package depends on the library by version, and the library is not on the registry yet, so
// the tarball carries it, as npm carries its own dependencies: every run-time dependency is in the tarball's
// node_modules and named in bundleDependencies, and npm installs a bundled dependency from the tarball,
// never asking the registry for it. The library is its own packed tarball, unpacked; the others are copied
// from the workspace's node_modules, at the versions the lock file fixed and the tests ran. So the install
// needs no registry, no compiler and no second build to keep in step. The database drivers, optional
// dependencies that only `serve` loads, are not carried: npm fetches them (better-sqlite3 compiles where no
// prebuilt binary fits) unless --omit=optional says not to. Packing happens in a folder of its own, whose
// node_modules holds exactly what is bundled (the workspace's holds everything, the library as a link).
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { requiredPackages } from './dependency-closure.mjs';

const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: { out: { type: 'string', default: root }, 'no-build': { type: 'boolean', default: false } },
});
const out = resolve(values.out);

const run = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
/** `npm pack` of `args`, in `cwd`, into `dest`: the tarball's file name. */
const pack = (args, cwd, dest) =>
  JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest, ...args], cwd))[0]
    .filename;

if (!values['no-build']) run('npm', ['run', 'build'], root);

const stage = mkdtempSync(join(tmpdir(), 'floodgate-pack-command-'));
try {
  const library = pack(['--workspace', 'floodgate'], root, stage);
  const command = pack(['--workspace', 'floodgate-server'], root, stage);
  const dir = join(stage, 'package');
  run('tar', ['-xzf', command], stage);
  mkdirSync(join(dir, 'node_modules/floodgate'), { recursive: true });
  run('tar', [
    '-xzf',
    join(stage, library),
    '--strip-components=1',
    '-C',
    join(dir, 'node_modules/floodgate'),
  ]);

  const manifestPath = join(dir, 'package.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  const bundled = JSON.parse(readFileSync(join(dir, 'node_modules/floodgate/package.json'), 'utf8'));
  if (manifest.dependencies.floodgate !== bundled.version) {
    throw new Error(
      `floodgate-server depends on floodgate ${manifest.dependencies.floodgate}, but the workspace's library is ${bundled.version}`,
    );
  }
  // The command's other run-time dependencies travel with it too, copied from the workspace's
  // node_modules: the versions the tests ran, and an install that needs no registry. The database drivers
  // are optional dependencies and stay out, for npm to fetch unless --omit=optional says not to.
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  for (const [from, to] of requiredPackages(lock, 'packages/server', manifest, ['floodgate']))
    cpSync(join(root, from), join(dir, to), { recursive: true });
  // `private` stays: it keeps the package off the registry (npm publish refuses it) and does not stop
  // `npm pack` or installing a tarball.
  manifest.bundleDependencies = Object.keys(manifest.dependencies);
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);

  mkdirSync(join(stage, 'out'));
  const tarball = pack([], dir, join(stage, 'out'));
  mkdirSync(out, { recursive: true });
  copyFileSync(join(stage, 'out', tarball), join(out, tarball));
  console.log(join(out, tarball));
} finally {
  rmSync(stage, { recursive: true, force: true });
}

// Builds the `floodgate` command as one executable file, Node's own binary with the command inside (Node's
// single executable applications), for a machine without Node.js:
//   node scripts/build-sea.mjs [--out FILE] [--no-build]   (npm run build-sea; default: ./floodgate)
//
// esbuild bundles the built command and its dependencies into one CommonJS script; Node turns it into a
// blob, and postject injects the blob into a copy of the running `node`. On Node 20 a single executable
// carries no other files, so what the command reads at run time (its package.json, the RLS protos, the
// health-check protos of grpc-health-check) is inlined and served from memory under a root that exists
// nowhere on disk (sea-files.cjs). better-sqlite3, a native addon, cannot be inside: `serve` on SQLite
// says so; proxy, rls and serve on MySQL/MariaDB work. The file runs on the OS and CPU it was built on.
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const root = resolve(import.meta.dirname, '..');
const server = join(root, 'packages/server');
const { values } = parseArgs({
  options: {
    out: { type: 'string', default: join(root, 'floodgate') },
    'no-build': { type: 'boolean', default: false },
  },
});
const out = resolve(values.out);
// What the tools print goes with the error when one fails (postject's warnings about ELF note sections
// it does not name are expected), and is not repeated when all went well.
const run = (cmd, args, cwd = root) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

if (!values['no-build']) run('npm', ['run', 'build']);

/** The root of the inlined files: the package's folder as the bundle sees it, on no disk. */
const ROOT = '/$floodgate-sea/';
const HEALTH = 'node_modules/grpc-health-check/build/src';
const files = {};
const inline = (folder, under, keep) => {
  for (const file of readdirSync(folder, { recursive: true }).map(String).filter(keep))
    files[join(under, file)] = readFileSync(join(folder, file), 'utf8');
};
inline(server, '', (f) => f === 'package.json');
inline(join(server, 'proto'), 'proto', (f) => f.endsWith('.proto'));
const healthPackage = dirname(createRequire(join(server, 'package.json')).resolve('grpc-health-check'));
inline(join(healthPackage, '../../proto'), 'node_modules/grpc-health-check/proto', (f) =>
  f.endsWith('.proto'),
);

/** grpc-health-check loads its protos from beside its own file: make that the inlined folder. */
const healthFromMemory = {
  name: 'grpc-health-check-protos',
  setup(plugin) {
    plugin.onLoad({ filter: /grpc-health-check[/\\]build[/\\]src[/\\]health\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (!source.includes('__dirname')) throw new Error(`${args.path} no longer loads from __dirname`);
      return { contents: source.replaceAll('__dirname', JSON.stringify(ROOT + HEALTH)), loader: 'js' };
    });
  },
};

const work = mkdtempSync(join(tmpdir(), 'floodgate-sea-'));
try {
  const bundled = await build({
    stdin: {
      contents: "import { run } from './dist/cli/main.js';\nrun();\n",
      resolveDir: server,
      sourcefile: 'sea-main.js',
    },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // The bundle's modules find their files as if they were in the package's folder, under ROOT.
    define: { 'import.meta.url': JSON.stringify(`file://${ROOT}dist/cli/main.js`) },
    external: ['better-sqlite3'],
    plugins: [healthFromMemory],
    write: false,
    logLevel: 'warning',
  });
  const script = [
    readFileSync(join(import.meta.dirname, 'sea-files.cjs'), 'utf8'),
    `serveFilesFromMemory(${JSON.stringify(ROOT)}, ${JSON.stringify(files)});`,
    bundled.outputFiles[0].text,
  ].join('\n');
  writeFileSync(join(work, 'floodgate.cjs'), script);
  writeFileSync(
    join(work, 'sea-config.json'),
    JSON.stringify({
      main: join(work, 'floodgate.cjs'),
      output: join(work, 'floodgate.blob'),
      disableExperimentalSEAWarning: true,
    }),
  );
  run(process.execPath, ['--experimental-sea-config', join(work, 'sea-config.json')], work);
  mkdirSync(dirname(out), { recursive: true });
  rmSync(out, { force: true });
  copyFileSync(process.execPath, out);
  run(process.execPath, [
    join(root, 'node_modules/postject/dist/cli.js'),
    out,
    'NODE_SEA_BLOB',
    join(work, 'floodgate.blob'),
    '--sentinel-fuse',
    'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
  ]);
  console.log(`${out}: ${Object.keys(files).length} files inlined`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

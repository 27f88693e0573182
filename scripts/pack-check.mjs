// Packs the library as npm would publish it, installs the tarball into a clean project, and loads every
// subpath of its export map with ESM `import` and CommonJS `require`, then type-checks both forms. A broken
// export map, a missing file or a runtime dependency that was never declared fails here, before release.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const work = join(root, '.pack-check');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

const run = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

const [{ filename }] = JSON.parse(
  run('npm', ['pack', '--json', '--workspace', 'floodgate', '--pack-destination', work], root),
);
const consumer = join(work, 'consumer');
mkdirSync(consumer);
writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
run(
  'npm',
  ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--offline', join(work, filename)],
  consumer,
);

const manifest = JSON.parse(readFileSync(join(consumer, 'node_modules/floodgate/package.json'), 'utf8'));
if (manifest.dependencies && Object.keys(manifest.dependencies).length > 0) {
  throw new Error(
    `the library must have no runtime dependencies; found ${Object.keys(manifest.dependencies)}`,
  );
}
// What a user reads and may rely on ships with it: the README, the licence, and source maps that carry
// their sources (the maps' `src/*.ts` are not in the package, so they must be embedded).
const installed = join(consumer, 'node_modules/floodgate');
for (const file of ['README.md', 'LICENSE']) {
  if (!existsSync(join(installed, file))) throw new Error(`the package lacks ${file}`);
}
const maps = readdirSync(join(installed, 'dist'), { recursive: true }).filter((f) =>
  String(f).endsWith('.js.map'),
);
if (maps.length === 0) throw new Error('the package has no source maps');
for (const map of maps) {
  const { sources, sourcesContent } = JSON.parse(readFileSync(join(installed, 'dist', String(map)), 'utf8'));
  if (
    !Array.isArray(sourcesContent) ||
    sourcesContent.length !== sources.length ||
    sourcesContent.some((c) => typeof c !== 'string')
  )
    throw new Error(`dist/${map} points at sources it does not carry`);
}
console.log(`pack-check: README.md, LICENSE, and ${maps.length} source maps with their sources`);

const specifiers = Object.keys(manifest.exports)
  .filter((k) => k !== './package.json')
  .map((k) => (k === '.' ? 'floodgate' : `floodgate/${k.slice(2)}`));

const esm = specifiers.map((s, i) => `import * as m${i} from '${s}';\ncheck('${s}', m${i});`).join('\n');
const cjs = specifiers.map((s) => `check('${s}', require('${s}'));`).join('\n');
const check = `function check(name, mod) {
  const names = Object.keys(mod).filter((k) => k !== 'default' && k !== '__esModule');
  if (names.length === 0) throw new Error(name + ' exports nothing');
  console.log('  ' + name + ': ' + names.length + ' exports');
}\n`;
writeFileSync(join(consumer, 'check.mjs'), `${check}${esm}\n`);
writeFileSync(join(consumer, 'check.cjs'), `${check}${cjs}\n`);
console.log('pack-check: ESM import');
process.stdout.write(run(process.execPath, ['check.mjs'], consumer));
console.log('pack-check: CommonJS require');
process.stdout.write(run(process.execPath, ['check.cjs'], consumer));

// Types resolve through the "types" conditions for both module systems. Nest's own declarations need
// Node's types, as every Nest application has them, and so does floodgate/admin, a node:http handler; the
// other subpaths are checked without them.
const NEEDS_NODE_TYPES = new Set(['floodgate/nest', 'floodgate/admin']);
const typed = specifiers
  .filter((s) => !NEEDS_NODE_TYPES.has(s))
  .map((s, i) => `import * as t${i} from '${s}';\nexport const n${i} = Object.keys(t${i}).length;`)
  .join('\n');
writeFileSync(
  join(consumer, 'typed.mts'),
  `${typed}\nimport { Limiter } from 'floodgate';\nexport const l: Limiter = new Limiter({ policies: { limit: 1, window: '1s' } });\n`,
);
writeFileSync(
  join(consumer, 'typed.cts'),
  `import floodgate = require('floodgate');\nexport const l: floodgate.Limiter = new floodgate.Limiter({ policies: { limit: 1, window: '1s' } });\n`,
);
/** Type-checks `files` in the consumer as a user's project would, with the given `@types`. */
function typeCheck(name, files, types) {
  writeFileSync(
    join(consumer, name),
    JSON.stringify({
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        typeRoots: [join(root, 'node_modules/@types')],
        types,
      },
      files,
    }),
  );
  run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', name], consumer);
}
typeCheck('tsconfig.json', ['typed.mts', 'typed.cts'], []);
writeFileSync(
  join(consumer, 'typed-node.mts'),
  [...NEEDS_NODE_TYPES]
    .map((s, i) => `import * as t${i} from '${s}';\nexport const n${i} = Object.keys(t${i}).length;`)
    .join('\n'),
);
typeCheck('tsconfig.node.json', ['typed-node.mts'], ['node']);
console.log(`pack-check: ${specifiers.length} subpath(s) load with import and require, and type-check`);
rmSync(work, { recursive: true, force: true });

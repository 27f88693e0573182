// Every TypeScript example in the READMEs and the pages of docs/ is a complete program: this test
// type-checks and runs each one against the built package, and compares what it prints with the `// → `
// lines written under it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';

const root = resolve(import.meta.dirname, '..');
const dir = join(root, 'examples/.readme');
// The repository's README, the one shipped with the library package, and every page of docs/.
const pages = [
  'README.md',
  'packages/floodgate/README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`),
];
const blocks = pages.flatMap((page) =>
  [...readFileSync(join(root, page), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((m, i) => ({
    page,
    name: `${page}, example ${i + 1}`,
    code: m[1]!,
  })),
);

// Examples that use Redis read REDIS_URL: they get a server of this test's own.
let redis: RedisServer;
before(async () => {
  redis = await RedisServer.start();
});
after(async () => {
  await redis.stop();
});

describe('documentation examples', () => {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const files = blocks.map(({ code }, i) => {
    const file = join(dir, `example-${i + 1}.ts`);
    writeFileSync(file, code);
    return file;
  });

  it('reads every page that holds examples', () => {
    // The pages known to hold examples: a page this test stopped reading, or examples lost in a move, fail here.
    const held = ['README.md', 'dashboard', 'limiter', 'middleware', 'nest', 'shedding', 'stores'];
    for (const page of held.map((p) => (p.endsWith('.md') ? p : `docs/${p}.md`)))
      assert.ok(
        blocks.some((b) => b.page === page),
        `${page} has an example`,
      );
    assert.ok(blocks.length >= 21, `${blocks.length} examples`);
  });

  it('type-check', () => {
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          noEmit: true,
          // The Nest example is written with Nest's decorators.
          experimentalDecorators: true,
          // Third-party typings are not ours to check (@types/koa references a type its dependency dropped).
          skipLibCheck: true,
          types: ['node'],
        },
        include: ['*.ts'],
      }),
    );
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', dir], {
      encoding: 'utf8',
    });
  });

  files.forEach((file, i) => {
    const { name, code } = blocks[i]!;
    const expected = [...code.matchAll(/^\/\/ → (.*)$/gm)].map((m) => m[1]);
    it(`${name} (example-${i + 1}.ts) prints what the page says`, () => {
      const out = execFileSync(process.execPath, ['--import', 'tsx', file], {
        cwd: root,
        encoding: 'utf8',
        // tsx reads the examples' own tsconfig (Nest's example needs its decorators), not the repository's.
        env: { ...process.env, REDIS_URL: redis.url, TSX_TSCONFIG_PATH: join(dir, 'tsconfig.json') },
      });
      assert.deepEqual(out.trimEnd().split('\n').filter(Boolean), expected);
    });
  });
});

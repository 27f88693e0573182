// The documentation is a README and pages under docs/ that link to each other: every relative link must
// reach a file that exists and, with a `#fragment`, a heading of that page, so that moving text between
// pages cannot leave a link behind that goes nowhere.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';

const root = resolve(import.meta.dirname, '..');
const docs = readdirSync(join(root, 'docs'))
  .filter((name) => name.endsWith('.md'))
  .sort()
  .map((name) => `docs/${name}`);
const pages = ['README.md', ...docs];
// Shipped in the packages and read on npm, where a relative link has no repository to resolve against.
const shipped = ['packages/floodgate/README.md', 'packages/server/README.md'];

/** The page's text outside fenced code blocks and inline code, where a `[x](y)` is not a link. */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```$/gm, '').replace(/(`+)[\s\S]*?\1/g, '');
}

/** Every link and image target of a page: `[text](target)`, `![alt](target "title")`, `[ref]: target`. */
function targets(markdown: string): string[] {
  const text = prose(markdown);
  return [
    ...[...text.matchAll(/\]\(<?([^)\s>]+)>?(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!),
    ...[...text.matchAll(/^\s*\[[^\]]+\]:\s+(\S+)/gm)].map((m) => m[1]!),
  ];
}

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  const headings = markdown.replace(/^```[\s\S]*?^```$/gm, '').matchAll(/^#{1,6} (.+)$/gm);
  for (const [, heading] of headings) {
    const text = heading!
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link's text only
      .replace(/[`*_]/g, (c) => (c === '_' ? c : '')); // code and emphasis marks are not in the text
    const slug = text
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

const external = /^[a-z][a-z0-9+.-]*:/i;

describe('documentation links', () => {
  for (const page of pages) {
    it(`${page}: every relative link reaches a file, and a heading when it names one`, () => {
      const markdown = readFileSync(join(root, page), 'utf8');
      const broken: string[] = [];
      for (const target of targets(markdown)) {
        if (external.test(target)) continue;
        const [path = '', fragment] = target.split('#', 2);
        const file = path === '' ? join(root, page) : resolve(dirname(join(root, page)), decodeURI(path));
        if (!existsSync(file)) {
          broken.push(`${target}: no file ${relative(root, file)}`);
          continue;
        }
        if (fragment === undefined) continue;
        if (!file.endsWith('.md')) {
          broken.push(`${target}: a fragment of a file that is not a page`);
          continue;
        }
        if (!anchors(readFileSync(file, 'utf8')).has(decodeURIComponent(fragment)))
          broken.push(`${target}: no heading #${fragment} in ${relative(root, file)}`);
      }
      assert.deepEqual(broken, []);
    });
  }

  for (const page of docs) {
    it(`${page} starts with a link back to the README`, () => {
      const first = readFileSync(join(root, page), 'utf8').split('\n', 1)[0]!;
      assert.match(first, /\]\(\.\.\/README\.md\)/);
    });
  }

  it("the README's documentation section links every page of docs/", () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const section = /^## Documentation\n([\s\S]*?)^## /m.exec(readme)?.[1];
    assert.ok(section !== undefined, 'the README has a "Documentation" section');
    const linked = new Set(targets(section).map((t) => t.split('#')[0]));
    assert.deepEqual(
      docs.filter((page) => !linked.has(page)),
      [],
    );
  });

  for (const page of shipped) {
    it(`${page} (read on npm) has no relative links`, () => {
      const relativeLinks = targets(readFileSync(join(root, page), 'utf8')).filter(
        (t) => !external.test(t) && !t.startsWith('#'),
      );
      assert.deepEqual(relativeLinks, []);
    });
  }

  it('anchors are made as GitHub makes them', () => {
    const made = anchors(
      [
        '# NestJS: `floodgate/nest`',
        '## Redis and Valkey: `floodgate/redis`',
        '## From @nestjs/throttler',
        '## Notes',
        '## Notes',
        '```sh',
        '# not a heading',
        '```',
      ].join('\n'),
    );
    assert.deepEqual(
      [...made],
      ['nestjs-floodgatenest', 'redis-and-valkey-floodgateredis', 'from-nestjsthrottler', 'notes', 'notes-1'],
    );
  });
});

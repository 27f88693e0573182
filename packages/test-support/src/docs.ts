import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

// Tests run the documentation's examples as written. They name the text by page and heading, so that when
// the text moves the test says which page or section it could not find, instead of running nothing.

const root = resolve(import.meta.dirname, '../../..');

/** A page of the repository's documentation, by its path from the repository's root (`docs/proxy.md`). */
export function readDoc(path: string): string {
  return readFileSync(join(root, path), 'utf8');
}

/**
 * The section of the page at `path` whose heading starts with `heading` (without the `#`s): from that heading
 * to the next one of the same level or above. Lines in code blocks are never headings (a YAML comment starts
 * with `#` too).
 */
export function docSection(path: string, heading: string): string {
  const lines = readDoc(path).split('\n');
  let start = -1;
  let level = 0;
  let code = false;
  for (const [i, line] of lines.entries()) {
    if (line.startsWith('```')) code = !code;
    const match = code ? null : /^(#{1,6}) (.*)$/.exec(line);
    if (match === null) continue;
    if (start < 0) {
      if (match[2]!.startsWith(heading)) [start, level] = [i, match[1]!.length];
    } else if (match[1]!.length <= level) {
      return lines.slice(start, i).join('\n');
    }
  }
  if (start < 0) throw new Error(`${path} has no section "${heading}"`);
  return lines.slice(start).join('\n');
}

/** The contents of the fenced code blocks of `markdown` in language `lang` (```yaml ... ```), in order. */
export function codeBlocks(markdown: string, lang: string): string[] {
  return [...markdown.matchAll(/^```(\S*)\n([\s\S]*?)^```$/gm)]
    .filter((m) => m[1] === lang)
    .map((m) => m[2]!);
}

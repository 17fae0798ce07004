// Every relative link of the project's Markdown pages resolves: the file or folder exists, and an
// anchor (`page.md#heading`, `#heading`) names a heading of that page as GitHub anchors it. Links
// to the web are not fetched.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { PACKAGE_ROOT } from './helpers/child';
import { allMarkdownPages, codeBlocks, headingAnchors, links } from './helpers/markdown';

const pages = allMarkdownPages();
const text = new Map(
  pages.map((page) => [page, fs.readFileSync(path.join(PACKAGE_ROOT, page), 'utf8')]),
);

function anchorsOf(page: string): Set<string> {
  return headingAnchors(
    page,
    text.get(page) ?? fs.readFileSync(path.join(PACKAGE_ROOT, page), 'utf8'),
  );
}

/** What is wrong with a link, or null when it resolves. */
function brokenLink(page: string, target: string): string | null {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return null; // https:, mailto:, ...
  const [file, anchor] = target.split('#', 2) as [string, string | undefined];
  const resolved =
    file === '' ? page : path.posix.normalize(path.posix.join(path.posix.dirname(page), file));
  if (resolved.startsWith('..')) return `${target} leaves the repository`;
  if (!fs.existsSync(path.join(PACKAGE_ROOT, resolved))) return `${resolved} does not exist`;
  if (anchor === undefined) return null;
  if (!resolved.endsWith('.md')) return `${target}: an anchor into a file that is not Markdown`;
  const anchors = anchorsOf(resolved);
  return anchors.has(decodeURIComponent(anchor))
    ? null
    : `${resolved} has no heading with the anchor #${anchor} (it has: ${[...anchors].join(', ')})`;
}

describe('links between the Markdown pages', () => {
  test('the pages include the README and the docs', () => {
    expect(pages).toContain('README.md');
    expect(pages).toContain('docs/api.md');
  });

  test.each(pages)('every relative link and anchor of %s resolves', (page) => {
    const broken = links(page, text.get(page) ?? '')
      .map((link) => ({ link, problem: brokenLink(page, link.target) }))
      .filter(({ problem }) => problem !== null)
      .map(({ link, problem }) => `${page}:${link.line}: ${problem}`);
    expect(broken).toEqual([]);
  });
});

// The checker itself, on pages written here: each broken kind is caught, each good one accepted.
describe('the link checker', () => {
  test('anchors follow GitHub: lowercase, punctuation dropped, spaces to dashes, repeats numbered', () => {
    const page =
      '# A `code` title: x/y\n\n## Params with no gradient: `skip`\n\n## Again\n\n## Again\n\n```md\n# not a heading\n```\n';
    expect([...headingAnchors('x.md', page)]).toEqual([
      'a-code-title-xy',
      'params-with-no-gradient-skip',
      'again',
      'again-1',
    ]);
  });

  test('links in code are not links; links in prose are found with their line', () => {
    const page = 'see [a](docs/a.md#b) and `[no](c.md)`\n\n```ts\n[x](y.md)\n```\n[d](#e)\n';
    expect(links('x.md', page).map(({ line, target }) => [line, target])).toEqual([
      [1, 'docs/a.md#b'],
      [6, '#e'],
    ]);
  });

  test('a missing file, a missing anchor and a link out of the repository are each reported', () => {
    expect(brokenLink('README.md', 'docs/no-such-page.md')).toMatch(/does not exist/);
    expect(brokenLink('README.md', 'docs/api.md#no-such-heading')).toMatch(
      /no heading with the anchor/,
    );
    expect(brokenLink('docs/api.md', '../../outside.md')).toMatch(/leaves the repository/);
    expect(brokenLink('README.md', '#install')).toBeNull();
    expect(brokenLink('docs/api.md', '../README.md#a-training-loop')).toBeNull();
    expect(brokenLink('README.md', 'https://example.com/#x')).toBeNull();
  });

  test('code blocks carry their directives and lines', () => {
    const page = [
      'text',
      '<!-- ts-preamble',
      'declare const x: number;',
      '-->',
      '',
      '<!-- ts-run: because -->',
      '```ts',
      'x + 1;',
      '```',
      '```sh',
      'ls',
      '```',
    ].join('\n');
    expect(codeBlocks('x.md', page)).toEqual([
      {
        page: 'x.md',
        lang: 'ts',
        line: 7,
        code: 'x + 1;',
        preamble: 'declare const x: number;',
        preambleLine: 3,
        run: true,
      },
      { page: 'x.md', lang: 'sh', line: 10, code: 'ls', preamble: '', preambleLine: 0, run: false },
    ]);
  });
});

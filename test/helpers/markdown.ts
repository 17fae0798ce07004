// The project's Markdown pages as the docs tests read them: their fenced code blocks with the
// directives written before a block, their headings' anchors as GitHub makes them, and their
// relative links. The conventions are docs/development.md's ("Code blocks in the documentation").
import * as fs from 'node:fs';
import * as path from 'node:path';

import { PACKAGE_ROOT } from './child';

/** The pages whose code blocks are compiled: README.md and every docs/*.md, as repo-relative paths. */
export function documentationPages(): string[] {
  const docs = fs
    .readdirSync(path.join(PACKAGE_ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`);
  return ['README.md', ...docs];
}

/** Every Markdown page of the project (node_modules and build output excluded), repo-relative. */
export function allMarkdownPages(): string[] {
  const skip = new Set(['node_modules', 'dist', 'build', '.git', 'coverage', 'prebuilds']);
  const pages: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(path.join(PACKAGE_ROOT, dir), { withFileTypes: true })) {
      const relative = dir === '' ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!skip.has(entry.name) && !entry.name.startsWith('build-')) walk(relative);
      } else if (entry.name.endsWith('.md')) {
        pages.push(relative);
      }
    }
  };
  walk('');
  return pages.sort();
}

export interface CodeBlock {
  /** The page, repo-relative. */
  page: string;
  /** The language after the opening fence (`ts`, `sh`, ...; '' for none). */
  lang: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The block's text (the lines between the fences). */
  code: string;
  /** The code of a `<!-- ts-preamble ... -->` comment written before the block, or ''. */
  preamble: string;
  /** 1-based line of the preamble's first code line (0 without a preamble). */
  preambleLine: number;
  /** Whether a `<!-- ts-run ... -->` comment is written before the block: the test suite runs it. */
  run: boolean;
}

const FENCE = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/;

/**
 * The fenced code blocks of a page. Directives are HTML comments (invisible on GitHub) written
 * before a block, separated from it and from each other by blank lines only:
 * `<!-- ts-preamble` + code lines + `-->` is code prepended to the block when it is compiled;
 * `<!-- ts-run: why -->` marks the block that the test suite runs.
 */
export function codeBlocks(page: string, text: string): CodeBlock[] {
  const lines = text.split('\n');
  const blocks: CodeBlock[] = [];
  let pending: { preamble: string; preambleLine: number; run: boolean } = {
    preamble: '',
    preambleLine: 0,
    run: false,
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '') continue;
    if (line.startsWith('<!--')) {
      const end = lines.findIndex((l, j) => j >= i && l.includes('-->'));
      if (end < 0) throw new Error(`${page}:${i + 1}: an HTML comment that never ends`);
      if (line.startsWith('<!-- ts-preamble')) {
        if (line.trim() !== '<!-- ts-preamble' || lines[end].trim() !== '-->') {
          throw new Error(
            `${page}:${i + 1}: write a preamble as "<!-- ts-preamble", code lines, "-->"`,
          );
        }
        pending.preamble = lines.slice(i + 1, end).join('\n');
        pending.preambleLine = i + 2;
      } else if (line.startsWith('<!-- ts-run')) {
        pending.run = true;
      }
      i = end;
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence === null) {
      pending = { preamble: '', preambleLine: 0, run: false };
      continue;
    }
    const [, indent, marker, lang] = fence;
    const closing = new RegExp(`^\\${marker[0]}{${marker.length},}\\s*$`);
    const close = lines.findIndex((l, j) => j > i && closing.test(l.slice(indent.length)));
    if (close < 0) throw new Error(`${page}:${i + 1}: a code block that never ends`);
    blocks.push({
      page,
      lang,
      line: i + 1,
      code: lines.slice(i + 1, close).join('\n'),
      ...pending,
    });
    pending = { preamble: '', preambleLine: 0, run: false };
    i = close;
  }
  return blocks;
}

/** The TypeScript blocks of the documentation pages. */
export function typeScriptBlocks(): CodeBlock[] {
  return documentationPages().flatMap((page) =>
    codeBlocks(page, fs.readFileSync(path.join(PACKAGE_ROOT, page), 'utf8')).filter(
      (block) => block.lang === 'ts' || block.lang === 'typescript',
    ),
  );
}

/** A page's text with its fenced code blocks blanked (line numbers kept), for links and headings. */
export function withoutCodeBlocks(page: string, text: string): string {
  const lines = text.split('\n');
  for (const block of codeBlocks(page, text)) {
    const end = block.line + block.code.split('\n').length;
    for (let i = block.line - 1; i <= end && i < lines.length; i++) lines[i] = '';
  }
  return lines.join('\n');
}

/**
 * The anchors GitHub gives a page's headings (github-slugger's rule): the heading's text without
 * Markdown (code spans keep their text, links their label), lowercased, every character that is
 * not a letter, digit, space, `-` or `_` removed, spaces turned into `-`; a repeated anchor gets
 * `-1`, `-2`, ... appended.
 */
export function headingAnchors(page: string, text: string): Set<string> {
  const anchors = new Set<string>();
  const counts = new Map<string, number>();
  for (const line of withoutCodeBlocks(page, text).split('\n')) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading === null) continue;
    const plain = heading[1].replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<[^>]+>/g, '');
    const base = plain
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M} _-]/gu, '')
      .replace(/ /g, '-');
    const seen = counts.get(base) ?? 0;
    anchors.add(seen === 0 ? base : `${base}-${seen}`);
    counts.set(base, seen + 1);
  }
  return anchors;
}

export interface MarkdownLink {
  page: string;
  line: number;
  target: string;
}

/** The links of a page outside code (inline code spans and fenced blocks are not links). */
export function links(page: string, text: string): MarkdownLink[] {
  const found: MarkdownLink[] = [];
  withoutCodeBlocks(page, text)
    .split('\n')
    .forEach((line, index) => {
      const prose = line.replace(/`[^`]*`/g, '');
      for (const match of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
        found.push({ page, line: index + 1, target: match[1] });
      }
    });
  return found;
}
